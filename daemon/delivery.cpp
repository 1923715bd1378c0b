// daemon/delivery.cpp — see delivery.h: the engine over its destinations (destination.h) — the
// global session slots, handing an idle connection to a destination that waits for one, and
// forgetting destinations that are idle or retired.
#include "daemon/delivery.h"

#include <vector>

#include "daemon/destination.h"

namespace spoold::daemon {

using Clock = std::chrono::steady_clock;
namespace {

constexpr auto kDestinationMemory = std::chrono::minutes(5);  // forget an unused destination after this

}  // namespace

DeliveryEngine::DeliveryEngine(uv_loop_t* loop, std::shared_ptr<const config::Config> config,
                               dns::Resolver& resolver, PartDone done)
    : loop_(loop),
      config_(std::move(config)),
      resolver_(resolver),
      done_(std::move(done)),
      slots_(static_cast<size_t>(config_->delivery.max_sessions)),
      collect_timer_(std::make_unique<uv::Timer>(loop)),
      retire_timer_(std::make_unique<uv::Timer>(loop)) {
  auto every = static_cast<uint64_t>(std::chrono::milliseconds(kDestinationMemory).count());
  collect_timer_->start(every, every, [this] { collect_idle(); });
  collect_timer_->unref();  // never keeps the loop alive on its own
}

DeliveryEngine::~DeliveryEngine() = default;

void DeliveryEngine::submit(Part part) {
  std::string k = part.key.str();
  auto it = dests_.find(k);
  if (it == dests_.end()) it = dests_.emplace(k, std::make_unique<Destination>(*this, part.key)).first;
  it->second->enqueue(std::move(part));
}

void DeliveryEngine::reconfigure(std::shared_ptr<const config::Config> config) {
  config_ = std::move(config);
  slots_.set_limit(static_cast<size_t>(config_->delivery.max_sessions));
  // Idle destinations are rebuilt with the new routes. Busy ones keep their own configuration
  // and finish what they hold under another name, so new mail for the same key goes to a new
  // destination made under the new configuration; they are forgotten once empty.
  std::vector<std::unique_ptr<Destination>> busy;
  for (auto it = dests_.begin(); it != dests_.end();) {
    if (it->second->empty() && !it->second->in_slot_queue()) {
      slots_.forget(*it->second);
      it = dests_.erase(it);
    } else if (it->first.rfind(kRetiredPrefix, 0) != 0) {
      busy.push_back(std::move(it->second));
      it = dests_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& d : busy)
    dests_.emplace(fmt::format("{}{}|{}", kRetiredPrefix, ++retired_, d->key().str()), std::move(d));
  if (!busy.empty() && !retire_timer_->active())
    retire_timer_->start(1000, 1000, [this] { collect_retired(); });
}

// Not from a destination's callbacks (it may be the one destroyed): from its own timer.
void DeliveryEngine::collect_retired() {
  bool left = false;
  for (auto it = dests_.begin(); it != dests_.end();) {
    bool retired = it->first.rfind(kRetiredPrefix, 0) == 0;
    if (retired && it->second->empty() && !it->second->in_slot_queue()) {
      slots_.forget(*it->second);
      it = dests_.erase(it);
      continue;
    }
    left = left || retired;
    ++it;
  }
  if (!left) retire_timer_->stop();
}

void DeliveryEngine::shutdown(std::function<void()> drained) {
  stopping_ = true;
  collect_timer_->stop();
  drained_ = std::move(drained);
  for (auto& [_, d] : dests_) d->pump();
  maybe_drained();
}

void DeliveryEngine::abort_all() {
  for (auto& [_, d] : dests_) d->abort_all();
}

void DeliveryEngine::withdraw(std::uint64_t token) {
  withdrawn_.insert(token);
  std::vector<Destination*> all;
  for (auto& [_, d] : dests_) all.push_back(d.get());
  for (Destination* d : all) d->withdraw(token);
}

size_t DeliveryEngine::queued() const {
  size_t n = 0;
  for (const auto& [_, d] : dests_) n += d->queued();
  return n;
}

std::vector<DestinationStats> DeliveryEngine::stats() const {
  std::vector<DestinationStats> out;
  for (const auto& [k, d] : dests_)
    if (d->sessions() || d->queued()) out.push_back({k, d->sessions(), d->queued()});
  return out;
}

void DeliveryEngine::session_closed() {
  if (sessions_ > 0) --sessions_;
  pump_waiting();
}

// With hundreds of destinations (fan-out), anything that walks every destination per session
// event is quadratic: this walks them only when some connection is idle.
bool DeliveryEngine::reclaim_idle(Destination* except) {
  if (slots_.idle() == 0) return false;
  for (auto& [_, d] : dests_)
    if (d.get() != except && d->quit_one_idle()) return true;
  return false;
}

std::shared_ptr<MxSite> DeliveryEngine::site(const std::string& name) {
  auto& slot = sites_[name];
  if (auto s = slot.lock()) return s;
  auto s = std::make_shared<MxSite>();
  s->name = name;
  slot = s;
  return s;
}

void DeliveryEngine::pump_waiting() {
  if (!stopping_) slots_.pump_waiting();
}

void DeliveryEngine::collect_idle() {
  // A destination nobody has used for a while costs memory and nothing else: forget it (its DNS
  // answer stays in the resolver's cache). Relay groups are kept: they count messages per server
  // (max_messages is a lifetime cap).
  auto now = Clock::now();
  health_.forget_expired(now);
  std::erase_if(sites_, [](const auto& s) { return s.second.expired(); });
  for (auto it = dests_.begin(); it != dests_.end();) {
    Destination& d = *it->second;
    bool old = now - d.last_active() > kDestinationMemory;
    if (d.empty() && old && !d.in_slot_queue() && d.key().kind != config::RouteKind::relay) {
      slots_.forget(d);
      it = dests_.erase(it);
    } else {
      ++it;
    }
  }
}

void DeliveryEngine::maybe_drained() {
  if (!stopping_ || !drained_ || sessions_ > 0) return;
  auto fn = std::move(drained_);
  drained_ = nullptr;
  fn();
}

}  // namespace spoold::daemon
