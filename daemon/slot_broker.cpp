// daemon/slot_broker.cpp — see slot_broker.h.
#include "daemon/slot_broker.h"

#include <algorithm>
#include <iterator>

namespace spoold::daemon {

void SlotBroker::wait(Waiter& w) {
  if (w.queued_) return;
  w.queued_ = true;
  ++w.wait_;
  queue_.push_back(&w);
  for (auto& k : w.servers()) by_server_[k].push_back({&w, w.wait_});
}

void SlotBroker::forget(const Waiter& w) {
  std::erase(queue_, &w);
  for (auto it = by_server_.begin(); it != by_server_.end();) {
    auto& q = it->second;
    std::erase_if(q, [&w](const Entry& e) { return e.w == &w; });
    it = q.empty() ? by_server_.erase(it) : std::next(it);
  }
}

SlotBroker::Waiter* SlotBroker::taker_for(const std::string& server, const Waiter* except) {
  auto it = by_server_.find(server);
  if (it == by_server_.end()) return nullptr;
  auto& q = it->second;
  // An entry is current only for the wait it was made for; older ones are dropped as they are met.
  for (size_t n = q.size(); n > 0; --n) {
    Entry e = q.front();
    q.pop_front();
    bool current = e.w->queued_ && e.w->wait_ == e.wait;
    if (!current) continue;
    q.push_back(e);
    if (e.w != except && e.w->wants(server)) return e.w;
  }
  if (q.empty()) by_server_.erase(it);
  return nullptr;
}

bool SlotBroker::someone_blocked(const Waiter* except) {
  while (!queue_.empty() && !queue_.front()->blocked()) {  // drop those no longer waiting
    queue_.front()->queued_ = false;
    queue_.pop_front();
  }
  for (size_t i = 0; i < queue_.size() && i < 2; ++i)
    if (queue_[i] != except && queue_[i]->blocked()) return true;
  return false;
}

void SlotBroker::pump_waiting() {
  for (size_t n = queue_.size(); n > 0 && !queue_.empty(); --n) {
    if (full() && idle_ == 0) break;
    Waiter* w = queue_.front();
    queue_.pop_front();
    w->queued_ = false;
    if (w->waiting()) w->pump();
  }
}

}  // namespace spoold::daemon
