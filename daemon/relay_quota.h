// daemon/relay_quota.h — the message counts of each server of a relay group (Mail::Bulkmail's
// `max_messages`, `max_messages_per_robin`, `max_messages_while_awake` + `sleep_length`): pure
// bookkeeping on the times it is given, tested by table.
// Rules: a server that has taken max_messages is retired for good (for this destination's life);
// after max_messages_per_robin its connection ends and the next server in the robin takes over;
// after max_messages_while_awake it sleeps for sleep_length, then starts counting again. A message
// counts from its submission (take()), so several connections in flight to one server never
// overshoot a limit together; one the server never judged (the connection failed first) is given
// back when it settles.
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
  // The server may take one more message at `now`: awake (a sleeper whose sleep is over wakes)
  // and every count, with the messages in flight, below its limit. An index past the group's
  // servers never can.
  bool can_take(size_t server, Clock::time_point now);
  // A message was submitted to the server (call only after can_take()).
  void take(size_t server);
  // A message taken ended: `counted` when the server judged it (any reply to it), else it is given
  // back. True when the connection that carried it must end (a limit was reached, or the counts
  // leave no room for another message now).
  bool settle(size_t server, bool counted, Clock::time_point now);
  // Messages taken and not settled yet.
  int in_flight(size_t server) const { return server < servers_.size() ? servers_[server].pending : 0; }

 private:
  struct Server {
    int max_messages = 0, per_robin = 0, while_awake = 0;
    Clock::duration sleep{};
    int total = 0, robin = 0, awake = 0;
    int pending = 0;
    Clock::time_point asleep_until{};
  };
  static bool room(const Server& s);
  std::vector<Server> servers_;
  bool round_robin_ = false;
};

}  // namespace spoold::daemon
