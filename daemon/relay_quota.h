// daemon/relay_quota.h — the message counts of each server of a relay group (Mail::Bulkmail's
// `max_messages`, `max_messages_per_robin`, `max_messages_while_awake` + `sleep_length`): pure
// bookkeeping on the times it is given, tested by table.
// Rules: a server that has taken max_messages is retired for good (for this destination's life);
// after max_messages_per_robin its connection ends and the next server in the robin takes over;
// after max_messages_while_awake it sleeps for sleep_length, then starts counting again. Counts
// are taken when a transaction ends; a message behind a dot must leave room for the running one.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

#include "config/config.h"

namespace spoold::daemon {

class RelayQuota {
 public:
  using Clock = std::chrono::steady_clock;

  RelayQuota() = default;
  explicit RelayQuota(const config::RelayGroup& group);

  size_t size() const { return servers_.size(); }
  bool round_robin() const { return round_robin_; }
  // The server may get a new connection at `now` (wakes a sleeper whose sleep is over). An index
  // past the group's servers is never usable.
  bool usable(size_t server, Clock::time_point now);
  // A connection to it that carries one message may take a second one behind the dot.
  bool room_behind_dot(size_t server) const;
  // A transaction on it ended; true when its connection must end (a limit was reached).
  bool message_done(size_t server, Clock::time_point now);

 private:
  struct Server {
    int max_messages = 0, per_robin = 0, while_awake = 0;
    Clock::duration sleep{};
    int total = 0, robin = 0, awake = 0;
    Clock::time_point asleep_until{};
  };
  std::vector<Server> servers_;
  bool round_robin_ = false;
};

}  // namespace spoold::daemon
