// daemon/outcome.cpp — carries out what decide() (decide.h) planned for an entry whose delivery
// attempt ended: the DSN, then the entry's move, on the thread pool; then the log lines.
// Rule (guarantee 1): the bounce is durable before the entry changes; the entry change is durable
// before anything is logged or counted; a null-sender message is never bounced.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <ctime>
#include <utility>

#include "common/clock.h"
#include "daemon/bounce_class.h"
#include "daemon/daemon.h"
#include "daemon/decide.h"
#include "daemon/dsn.h"
#include "daemon/hook_runner.h"
#include "daemon/inflight.h"
#include "daemon/log.h"
#include "daemon/notice.h"
#include "spool/crashpoint.h"

namespace spoold::daemon {

namespace {

// The header section of the stored message (for the DSN's text/rfc822-headers part), capped.
std::string read_headers(const spool::Spool& sp, const spool::Entry& e) {
  constexpr size_t kCap = 64 * 1024;
  auto body = sp.open_body(e);
  if (!body.ok()) return "";
  std::string buf(std::min<uint64_t>(kCap, body->size), '\0');
  ssize_t n = ::pread(body->fd.get(), buf.data(), buf.size(), static_cast<off_t>(body->offset));
  if (n <= 0) return "";
  buf.resize(static_cast<size_t>(n));
  for (const char* sep : {"\r\n\r\n", "\n\n"}) {
    auto end = buf.find(sep);
    if (end != std::string::npos) return buf.substr(0, end + 1);
  }
  return buf;
}

// The whole message for a RET=FULL report (attach_full() has bounded its size); "" when it cannot
// be read, and the report then carries the headers.
std::string read_message(const spool::Spool& sp, const spool::Entry& e) {
  auto body = sp.open_body(e);
  if (!body.ok() || body->size > kDsnFullMessageLimit) return "";
  std::string buf(body->size, '\0');
  ssize_t n = ::pread(body->fd.get(), buf.data(), buf.size(), static_cast<off_t>(body->offset));
  if (n != static_cast<ssize_t>(buf.size())) return "";
  return buf;
}

}  // namespace

void Daemon::on_part_done(std::uint64_t token, std::vector<RecipientResult> results) {
  auto it = inflight_.find(token);
  if (it == inflight_.end()) return;
  InFlight& f = *it->second;
  if (f.unreported == 0) return;  // finishing: its outcome job reads the results on the pool
  for (auto& r : results)
    if (r.index < f.results.size()) {
      if (!f.results[r.index]) --f.unreported;
      f.results[r.index] = std::move(r);
      if (f.unreported == 0) break;
    }
  spool::crashpoint("delivery.after_part");
  if (f.unreported == 0) {
    if (!f.lost) return finish(token);
    // Not ours any more: nothing may be written or logged as its outcome; its new owner decides.
    log::info("{}: left to the process that took its lock over", f.claimed.entry.id);
    forget_inflight(it, f.claimed.entry.id);
    if (engine_) engine_->forget_withdrawn(token);
    // Called from inside the delivery engine: what comes next (perhaps the end of a --once run,
    // which destroys the engine) must wait for the next loop iteration.
    continue_timer_->start(0, 0, [this] { maybe_continue(); });
  }
}

// What one finished entry needs on the pool: the claim, the planned change, and what happened.
struct OutcomeJob {
  explicit OutcomeJob(spool::Claimed c) : claimed(std::move(c)) {}
  spool::Claimed claimed;
  spool::Entry entry;
  std::optional<DsnInput> dsn;
  Action action = Action::release;
  int tier = 0;
  int64_t due = 0;
  int64_t now = 0;  // failed/ entries are named by the time they failed
  std::string error;
  bool spool_wide = false;  // the error hits every write (a full disk): back off pickups
  bool dsn_queued = false;
  std::uint64_t dsn_bytes = 0;  // of the report queued
  // hooks.on_outcome: the selected records, written to events/ (EventWriter) before the outcome.
  std::vector<control::Json> events;  // until written; after, only those that could not be
  std::string event_tag;
  std::vector<EventRef> event_refs;
  std::string event_error;
  bool events_withdrawn = false;  // the outcome is not on disk: its records are marked so
};

namespace {

// One recipient's log line (and outcome record).
log::Delivery delivery_line(const spool::Entry& e, const LogItem& item, double delay, int tier) {
  return {e.id,
          e.recipients[item.index].address,
          item.relay,
          delay,
          tier,
          item.dsn.empty() ? "4.0.0" : item.dsn,
          to_string(item.status),
          item.reason};
}

// The record `spoolctl watch` and hooks get: the log's fields, and what kind of failure it is.
control::Json outcome_record(const log::Delivery& d) {
  control::Json r = log::delivery_json(d).set("event", "delivery");
  if (d.status != "sent") {
    BounceClass c = classify_bounce(d.status, d.dsn, d.reason);
    r.set("bounce_type", to_string(c.type)).set("bounce_category", to_string(c.category));
  }
  return r;
}

// The bounce or warning, durable before the entry changes. Without it there is no final outcome:
// the failed recipients stay pending and are tried (and bounced) again later. Nothing is lost; at
// worst the sender hears later.
void queue_dsn(spool::Spool& sp, OutcomeJob& job) {
  job.dsn->original_headers = read_headers(sp, job.entry);
  if (job.dsn->attach_full()) job.dsn->original_message = read_message(sp, job.entry);
  std::string text = make_dsn(*job.dsn);
  spool::crashpoint("outcome.before_bounce_write");
  auto id = sp.enqueue(spool::NewMessage{"", {job.dsn->original_sender}, text});
  if (id.ok()) {
    job.dsn_queued = true;
    job.dsn_bytes = text.size();
  } else {
    job.error = "cannot queue the bounce: " + id.error().message;
    job.spool_wide = spool_wide_error(id.error().code);
    // Only the recipients the report names as failed are tried again (and reported then); one
    // whose NOTIFY wanted no report, or a "relayed" one, keeps its final state.
    for (auto& rc : job.entry.recipients)
      if (rc.state == spool::RcptState::bounced || rc.state == spool::RcptState::expired)
        for (const auto& r : job.dsn->recipients)
          if (r.action == DsnAction::failed && r.address == rc.address) rc.state = spool::RcptState::pending;
    job.entry.flags.warning_sent = job.claimed.entry.flags.warning_sent;
    if (job.action == Action::to_failed) job.action = Action::next_tier;
  }
  spool::crashpoint("outcome.after_bounce_write");
}

Result<void> move_entry(spool::Spool& sp, OutcomeJob& job) {
  switch (job.action) {
    case Action::release:  // not attempted (stopping): as it was; a fresh drop gets queued
      return job.claimed.fresh ? sp.reschedule(job.claimed, 0, job.due) : job.claimed.lock.release();
    case Action::remove:
      return sp.remove(job.claimed);
    case Action::to_failed:
      return sp.fail(job.claimed, "undeliverable", job.now);
    case Action::postpone:
      return sp.reschedule(job.claimed, job.claimed.fresh ? 0 : job.tier, job.due);
    case Action::next_tier: {
      int t = std::min(job.tier, sp.tiers() - 1);
      spool::crashpoint("outcome.before_tier_move");
      return sp.reschedule(job.claimed, t, job.due);
    }
  }
  return make_error("unknown action");
}

// On the pool: the DSN, then the entry's move. A failed move leaves the outcome off the disk.
void write_outcome(spool::Spool& sp, OutcomeJob& job, std::atomic<bool>& spool_full) {
  // The hook events are on disk already (finish() wrote them first), so a crash between the two
  // runs a hook twice rather than never.
  if (job.dsn) queue_dsn(sp, job);
  job.claimed.entry = job.entry;
  auto r = move_entry(sp, job);
  if (r.ok()) return;
  // The outcome is not on disk: the message is attempted again, and its events would tell of
  // an outcome that did not happen.
  if (!job.event_refs.empty()) {
    withdraw_events(sp.options().dir, job.event_refs);
    job.events_withdrawn = true;
  }
  job.error += (job.error.empty() ? "" : "; ") + r.error().message;
  job.spool_wide = job.spool_wide || spool_wide_error(r.error().code);
  if (job.spool_wide) spool_full.store(true);  // before the drop reappears in incoming/
  // A fresh drop has no envelope to fall back on: hand it back to incoming/ now (it is picked up
  // again once writes work), not at the next sweep.
  if (job.claimed.fresh) {
    auto u = sp.unclaim(job.claimed);
    job.error += u.ok() ? " — the message went back to incoming/ and will be attempted again"
                        : "; returning it to incoming/ failed too: " + u.error().message;
  }
}

}  // namespace

// Built on the loop (config is loop-thread data); the headers are read on the pool.
std::optional<DsnInput> Daemon::dsn_for(const Plan& plan) const {
  const spool::Entry& e = plan.entry;
  DsnInput in;
  in.recipients = plan.bounces;
  // The attempt's delay warning goes in the same report as its failures, if any (one report
  // per message per attempt; the warning is sent once, so it must not wait for another).
  if (plan.warn)
    for (const auto& rc : e.recipients)
      if (!rc.final() && notify_wants(rc.dsn.notify, DsnAction::delayed))
        in.recipients.push_back(
            {rc.address, "4.0.0", "x-spoold; " + rc.last_reply, "", DsnAction::delayed, rc.dsn.orcpt});
  in.recipients.insert(in.recipients.end(), plan.relayed.begin(), plan.relayed.end());
  if (in.recipients.empty()) return std::nullopt;
  in.reporting_mta = cfg_->hostname;
  in.original_qid = e.id;
  in.original_sender = e.sender;
  in.envid = e.dsn.envid;
  in.ret_full = e.dsn.ret == "FULL";
  in.original_size = e.body_size;
  in.arrival = std::chrono::system_clock::from_time_t(static_cast<time_t>(e.arrived));
  in.now = std::chrono::system_clock::now();
  in.boundary_seed = fmt::format("{}.{}", e.id, e.attempts);
  return in;
}

void Daemon::finish(std::uint64_t token) {
  InFlight& f = *inflight_.at(token);
  f.finishing = true;
  const int tier = f.claimed.ref.tier;
  const int64_t now = unix_now();
  Plan plan = decide(f.claimed.entry, f.results, tier, tier_policy(*cfg_), now);
  log::debug("{}: attempt over: {} recipients, attempted={}, action={}", plan.entry.id,
             plan.entry.recipients.size(), plan.attempted, to_string(plan.action));
  auto job = std::make_shared<OutcomeJob>(std::move(f.claimed));
  job->dsn = dsn_for(plan);
  if (const auto& hook = cfg_->hooks.on_outcome; hook.enabled()) {
    const double delay = static_cast<double>(now - plan.entry.arrived);
    for (const auto& item : plan.logs) {
      log::Delivery d = delivery_line(plan.entry, item, delay, tier);
      if (hook.wants(d.status)) job->events.push_back(outcome_record(d).set("instance", cfg_->instance));
    }
    job->event_tag = event_tag(cfg_->instance);
  }
  job->entry = std::move(plan.entry);
  job->action = plan.action;
  job->tier = plan.tier;
  job->now = now;
  job->due = plan.due;
  spool::Spool* sp = &*spool_;
  std::atomic<bool>* spool_full = &spool_full_;  // the daemon outlives its pool jobs (pool_jobs_)
  ++pool_jobs_;
  auto submit = [this, sp, job, spool_full, token, tier](std::vector<LogItem> logs) {
    outcome_batch_->add(
        [sp, job, spool_full] { write_outcome(*sp, *job, *spool_full); },
        [this, token, job, tier, logs = std::move(logs)] { outcome_written(token, *job, tier, logs); });
  };
  if (job->events.empty()) return submit(std::move(plan.logs));
  // The records first, durable, with those of the other outcomes finishing about now (one file,
  // its fsyncs shared). A spool that cannot take them (a full disk) loses them, said in the log
  // with each record, rather than having the message sent again.
  event_writer_->add(job->event_tag, std::move(job->events),
                     [this, job, submit, logs = std::move(plan.logs)](WrittenEvents w) mutable {
                       if (!w.refs.empty() && hooks_) hooks_->expect(w.refs.front().file, w.file_records);
                       job->event_refs = std::move(w.refs);
                       job->event_error = std::move(w.error);
                       job->events = std::move(w.lost);
                       submit(std::move(logs));
                     });
}

// Back on the loop, the outcome durable (or not, said in job.error): the log lines and counters.
void Daemon::outcome_written(std::uint64_t token, const OutcomeJob& job, int tier,
                             const std::vector<LogItem>& logs) {
  --pool_jobs_;
  const spool::Entry& e = job.entry;
  if (!job.error.empty()) log::error("{}: {}", e.id, job.error);
  // What went back to incoming/ would otherwise be picked up again at once (its rename is an
  // inotify event) and fail the same way: no pickups until the next tier-0 scan.
  if (job.spool_wide) pause_pickups();
  double delay = static_cast<double>(unix_now() - e.arrived);
  for (const auto& item : logs) {
    log::Delivery d = delivery_line(e, item, delay, tier);
    log::delivery(d);
    count(item.status);
    // Only outcomes that are on disk: one that is not will be attempted again.
    if (!watchers_.empty() && job.error.empty()) publish(e.id, outcome_record(d));
  }
  if (!watchers_.empty()) {
    // The attempt is over and its outcome durable (or job.error says why not): what is left.
    size_t pending = 0;
    for (const auto& r : e.recipients) pending += r.final() ? 0 : 1;
    auto summary = control::Json()
                       .set("event", "attempt")
                       .set("qid", e.id)
                       .set("action", to_string(job.action))
                       .set("pending", pending)
                       .set("tier", job.tier);
    if (!job.error.empty()) summary.set("error", log::sanitize(job.error));
    publish(e.id, summary);
  }
  if (job.error.empty()) count_usage(e, logs);
  // The report is a message of its own in the queue: spooled, by this instance.
  if (job.dsn_queued) usage_->count(spool::UsageKind::spooled, 1, job.dsn_bytes);
  if (!job.event_error.empty())
    for (const auto& r : job.events)
      log::error("{}: hook event lost ({}): {}", e.id, job.event_error, r.dump());
  if (!job.event_refs.empty() && hooks_) {
    if (job.events_withdrawn)
      hooks_->withdrawn(job.event_refs);
    else
      hooks_->added(job.event_refs);
  }
  if (job.dsn_queued) {
    dsn_queued_ = true;
    log::info("{}: sender notification queued ({})", e.id,
              !job.dsn                           ? "non-delivery"
              : job.dsn->any(DsnAction::failed)  ? "non-delivery"
              : job.dsn->any(DsnAction::delayed) ? "delay warning"
                                                 : "relayed");
  }
  if (auto it = inflight_.find(token); it != inflight_.end())
    forget_inflight(it, e.id);
  else
    inflight_ids_->with([&](auto& ids) { ids.erase(e.id); });
  if (job.dsn_queued && !opt_.once) tick(0);
  maybe_continue();
}

// Per message and attempt: the message counts once in each status that one of its recipients got
// in this attempt, with the number of those recipients and the message's size. Only an outcome
// that is on disk: one that is not is attempted (and counted) again.
void Daemon::count_usage(const spool::Entry& e, const std::vector<LogItem>& logs) {
  std::array<std::uint64_t, spool::kUsageKinds.size()> recipients{};
  for (const auto& item : logs) {
    switch (item.status) {
      case LogStatus::sent:
        ++recipients[static_cast<size_t>(spool::UsageKind::sent)];
        break;
      case LogStatus::deferred:
        ++recipients[static_cast<size_t>(spool::UsageKind::deferred)];
        break;
      case LogStatus::bounced:
        ++recipients[static_cast<size_t>(spool::UsageKind::bounced)];
        break;
      case LogStatus::expired:
        ++recipients[static_cast<size_t>(spool::UsageKind::expired)];
        break;
    }
  }
  for (size_t k = 0; k < recipients.size(); ++k)
    if (recipients[k] > 0) usage_->count(static_cast<spool::UsageKind>(k), recipients[k], e.body_size);
}

void Daemon::count(LogStatus status) {
  switch (status) {
    case LogStatus::sent:
      ++counters_.sent;
      break;
    case LogStatus::deferred:
      ++counters_.deferred;
      break;
    case LogStatus::bounced:
      ++counters_.bounced;
      break;
    case LogStatus::expired:
      ++counters_.expired;
      break;
  }
}

}  // namespace spoold::daemon
