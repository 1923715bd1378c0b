// daemon/client_rates.cpp — see client_rates.h.
#include "daemon/client_rates.h"

#include <iterator>

namespace spoold::daemon {

bool ClientRates::over(const std::string& key, int limit, Clock::time_point now) const {
  if (limit <= 0) return false;
  auto it = keys_.find(key);
  if (it == keys_.end() || now - it->second.start >= window_) return false;
  return it->second.events >= limit;
}

void ClientRates::count(const std::string& key, Clock::time_point now) {
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    if (keys_.size() >= kMaxKeys) {
      for (auto k = keys_.begin(); k != keys_.end();)
        k = now - k->second.start >= window_ ? keys_.erase(k) : std::next(k);
      if (keys_.size() >= kMaxKeys) return;
    }
    it = keys_.emplace(key, Window{now, 0}).first;
  }
  if (now - it->second.start >= window_) it->second = Window{now, 0};
  ++it->second.events;
}

}  // namespace spoold::daemon
