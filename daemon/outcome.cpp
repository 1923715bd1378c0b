// daemon/outcome.cpp — what happens to an entry when its delivery attempt ends.
//   all recipients final, none failed   → remove the entry
//   all final, some bounced or expired  → DSN queued durably first, then the entry goes to failed/
//   some still pending                  → entry rewritten with the outcomes, moved to the next tier
//   pending in the last tier            → expired: DSN, then failed/
// Rule (guarantee 1): the bounce is durable before the entry changes; the entry change is durable
// before anything is logged or counted; a null-sender message is never bounced.
#include <fcntl.h>
#include <unistd.h>

#include <ctime>

#include "daemon/daemon.h"
#include "daemon/dsn.h"
#include "daemon/inflight.h"
#include "daemon/log.h"
#include "daemon/notice.h"
#include "spool/crashpoint.h"

namespace spoold::daemon {

namespace {

int64_t unix_now() {
  return static_cast<int64_t>(std::time(nullptr));
}

std::string reply_text(const smtp::Outcome& o) {
  if (o.code > 0)
    return o.enhanced.empty() ? fmt::format("{} {}", o.code, o.text)
                              : fmt::format("{} {} {}", o.code, o.enhanced, o.text);
  return o.text;
}

std::string diagnostic(const smtp::Outcome& o) {
  return o.code > 0 ? "smtp; " + reply_text(o) : "x-spoold; " + o.text;
}

std::string remote_host(const std::string& relay) {
  auto b = relay.find('[');
  return relay == "none" ? "" : relay.substr(0, b);
}

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

struct LogItem {
  size_t index;
  std::string relay, dsn, status, reason;
};

}  // namespace

void Daemon::on_part_done(std::uint64_t token, std::vector<RecipientResult> results) {
  auto it = inflight_.find(token);
  if (it == inflight_.end()) return;
  InFlight& f = *it->second;
  for (auto& r : results)
    if (r.index < f.results.size()) f.results[r.index] = std::move(r);
  spool::crashpoint("delivery.after_part");
  if (f.parts_left > 0 && --f.parts_left == 0) {
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

void Daemon::finish(std::uint64_t token) {
  InFlight& f = *inflight_.at(token);
  f.finishing = true;
  spool::Entry e = f.claimed.entry;
  const int tier = f.claimed.ref.tier;
  const int tiers = static_cast<int>(cfg_->queue.tiers.size());
  const int64_t now = unix_now();

  bool attempted = false;
  std::int64_t postpone_s = 0;  // every server was skipped: due again in this many seconds
  std::vector<LogItem> logs;
  std::vector<DsnRecipient> bounces;
  for (size_t i = 0; i < e.recipients.size(); ++i) {
    if (f.results[i] && !f.results[i]->attempted && f.results[i]->postpone_s > 0) {
      const auto& r = *f.results[i];
      postpone_s = std::max(postpone_s, r.postpone_s);
      logs.push_back({i, "none", r.outcome.enhanced, "deferred", reply_text(r.outcome)});
      continue;
    }
    if (!f.results[i] || !f.results[i]->attempted) continue;
    attempted = true;
    const auto& r = *f.results[i];
    auto& rc = e.recipients[i];
    ++rc.attempts;
    rc.last_reply = reply_text(r.outcome);
    switch (r.outcome.status) {
      case smtp::Status::sent:
        rc.state = spool::RcptState::sent;
        logs.push_back({i, r.relay, r.outcome.enhanced, "sent", rc.last_reply});
        break;
      case smtp::Status::permanent:
        rc.state = spool::RcptState::bounced;
        logs.push_back({i, r.relay, r.outcome.enhanced, "bounced", rc.last_reply});
        bounces.push_back({rc.address, r.outcome.enhanced, diagnostic(r.outcome), remote_host(r.relay)});
        break;
      case smtp::Status::temporary:
        logs.push_back({i, r.relay, r.outcome.enhanced, "deferred", rc.last_reply});
        break;
    }
  }

  enum class Action { release, remove, next_tier, to_failed, postpone } action = Action::release;
  int next_tier = tier;
  bool warn = false;
  if (!attempted && postpone_s > 0) {
    // Not tried at all (DESIGN.md: a due retry is never a silent no-op): no attempt is counted and
    // the entry keeps its tier, due again when the skipped servers are.
    action = Action::postpone;
  } else if (attempted) {
    e.last_attempt = now;
    ++e.attempts;
    if (e.pending() > 0 && tier + 1 >= tiers && postpone_s > 0) {
      // Out of tiers, but some recipients were not tried (their servers were skipped): nobody
      // expires untried; the message stays in the last tier until they are.
      action = Action::postpone;
    } else if (e.pending() > 0 && tier + 1 >= tiers) {
      // Out of tiers: every pending recipient expires.
      for (auto& item : logs)
        if (item.status == "deferred") item.status = "expired";
      for (size_t i = 0; i < e.recipients.size(); ++i) {
        auto& rc = e.recipients[i];
        if (rc.final()) continue;
        rc.state = spool::RcptState::expired;
        bounces.push_back(
            {rc.address, "4.4.7", "x-spoold; delivery time expired; last reply: " + rc.last_reply, ""});
      }
    }
    if (e.pending() > 0 && action != Action::postpone) {
      action = Action::next_tier;
      next_tier = tier + 1;
      warn = cfg_->queue.delay_warning_tier > 0 && next_tier == cfg_->queue.delay_warning_tier &&
             !e.flags.warning_sent && !e.sender.empty();
      if (warn) e.flags.warning_sent = true;
    } else if (e.pending() == 0) {
      bool failed = false;
      for (const auto& rc : e.recipients)
        if (rc.state == spool::RcptState::bounced || rc.state == spool::RcptState::expired) failed = true;
      action = failed ? Action::to_failed : Action::remove;
    }
  } else if (e.pending() == 0) {
    // Nothing left to attempt: a crash between recording the final outcomes and the last move
    // (into failed/, or the removal) left the entry behind. Its bounce, if any, was queued before
    // the outcomes were written, so only the move is finished here.
    bool failed = false;
    for (const auto& rc : e.recipients)
      if (rc.state == spool::RcptState::bounced || rc.state == spool::RcptState::expired) failed = true;
    action = failed ? Action::to_failed : Action::remove;
  }

  log::debug("{}: attempt over: {} recipients, attempted={}, action={}", e.id, e.recipients.size(), attempted,
             static_cast<int>(action));

  // Build the DSN text now (config is loop-thread data); headers are read on the pool.
  std::optional<DsnInput> dsn;
  if ((!bounces.empty() || warn) && !e.sender.empty()) {
    DsnInput in;
    in.delayed = bounces.empty();
    in.reporting_mta = cfg_->hostname;
    in.original_qid = e.id;
    in.original_sender = e.sender;
    in.arrival = std::chrono::system_clock::from_time_t(static_cast<time_t>(e.arrived));
    in.now = std::chrono::system_clock::now();
    if (in.delayed) {
      for (const auto& rc : e.recipients)
        if (!rc.final()) in.recipients.push_back({rc.address, "4.0.0", "x-spoold; " + rc.last_reply, ""});
    } else {
      in.recipients = bounces;
    }
    in.boundary_seed = fmt::format("{}.{}", e.id, e.attempts);
    dsn = std::move(in);
  }

  struct Job {
    explicit Job(spool::Claimed c) : claimed(std::move(c)) {}
    spool::Claimed claimed;
    spool::Entry entry;
    std::optional<DsnInput> dsn;
    Action action;
    int tier;
    int64_t due;
    int64_t now = 0;  // failed/ entries are named by the time they failed
    std::string error;
    bool spool_wide = false;  // the error hits every write (a full disk): back off pickups
    bool dsn_queued = false;
  };
  auto job = std::make_shared<Job>(std::move(f.claimed));
  job->entry = std::move(e);
  job->dsn = std::move(dsn);
  job->action = action;
  job->tier = next_tier;
  job->now = now;
  job->due = action == Action::postpone ? now + postpone_s
             : next_tier < tiers        ? now + std::chrono::duration_cast<std::chrono::seconds>(
                                             cfg_->queue.tiers[static_cast<size_t>(next_tier)].delay)
                                             .count()
                                 : now;
  spool::Spool* sp = &*spool_;
  std::atomic<bool>* spool_full = &spool_full_;  // the daemon outlives its pool jobs (pool_jobs_)
  ++pool_jobs_;
  outcome_batch_->add(
      [sp, job, spool_full] {
        if (job->dsn) {
          job->dsn->original_headers = read_headers(*sp, job->entry);
          std::string text = make_dsn(*job->dsn);
          spool::crashpoint("outcome.before_bounce_write");
          auto id = sp->enqueue(spool::NewMessage{"", {job->dsn->original_sender}, text});
          if (!id.ok()) {
            // No durable bounce, no final outcome: the failed recipients stay pending and are tried
            // (and bounced) again later. Nothing is lost; at worst the sender hears later.
            job->error = "cannot queue the bounce: " + id.error().message;
            job->spool_wide = spool_wide_error(id.error().code);
            for (auto& rc : job->entry.recipients)
              if (rc.state == spool::RcptState::bounced || rc.state == spool::RcptState::expired)
                rc.state = spool::RcptState::pending;
            job->entry.flags.warning_sent = job->claimed.entry.flags.warning_sent;
            if (job->action == Action::to_failed) job->action = Action::next_tier;
          } else {
            job->dsn_queued = true;
          }
          spool::crashpoint("outcome.after_bounce_write");
        }
        job->claimed.entry = job->entry;
        Result<void> r;
        switch (job->action) {
          case Action::release:  // not attempted (stopping): as it was; a fresh drop gets queued
            r = job->claimed.fresh ? sp->reschedule(job->claimed, 0, job->due) : job->claimed.lock.release();
            break;
          case Action::remove:
            r = sp->remove(job->claimed);
            break;
          case Action::to_failed:
            r = sp->fail(job->claimed, "undeliverable", job->now);
            break;
          case Action::postpone:
            r = sp->reschedule(job->claimed, job->claimed.fresh ? 0 : job->tier, job->due);
            break;
          case Action::next_tier: {
            int t = std::min(job->tier, sp->tiers() - 1);
            spool::crashpoint("outcome.before_tier_move");
            r = sp->reschedule(job->claimed, t, job->due);
            break;
          }
        }
        if (!r.ok()) {
          job->error += (job->error.empty() ? "" : "; ") + r.error().message;
          job->spool_wide = job->spool_wide || spool_wide_error(r.error().code);
          if (job->spool_wide) spool_full->store(true);  // before the drop reappears in incoming/
          // The outcome is not on disk. A fresh drop has no envelope to fall back on: hand it back
          // to incoming/ now (it is picked up again once writes work), not at the next sweep.
          if (job->claimed.fresh) {
            auto u = sp->unclaim(job->claimed);
            job->error += u.ok() ? " — the message went back to incoming/ and will be attempted again"
                                 : "; returning it to incoming/ failed too: " + u.error().message;
          }
        }
      },
      [this, token, job, tier, logs = std::move(logs)] {
        --pool_jobs_;
        auto it = inflight_.find(token);
        const spool::Entry& e = job->entry;
        if (!job->error.empty()) log::error("{}: {}", e.id, job->error);
        // What went back to incoming/ would otherwise be picked up again at once (its rename is
        // an inotify event) and fail the same way: no pickups until the next tier-0 scan.
        if (job->spool_wide) pause_pickups();
        double delay = static_cast<double>(unix_now() - e.arrived);
        for (const auto& item : logs) {
          log::delivery({e.id, e.recipients[item.index].address, item.relay, delay, tier,
                         item.dsn.empty() ? "4.0.0" : item.dsn, item.status, item.reason});
          if (item.status == "sent") ++counters_.sent;
          if (item.status == "deferred") ++counters_.deferred;
          if (item.status == "bounced") ++counters_.bounced;
          if (item.status == "expired") ++counters_.expired;
        }
        if (job->dsn_queued) {
          dsn_queued_ = true;
          log::info("{}: sender notification queued ({})", e.id,
                    job->dsn && job->dsn->delayed ? "delay warning" : "non-delivery");
        }
        if (it != inflight_.end())
          forget_inflight(it, e.id);
        else
          inflight_ids_->with([&](auto& ids) { ids.erase(e.id); });
        if (job->dsn_queued && !opt_.once) tick(0);
        maybe_continue();
      });
}

}  // namespace spoold::daemon
