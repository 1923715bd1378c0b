// daemon/inflight.h — one queue entry being delivered: its lock, and the outcome of each recipient
// as the parts (one per next hop) report back. Private to the daemon.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "daemon/daemon.h"

namespace spoold::daemon {

struct Daemon::InFlight {
  explicit InFlight(spool::Claimed c) : claimed(std::move(c)) {}
  spool::Claimed claimed;
  // Recipients whose result has not come yet: a part may report in several pieces (a retry on
  // another server, a talk_attempts try), so the entry is done when every recipient has one.
  size_t unreported = 0;
  std::vector<std::optional<RecipientResult>> results;  // by recipient index
  std::vector<std::string> hops;                        // its pending next hops, counted in share_
  bool finishing = false;  // the outcome job is on the thread pool: hands off the lock
  bool lost = false;       // the lock was taken over: the entry is another process's now
};

}  // namespace spoold::daemon
