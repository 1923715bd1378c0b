// daemon/relay_quota.cpp — see relay_quota.h.
#include "daemon/relay_quota.h"

namespace spoold::daemon {

RelayQuota::RelayQuota(const config::RelayGroup& group)
    : round_robin_(group.strategy == config::RelayStrategy::round_robin) {
  for (const auto& s : group.servers) {
    Server q;
    q.max_messages = s.max_messages;
    q.per_robin = s.max_messages_per_robin;
    q.while_awake = s.max_messages_while_awake;
    q.sleep = s.sleep_length;
    servers_.push_back(q);
  }
}

bool RelayQuota::room(const Server& s) {
  auto below = [&](int limit, int count) { return limit <= 0 || count + s.pending < limit; };
  return below(s.max_messages, s.total) && below(s.per_robin, s.robin) && below(s.while_awake, s.awake);
}

bool RelayQuota::can_take(size_t server, Clock::time_point now) {
  if (server >= servers_.size()) return false;
  Server& s = servers_[server];
  if (s.asleep_until != Clock::time_point{}) {
    if (now < s.asleep_until) return false;
    s.asleep_until = {};
    s.awake = 0;
  }
  return room(s);
}

void RelayQuota::take(size_t server) {
  if (server < servers_.size()) ++servers_[server].pending;
}

bool RelayQuota::settle(size_t server, bool counted, Clock::time_point now) {
  if (server >= servers_.size()) return false;
  Server& s = servers_[server];
  if (s.pending > 0) --s.pending;
  if (!counted) return false;  // given back: the server's counts are as they were
  ++s.total, ++s.robin, ++s.awake;
  bool end = false;
  if (s.max_messages > 0 && s.total >= s.max_messages) end = true;
  // With nothing else in flight the robin is full: it starts again, and the connection ends so
  // that the next one goes to the next server in the robin.
  if (s.per_robin > 0 && s.robin >= s.per_robin) {
    s.robin = 0;
    end = true;
  }
  if (s.while_awake > 0 && s.awake >= s.while_awake) {
    s.asleep_until = now + s.sleep;
    end = true;
  }
  return end || !room(s);
}

}  // namespace spoold::daemon
