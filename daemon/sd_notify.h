// daemon/sd_notify.h — systemd readiness protocol without libsystemd: one datagram to $NOTIFY_SOCKET.
// Rule: a no-op (returns false) when not started by systemd; never blocks.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace spoold::daemon {

bool sd_notify(std::string_view state);  // "READY=1", "STOPPING=1", "WATCHDOG=1", "RELOADING=1"
// Half of $WATCHDOG_USEC when systemd asks for keep-alives, else nullopt.
std::optional<std::chrono::milliseconds> sd_watchdog_interval();

}  // namespace spoold::daemon
