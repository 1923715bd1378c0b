// daemon/attempt.cpp — see attempt.h.
#include "daemon/attempt.h"

#include <algorithm>

namespace spoold::daemon {

void AttemptLog::failed(const std::string& server, const smtp::Outcome& why, const std::string& relay) {
  ++failures_[server];
  last_ = why;
  last_relay_ = relay;
  if (why.status != smtp::Status::permanent) any_temporary_ = true;
}

bool AttemptLog::exhausted(const std::string& server, int connect_attempts) const {
  return failures(server) >= std::max(1, connect_attempts);
}

int AttemptLog::failures(const std::string& server) const {
  auto it = failures_.find(server);
  return it == failures_.end() ? 0 : it->second;
}

smtp::Outcome AttemptLog::verdict() const {
  smtp::Outcome o = last_;
  if (o.status == smtp::Status::sent) {  // a failure is never a success
    o.status = smtp::Status::temporary;
    o.enhanced = "4.0.0";
  }
  if (o.status == smtp::Status::permanent && any_temporary_) {
    o.status = smtp::Status::temporary;
    if (!o.enhanced.empty()) o.enhanced[0] = '4';
  }
  if (o.enhanced.empty()) o.enhanced = o.status == smtp::Status::permanent ? "5.0.0" : "4.0.0";
  return o;
}

}  // namespace spoold::daemon
