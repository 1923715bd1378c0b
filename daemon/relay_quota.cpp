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

bool RelayQuota::usable(size_t server, Clock::time_point now) {
  if (server >= servers_.size()) return false;
  Server& s = servers_[server];
  if (s.max_messages > 0 && s.total >= s.max_messages) return false;  // retired for good
  if (s.asleep_until != Clock::time_point{}) {
    if (now < s.asleep_until) return false;
    s.asleep_until = {};
    s.awake = 0;
  }
  return true;
}

bool RelayQuota::room_behind_dot(size_t server) const {
  if (server >= servers_.size()) return false;
  const Server& s = servers_[server];
  auto room = [](int limit, int count) { return limit <= 0 || count + 2 <= limit; };
  return room(s.max_messages, s.total) && room(s.per_robin, s.robin) && room(s.while_awake, s.awake);
}

bool RelayQuota::message_done(size_t server, Clock::time_point now) {
  if (server >= servers_.size()) return false;
  Server& s = servers_[server];
  ++s.total, ++s.robin, ++s.awake;
  bool end = false;
  if (s.max_messages > 0 && s.total >= s.max_messages) end = true;
  if (s.per_robin > 0 && s.robin >= s.per_robin) {
    s.robin = 0;
    end = true;  // the next connection goes to the next server in the robin
  }
  if (s.while_awake > 0 && s.awake >= s.while_awake) {
    s.asleep_until = now + s.sleep;
    end = true;
  }
  return end;
}

}  // namespace spoold::daemon
