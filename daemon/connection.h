// daemon/connection.h — one pooled SMTP connection of a destination (destination.h): its session,
// where it is in its life, and the parts it carries (the running one, and one behind its dot).
// Rule: a connection goes connecting → idle ⇄ busy → closing, and every change goes through
// Destination::set_state(), which keeps the engine's count of idle connections exact and traces
// the transition at debug level.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "daemon/delivery.h"
#include "daemon/uv_handle.h"
#include "smtp/session.h"

namespace spoold::daemon {

struct DeliveryEngine::Conn {
  enum class St { connecting, idle, busy, closing };
  static const char* to_string(St s) {
    switch (s) {
      case St::connecting:
        return "connecting";
      case St::idle:
        return "idle";
      case St::busy:
        return "busy";
      case St::closing:
        return "closing";
    }
    return "?";
  }
  DeliveryEngine::Destination* dest = nullptr;
  std::unique_ptr<smtp::Session> session;
  std::string host, ip;
  int port = 25;
  size_t server = 0;  // relay server index (relay destinations only)
  St st = St::connecting;
  Clock::time_point opened = Clock::now();
  int messages = 0;
  bool retire = false;
  bool holds_slot = true;  // counted against delivery.max_sessions (until it starts closing)
  bool plaintext = false;  // the opportunistic retry after a failed TLS handshake: no STARTTLS
  std::string cut;         // why we cut it ourselves ("" = we did not): not the server's failure
  std::uint64_t serial = 0;
  // Connections to one server may carry mail for several destinations (Postfix's connection cache
  // does the same): "ip|port", plus the MX name when the certificate is verified against it.
  // Empty = not shared (relay sessions carry their own TLS and AUTH settings).
  std::string share_key;
  std::optional<Part> current;
  std::optional<Part> next;  // submitted behind current's final dot (RFC 2920 §3.1)
  // Which submission a session callback answers: the callback carries the id it was given, so
  // a result can never be booked to the other part.
  std::uint64_t current_id = 0, next_id = 0, submissions = 0;
  size_t retry_slot = 0;  // where in the queue the next retry of this session's parts goes
  std::unique_ptr<Timer> idle_timer;
  std::unique_ptr<Timer> life_timer;  // max_connection_time, enforced mid-transaction too
  std::string relay() const { return fmt::format("{}[{}]:{}", host, ip, port); }
};

}  // namespace spoold::daemon
