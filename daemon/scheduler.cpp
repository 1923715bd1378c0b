// daemon/scheduler.cpp — when work is looked for: one timer per tier (priority × scan_interval),
// inotify on incoming/ for immediate pickup, and a refill when in-memory work drops below half.
// Rule: at most kMaxInFlight entries are held in memory; the rest stay on disk for a later scan,
// so memory follows concurrency, not queue length. Scans and claims run on the thread pool.
#include <algorithm>
#include <ctime>
#include <set>

#include "common/clock.h"
#include "daemon/daemon.h"
#include "daemon/dsn.h"
#include "daemon/inflight.h"
#include "daemon/local_mail.h"
#include "daemon/log.h"
#include "daemon/notice.h"
#include "daemon/scan_pass.h"

namespace spoold::daemon {

namespace {
constexpr size_t kScanChunk = 256;
// The memo of entries left on disk for the in-flight share: names, and how long one is trusted.
constexpr size_t kShareMemoNames = 65536;
constexpr int64_t kShareMemoAge = 60;
// Drops claimed per thread-pool job: small enough that the first deliveries start while the rest
// of a large incoming/ is still being claimed (the next job follows at once when more are left).
constexpr size_t kPickupChunk = 256;
// With nothing in flight the sessions are idle: a first small chunk gets them going in well under a
// millisecond instead of after 256 claims (~13 ms with 100 KiB drops).
constexpr size_t kFirstPickupChunk = 32;

int64_t mono_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

// While the spool cannot be written (a full disk), every inotify event (a drop renamed in, or
// one handed back by unclaim()) would start a pickup pass that fails the same way: passes wait
// for the next tier-0 scan instead, and every pass first checks that a write succeeds again
// (Spool::probe_write). Claims alone still work (a lock is a hard link: it needs no space), so
// without the probe a message whose outcome cannot be recorded would be delivered again and again
// to the recipients that accepted it.
void Daemon::pause_pickups() {
  spool_full_ = true;
  pickups_paused_until_ = std::chrono::steady_clock::now() + cfg_->queue.scan_interval -
                          std::chrono::milliseconds(cfg_->queue.scan_interval.count() / 10);
}

size_t Daemon::capacity() const {
  return inflight_.size() >= kMaxInFlight ? 0 : kMaxInFlight - inflight_.size();
}

void Daemon::arm_tier_timers() {
  tier_timers_.clear();
  auto base = static_cast<uint64_t>(cfg_->queue.scan_interval.count());
  for (size_t t = 0; t < cfg_->queue.tiers.size(); ++t) {
    auto every = base * static_cast<uint64_t>(cfg_->queue.tiers[t].priority);
    auto timer = std::make_unique<uv::Timer>(&loop_);
    int tier = static_cast<int>(t);
    timer->start(every, every, [this, tier] { tick(tier); });
    tier_timers_.push_back(std::move(timer));
  }
}

void Daemon::watch_incoming() {
  incoming_watch_ = std::make_unique<uv::FsEvent>(&loop_);
  std::string dir = cfg_->spool_dir + "/incoming";
  int rc = incoming_watch_->start(dir, [this](std::string_view, int, int status) {
    if (status == 0) tick(0);
  });
  if (rc != 0) log::warning("cannot watch {} ({}): relying on the tier-0 scan", dir, uv_strerror(rc));
}

void Daemon::tick(int tier) {
  if (stopping_ || !spool_) return;
  auto t = static_cast<size_t>(tier);
  if (scanning_[t]) {
    again_[t] = true;
    return;
  }
  size_t cap = capacity();
  if (cap == 0) {
    more_[t] = true;
    return;
  }
  scanning_[t] = true;
  share_waiting_[t].clear();  // this pass finds out again who waits
  ++pool_jobs_;
  PassInput in;
  in.tier = tier;
  in.cap = cap;
  in.pickups = tier == 0 && std::chrono::steady_clock::now() >= pickups_paused_until_;
  in.probe = spool_full_.load();
  in.pickup_chunk = inflight_.empty() ? kFirstPickupChunk : kPickupChunk;
  in.now = unix_now();
  in.mono_s = mono_now();
  in.config = cfg_;
  in.in_flight = inflight_ids_;
  in.share = share_;
  in.memo = share_memo_;
  auto input = std::make_shared<PassInput>(std::move(in));
  auto out = std::make_shared<PassOutput>();
  spool::Spool* sp = &*spool_;
  uv::run_in_pool(
      &loop_, [sp, input, out] { run_pass(*sp, *input, *out); },
      [this, tier, out] {
        --pool_jobs_;
        for (const auto& e : out->errors) log::warning("{}", e);
        if (out->writable) spool_full_ = false;
        if (!out->pickup_stopped.empty() || out->spool_full) pause_pickups();
        if (!out->pickup_stopped.empty())
          pickup_problem_.failed(
              out->pickup_stopped,
              fmt::format("{}{} drops wait in incoming/", out->more ? "over " : "", out->drops_waiting));
        else if (out->picked > 0)
          pickup_problem_.ok();
        if (!out->claim_stopped.empty())
          claim_problem_.failed(out->claim_stopped, fmt::format("queued mail in tier {} waits", tier));
        else if (out->claims > 0)
          claim_problem_.ok();
        remember_left(tier, *out);
        tick_done(tier, std::move(out->claimed), out->pickups, out->more);
      });
}

// What a pass left on disk for the in-flight share is remembered (so the next pass does not read it
// again) and its hops wait for room (refill_due). A pass stopped early goes on at once, unless the
// memo is full: then it would read the same entries again, and the tier's timer has to do.
void Daemon::remember_left(int tier, PassOutput& out) {
  auto t = static_cast<size_t>(tier);
  share_waiting_[t].insert(out.refused.begin(), out.refused.end());
  if (out.left.empty() && out.taken_known.empty()) return;
  if (!share_memo_) share_memo_ = std::make_shared<SharedMemo>(ShareMemo(kShareMemoNames, kShareMemoAge));
  int64_t now = mono_now();
  share_memo_->with([&](ShareMemo& memo) {
    memo.expire(now);
    for (const auto& name : out.taken_known) memo.forget(name);
    for (auto& l : out.left) memo.remember(l.name, std::move(l.hops), now);
    if (out.share_stopped && memo.full()) out.more = false;
  });
}

// A tier whose pass left entries for the share gets a new pass once one of those hops has room.
bool Daemon::refill_due(int tier) const {
  const auto& waiting = share_waiting_[static_cast<size_t>(tier)];
  return std::any_of(waiting.begin(), waiting.end(), [&](const std::string& h) { return share_.refill(h); });
}

void Daemon::tick_done(int tier, std::vector<spool::Claimed> claimed,
                       const std::vector<spool::PickupResult>& pickups, bool more) {
  auto t = static_cast<size_t>(tier);
  scanning_[t] = false;
  more_[t] = more;
  for (const auto& p : pickups) {
    if (p.outcome == spool::PickupOutcome::queued) {
      ++counters_.picked_up;
      usage_->count(spool::UsageKind::spooled, p.nrcpt, p.size);
      log::pickup({p.id, p.sender, p.size, p.nrcpt});
    } else if (p.outcome == spool::PickupOutcome::bad) {
      log::warning("drop file moved to bad/: {}", p.reason);
    }
  }
  if (stopping_) {
    // Given back untouched (a fresh drop to incoming/) for the next start; that is file-system
    // work, so it runs on the pool like every other spool write.
    auto dropped = std::make_shared<std::vector<spool::Claimed>>(std::move(claimed));
    spool::Spool* sp = &*spool_;
    ++pool_jobs_;
    uv::run_in_pool(
        &loop_,
        [sp, dropped] {
          for (auto& c : *dropped) (void)sp->unclaim(c);
          dropped->clear();
        },
        [this] {
          --pool_jobs_;
          maybe_continue();
        });
  } else {
    for (auto& c : claimed) start_delivery(std::move(c));
  }
  if (again_[t]) {
    again_[t] = false;
    tick(tier);
  }
  maybe_continue();
}

void Daemon::start_delivery(spool::Claimed claimed) {
  auto f = std::make_unique<InFlight>(std::move(claimed));
  // Local names first: their aliases join the entry, what has nowhere to go bounces below.
  std::vector<RecipientResult> local_bounces = expand_local(f->claimed.entry, config::local_rules(*cfg_));
  const spool::Entry& e = f->claimed.entry;
  std::uint64_t token = next_token_++;
  f->results.resize(e.recipients.size());
  std::vector<size_t> pending;
  std::vector<std::string> addresses;
  for (size_t i = 0, b = 0; i < e.recipients.size(); ++i) {
    addresses.push_back(e.recipients[i].address);
    bool bounces = b < local_bounces.size() && local_bounces[b].index == i;
    b += bounces ? 1 : 0;
    if (!e.recipients[i].final() && !bounces) pending.push_back(i);
  }
  auto groups = group_by_hop(*cfg_, addresses, pending);
  f->unreported = pending.size() + local_bounces.size();
  for (const auto& g : groups) f->hops.push_back(g.key.str());
  share_.add(f->hops);
  inflight_ids_->with([&](auto& ids) { ids.insert(e.id); });
  InFlight* raw = f.get();
  inflight_.emplace(token, std::move(f));
  if (groups.empty() && local_bounces.empty()) {
    finish(token);  // nothing pending (a crash after the last outcome): just complete it
    return;
  }
  const spool::Entry& en = raw->claimed.entry;
  for (auto& g : groups) {
    Part p;
    p.qid = en.id;
    p.sender = en.sender;
    for (size_t i : g.recipients) p.recipients.push_back(en.recipients[i].address);
    p.indices = g.recipients;
    p.dsn_ret = en.dsn.ret;
    p.dsn_envid = en.dsn.envid;
    for (size_t i : g.recipients) {
      p.dsn_notify.push_back(en.recipients[i].dsn.notify);
      p.dsn_orcpt.push_back(en.recipients[i].dsn.orcpt);
    }
    p.body_path = spool_->body_file(raw->claimed);
    p.body_offset = en.body_offset;
    p.size = en.body_size;
    p.eight_bit = en.flags.eight_bit;
    p.longest_line = en.longest_line;
    if (en.flags.missing_date)
      p.missing_date = rfc5322_date(std::chrono::system_clock::from_time_t(static_cast<time_t>(en.arrived)));
    if (en.flags.missing_message_id) p.missing_message_id = fmt::format("<{}@{}>", en.id, cfg_->hostname);
    p.key = g.key;
    p.rewrite = g.rewrite;
    p.token = token;
    engine_->submit(std::move(p));  // may report outcomes synchronously (e.g. while stopping)
  }
  // Last: its part keeps the entry in flight while the engine's parts may complete synchronously.
  if (!local_bounces.empty()) on_part_done(token, std::move(local_bounces));
}

void Daemon::forget_inflight(std::map<std::uint64_t, std::unique_ptr<InFlight>>::iterator it,
                             const std::string& id) {
  inflight_ids_->with([&](auto& ids) { ids.erase(id); });
  share_.remove(it->second->hops);
  inflight_.erase(it);
}

void Daemon::maybe_continue() {
  if (stopping_) {
    finish_stop();
    return;
  }
  bool busy = pool_jobs_ > 0 || !inflight_.empty();
  // A refill once half the room is free that hops over their share do not hold (they take nothing
  // more, so waiting for half of all of it could wait for them), or once a hop that turned entries
  // away has room again.
  size_t room = kMaxInFlight - std::min(kMaxInFlight, share_.pinned());
  for (size_t t = 0; t < more_.size(); ++t) {
    if (scanning_[t]) continue;
    bool refill = more_[t] && capacity() >= std::max<size_t>(1, room / 2);
    if (refill || refill_due(static_cast<int>(t))) {
      more_[t] = false;
      tick(static_cast<int>(t));
      busy = true;
    }
  }
  if (!opt_.once || busy) return;
  for (size_t t = 0; t < scanning_.size(); ++t)
    if (scanning_[t]) return;
  // --once: everything due when we started has been attempted. Bounces and warnings queued by this
  // run are due now too: one more pass over tier 0 picks them up (bounded, so a loop cannot form).
  if (once_passes_ < 3 && dsn_queued_) {
    dsn_queued_ = false;
    ++once_passes_;
    tick(0);
    return;
  }
  stop("--once finished");
}

// Touching a lock is file-system I/O (on NFS a round trip each), so it runs on the thread pool
// with copies of the lock identities; an entry that finished meanwhile is simply not reported.
void Daemon::refresh_locks() {
  if (refreshing_ || stopping_ || inflight_.empty()) return;
  struct Item {
    std::uint64_t token;
    spool::LockId lock;
    std::string error;
    bool lost = false;  // proved taken over (not merely an I/O error while touching it)
  };
  auto items = std::make_shared<std::vector<Item>>();
  for (auto& [token, f] : inflight_)
    if (!f->finishing && f->claimed.lock.held()) items->push_back({token, f->claimed.lock.id(), ""});
  refreshing_ = true;
  ++pool_jobs_;
  uv::run_in_pool(
      &loop_,
      [items] {
        for (auto& it : *items)
          if (auto r = spool::refresh_lock(it.lock); !r.ok()) {
            it.error = r.error().message;
            it.lost = !spool::lock_still_ours(it.lock);
          }
      },
      [this, items] {
        --pool_jobs_;
        refreshing_ = false;
        for (const auto& it : *items) {
          auto f = inflight_.find(it.token);
          if (it.error.empty() || f == inflight_.end() || f->second->finishing) continue;
          log::warning("{}: lock {}: {}", f->second->claimed.entry.id, it.lost ? "lost" : "not refreshed",
                       it.error);
          if (!it.lost) continue;  // a failed touch of a lock that is still ours: try again next time
          f->second->lost = true;
          if (engine_) engine_->withdraw(it.token);
        }
        maybe_continue();
      });
}

void Daemon::sweep_orphans() {
  if (stopping_) return;
  ++pool_jobs_;
  spool::Spool* sp = &*spool_;
  auto rep = std::make_shared<Result<spool::RecoverReport>>(make_error("not run"));
  uv::run_in_pool(
      &loop_, [sp, rep] { *rep = sp->recover(); },
      [this, rep] {
        --pool_jobs_;
        if (!rep->ok()) {
          log::warning("spool sweep: {}", rep->error().message);
        } else if ((*rep)->drops_restored || (*rep)->pickups_completed || (*rep)->removals_completed) {
          log::info(
              "spool sweep: {} claimed drops of a dead process returned to incoming/, {} pickups and {} "
              "removals completed",
              (*rep)->drops_restored, (*rep)->pickups_completed, (*rep)->removals_completed);
          tick(0);
        }
        maybe_continue();
      });
}

void Daemon::expire_failed() {
  if (stopping_) return;
  ++pool_jobs_;
  spool::Spool* sp = &*spool_;
  int64_t cutoff =
      unix_now() - std::chrono::duration_cast<std::chrono::seconds>(cfg_->queue.failed_retention).count();
  auto removed = std::make_shared<size_t>(0);
  uv::run_in_pool(
      &loop_,
      [sp, cutoff, removed] {
        auto scan = sp->scan(spool::Place::failed, 0, cutoff);
        if (!scan.ok()) return;
        for (int rounds = 0; rounds < 1000 && !scan->done(); ++rounds) {
          auto batch = scan->next(kScanChunk);
          if (!batch.ok()) return;
          for (const auto& ref : *batch) {
            auto c = sp->claim(ref);
            if (c.ok() && *c && sp->remove(**c).ok()) ++*removed;
          }
        }
      },
      [this, removed] {
        --pool_jobs_;
        if (*removed) log::info("removed {} dead letters older than failed_retention", *removed);
        maybe_continue();
      });
}

}  // namespace spoold::daemon
