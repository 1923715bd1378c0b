// daemon/address_health.h — which servers failed lately and are skipped for a while, across
// attempts and destinations: pure bookkeeping on the times it is given, tested by table.
// Rule: a skipped server never turns a due retry into a silent no-op: the part is then reported
// "not tried" (relay=none) and postponed (delivery.cpp), and the memory is at most half the
// shortest tier delay, so a retry that comes due finds the server tried again.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace spoold::daemon {

using Clock = std::chrono::steady_clock;

// A server is an address *and* a port ("ip|port"): a refusing submission port must not block
// port 25 of the same host, nor one sink another on the same IP.
std::string server_key(const std::string& ip, int port);

// Servers that failed `threshold` times in a row are skipped for `memory` (a success resets the
// count), so a dead server costs one connection per memory period, not one per message.
class AddressHealth {
 public:
  void failed(const std::string& server, Clock::time_point now, int threshold, Clock::duration memory);
  void succeeded(const std::string& server);
  // When the server is skipped at `now`: the time of the failure that put it there.
  std::optional<Clock::time_point> skipped_since(const std::string& server, Clock::time_point now) const;
  // When it is tried again (only meaningful while skipped).
  Clock::time_point skipped_until(const std::string& server) const;
  void forget_expired(Clock::time_point now);  // servers neither skipped nor failed for a minute
  size_t size() const { return servers_.size(); }

 private:
  struct Health {
    int in_a_row = 0;
    Clock::time_point failed_at{}, until{};
  };
  std::map<std::string, Health> servers_;
};

// "127.0.0.1|25" → "127.0.0.1:25", "::1|25" → "[::1]:25" for log lines.
std::string server_display(const std::string& server);

}  // namespace spoold::daemon
