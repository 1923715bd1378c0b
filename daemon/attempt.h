// daemon/attempt.h — what one delivery attempt of a message part has met: pure bookkeeping (no
// I/O, no loop), tested by table. The health of the servers across attempts: address_health.h.
// Rules (docs/design.md "Delivery"): in one attempt every address of a next hop is tried at
// most `connect_attempts` times, then what is left is deferred — never an endless cycle; a server
// that keeps failing is skipped for a while, but a skipped server never turns a due retry into a
// silent no-op: the part is then reported "not tried" (relay=none) and postponed, not moved on.
// A 5xx greeting from one server never bounces mail that another server could still take.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "smtp/types.h"

namespace spoold::daemon {

using Clock = std::chrono::steady_clock;

// Connection-level failures (before the server gave a verdict on the recipients) of one part in
// the current attempt, per server ("ip|port").
class AttemptLog {
 public:
  void failed(const std::string& server, const smtp::Outcome& why, const std::string& relay);
  // The part may not go to `server` again in this attempt.
  bool exhausted(const std::string& server, int connect_attempts) const;
  bool any_failure() const { return !failures_.empty(); }
  int failures(const std::string& server) const;
  // What the part's recipients are told when no server is left: the last failure, but temporary
  // when any server failed temporarily (that one may take the mail later).
  smtp::Outcome verdict() const;
  const std::string& last_relay() const { return last_relay_; }

 private:
  std::map<std::string, int> failures_;
  smtp::Outcome last_;
  std::string last_relay_ = "none";
  bool any_temporary_ = false;
};

}  // namespace spoold::daemon
