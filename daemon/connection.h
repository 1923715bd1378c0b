// daemon/connection.h — one pooled SMTP connection of a destination (destination.h): its session,
// where it is in its life, and the parts it carries (the running one, and one behind its dot).
// Rules: a connection goes connecting → idle ⇄ busy → closing (any state may go to closing) and
// only through enter(), which refuses any other step, traces each one at debug level and keeps
// the broker's count of idle connections exact. It holds a global session slot from birth until
// it starts closing (or dies): the broker's counts never depend on every caller remembering.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "common/uv_handle.h"
#include "daemon/delivery.h"
#include "daemon/mx_site.h"
#include "daemon/slot_broker.h"
#include "smtp/session.h"

namespace spoold::daemon {

class DeliveryEngine::Conn {
 public:
  enum class St { connecting, idle, busy, closing };
  static const char* to_string(St s);
  // The steps of the state machine (a pure table, tested).
  static bool allowed(St from, St to);

  // Takes a session slot from `slots` until it starts closing (a closing connection no longer
  // holds back new ones) or dies.
  Conn(SlotBroker& slots, std::uint64_t serial);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  St state() const { return st_; }
  // Moves to `to` if the table allows it (a step to the same state is no step); false otherwise,
  // with a warning: a refused step is a bug of ours, never a reason to lose track of the slot.
  bool enter(St to);
  bool holds_slot() const { return holds_slot_; }

  std::string relay() const { return fmt::format("{}[{}]:{}", host, ip, port); }

  const std::uint64_t serial;
  DeliveryEngine::Destination* dest = nullptr;  // its owner now (an idle one may be handed over)
  std::unique_ptr<smtp::Session> session;
  std::string host, ip;
  int port = 25;
  size_t server = 0;  // relay server index (relay destinations only)
  Clock::time_point opened = Clock::now();
  int messages = 0;
  bool retire = false;
  bool plaintext = false;  // the opportunistic retry after a failed TLS handshake: no STARTTLS
  std::string cut;         // why we cut it ourselves ("" = we did not): not the server's failure
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
  int quota_held = 0;     // relay-quota messages taken for this connection and not settled yet
  SiteSeat seat;          // counted at its destination's MX site until it is gone
  // Recipients the server refused with 4xx, to be tried again on this session after a pause
  // (talk_attempts), in the order refused, with the verdicts reported should that try never happen.
  struct Talk {
    Part part;
    std::vector<RecipientResult> verdicts;
  };
  std::deque<Talk> talks;
  std::unique_ptr<uv::Timer> talk_timer;
  std::unique_ptr<uv::Timer> idle_timer;
  std::unique_ptr<uv::Timer> life_timer;  // max_connection_time, enforced mid-transaction too

 private:
  void release_slot();

  SlotBroker& slots_;
  St st_ = St::connecting;
  bool holds_slot_ = true;
};

}  // namespace spoold::daemon
