// daemon/inflight_share.cpp — see inflight_share.h.
#include "daemon/inflight_share.h"

#include <algorithm>

namespace spoold::daemon {

size_t InflightShare::share() const {
  return std::max(floor_, total_ / (hops_.size() + 1));
}

size_t InflightShare::load(const std::string& hop) const {
  auto it = hops_.find(hop);
  return it == hops_.end() ? 0 : it->second;
}

bool InflightShare::over(const std::string& hop) const {
  return load(hop) >= share();
}

bool InflightShare::wanted(const std::vector<std::string>& hops) const {
  if (hops.empty()) return true;
  return std::any_of(hops.begin(), hops.end(), [&](const std::string& h) { return !over(h); });
}

bool InflightShare::refill(const std::string& hop) const {
  return load(hop) < share() / 2;
}

size_t InflightShare::pinned() const {
  size_t n = 0;
  size_t s = share();
  for (const auto& [name, load] : hops_)
    if (load >= s) n += load;
  return n;
}

void InflightShare::add(const std::vector<std::string>& hops) {
  for (const auto& name : hops) ++hops_[name];
}

void InflightShare::remove(const std::vector<std::string>& hops) {
  for (const auto& name : hops) {
    auto it = hops_.find(name);
    if (it != hops_.end() && --it->second == 0) hops_.erase(it);
  }
}

bool ShareMemo::remember(const std::string& name, std::vector<std::string> hops, int64_t now_s) {
  auto it = names_.find(name);
  if (it == names_.end() && full()) return false;
  names_[name] = Known{std::move(hops), now_s};
  return true;
}

const std::vector<std::string>* ShareMemo::hops(const std::string& name, int64_t now_s) const {
  auto it = names_.find(name);
  if (it == names_.end() || now_s - it->second.since >= max_age_) return nullptr;
  return &it->second.hops;
}

void ShareMemo::expire(int64_t now_s) {
  for (auto it = names_.begin(); it != names_.end();)
    it = now_s - it->second.since >= max_age_ ? names_.erase(it) : std::next(it);
}

}  // namespace spoold::daemon
