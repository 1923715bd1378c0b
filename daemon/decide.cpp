// daemon/decide.cpp — see decide.h.
#include "daemon/decide.h"

#include <fmt/format.h>

#include <algorithm>

namespace spoold::daemon {

namespace {

std::string diagnostic(const smtp::Outcome& o) {
  return o.code > 0 ? "smtp; " + reply_text(o) : "x-spoold; " + o.text;
}

std::string remote_host(const std::string& relay) {
  auto b = relay.find('[');
  return relay == "none" ? "" : relay.substr(0, b);
}

bool any_failed(const spool::Entry& e) {
  return std::any_of(e.recipients.begin(), e.recipients.end(), [](const spool::Recipient& rc) {
    return rc.state == spool::RcptState::bounced || rc.state == spool::RcptState::expired;
  });
}

}  // namespace

const char* to_string(Action a) {
  switch (a) {
    case Action::release:
      return "release";
    case Action::remove:
      return "remove";
    case Action::next_tier:
      return "next tier";
    case Action::to_failed:
      return "to failed/";
    case Action::postpone:
      return "postpone";
  }
  return "?";
}

const char* to_string(LogStatus s) {
  switch (s) {
    case LogStatus::sent:
      return "sent";
    case LogStatus::deferred:
      return "deferred";
    case LogStatus::bounced:
      return "bounced";
    case LogStatus::expired:
      return "expired";
  }
  return "?";
}

std::string reply_text(const smtp::Outcome& o) {
  if (o.code > 0)
    return o.enhanced.empty() ? fmt::format("{} {}", o.code, o.text)
                              : fmt::format("{} {} {}", o.code, o.enhanced, o.text);
  return o.text;
}

TierPolicy tier_policy(const config::Config& cfg) {
  TierPolicy p;
  for (const auto& t : cfg.queue.tiers)
    p.delays_s.push_back(std::chrono::duration_cast<std::chrono::seconds>(t.delay).count());
  p.delay_warning_tier = cfg.queue.delay_warning_tier;
  return p;
}

namespace {

// This attempt's results into the entry's recipients and the plan's log lines and bounces;
// returns how long to postpone when every server was skipped (0: none was).
std::int64_t record_results(spool::Entry& e, const std::vector<std::optional<RecipientResult>>& results,
                            Plan& plan) {
  std::int64_t postpone_s = 0;
  for (size_t i = 0; i < e.recipients.size() && i < results.size(); ++i) {
    if (results[i] && !results[i]->attempted && results[i]->postpone_s > 0) {
      const auto& r = *results[i];
      postpone_s = std::max(postpone_s, r.postpone_s);
      plan.logs.push_back({i, "none", r.outcome.enhanced, LogStatus::deferred, reply_text(r.outcome)});
      continue;
    }
    if (!results[i] || !results[i]->attempted) continue;
    plan.attempted = true;
    const auto& r = *results[i];
    auto& rc = e.recipients[i];
    ++rc.attempts;
    rc.last_reply = reply_text(r.outcome);
    switch (r.outcome.status) {
      case smtp::Status::sent:
        rc.state = spool::RcptState::sent;
        plan.logs.push_back({i, r.relay, r.outcome.enhanced, LogStatus::sent, rc.last_reply});
        // NOTIFY=SUCCESS to a server that could not take it on: we report "relayed" (RFC 3461 §6.2.2).
        if (notify_wants(rc.dsn.notify, DsnAction::relayed) && !r.outcome.dsn_passed)
          plan.relayed.push_back({rc.address, r.outcome.enhanced.empty() ? "2.0.0" : r.outcome.enhanced,
                                  diagnostic(r.outcome), remote_host(r.relay), DsnAction::relayed,
                                  rc.dsn.orcpt});
        break;
      case smtp::Status::permanent:
        rc.state = spool::RcptState::bounced;
        plan.logs.push_back({i, r.relay, r.outcome.enhanced, LogStatus::bounced, rc.last_reply});
        if (notify_wants(rc.dsn.notify, DsnAction::failed))
          plan.bounces.push_back({rc.address, r.outcome.enhanced, diagnostic(r.outcome), remote_host(r.relay),
                                  DsnAction::failed, rc.dsn.orcpt});
        break;
      case smtp::Status::temporary:
        plan.logs.push_back({i, r.relay, r.outcome.enhanced, LogStatus::deferred, rc.last_reply});
        break;
    }
  }
  return postpone_s;
}

// Out of tiers: every pending recipient expires.
void expire_pending(spool::Entry& e, Plan& plan) {
  for (auto& item : plan.logs)
    if (item.status == LogStatus::deferred) item.status = LogStatus::expired;
  for (auto& rc : e.recipients) {
    if (rc.final()) continue;
    rc.state = spool::RcptState::expired;
    if (notify_wants(rc.dsn.notify, DsnAction::failed))
      plan.bounces.push_back({rc.address, "4.4.7",
                              "x-spoold; delivery time expired; last reply: " + rc.last_reply, "",
                              DsnAction::failed, rc.dsn.orcpt});
  }
}

// Where an attempted entry goes.
void plan_attempted(spool::Entry& e, Plan& plan, int tier, const TierPolicy& policy, int64_t now,
                    std::int64_t postpone_s) {
  e.last_attempt = now;
  ++e.attempts;
  bool last_tier = tier + 1 >= static_cast<int>(policy.delays_s.size());
  if (e.pending() > 0 && last_tier && postpone_s > 0) {
    // Out of tiers, but some recipients were not tried (their servers were skipped): nobody
    // expires untried; the message stays in the last tier until they are.
    plan.action = Action::postpone;
  } else if (e.pending() > 0 && last_tier) {
    expire_pending(e, plan);
  }
  if (e.pending() > 0 && plan.action != Action::postpone) {
    plan.action = Action::next_tier;
    plan.tier = tier + 1;
    plan.warn = policy.delay_warning_tier > 0 && plan.tier == policy.delay_warning_tier &&
                !e.flags.warning_sent && !e.sender.empty();
    if (plan.warn) e.flags.warning_sent = true;
  } else if (e.pending() == 0) {
    plan.action = any_failed(e) ? Action::to_failed : Action::remove;
  }
}

}  // namespace

Plan decide(spool::Entry e, const std::vector<std::optional<RecipientResult>>& results, int tier,
            const TierPolicy& policy, int64_t now) {
  Plan plan;
  const int tiers = static_cast<int>(policy.delays_s.size());
  std::int64_t postpone_s = record_results(e, results, plan);  // every server skipped: due again then
  plan.action = Action::release;
  plan.tier = tier;
  if (!plan.attempted && postpone_s > 0) {
    // Not tried at all (a due retry is never a silent no-op): no attempt is counted and the entry
    // keeps its tier, due again when the skipped servers are.
    plan.action = Action::postpone;
  } else if (plan.attempted) {
    plan_attempted(e, plan, tier, policy, now, postpone_s);
  } else if (e.pending() == 0) {
    // Nothing left to attempt: a crash between recording the final outcomes and the last move
    // (into failed/, or the removal) left the entry behind. Its bounce, if any, was queued before
    // the outcomes were written, so only the move is finished here.
    plan.action = any_failed(e) ? Action::to_failed : Action::remove;
  }
  plan.due = plan.action == Action::postpone ? now + postpone_s
             : plan.tier < tiers             ? now + policy.delays_s[static_cast<size_t>(plan.tier)]
                                             : now;
  // A null sender never gets a report.
  if (e.sender.empty()) {
    plan.bounces.clear();
    plan.relayed.clear();
    plan.warn = false;
  }
  plan.entry = std::move(e);
  return plan;
}

}  // namespace spoold::daemon
