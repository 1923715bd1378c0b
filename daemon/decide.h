// daemon/decide.h — what happens to a queue entry when its delivery attempt ends, as a pure
// function of the entry, the recipients' results, its tier and the tier policy: tested by table
// (tests/daemon/decide_test.cpp); Daemon::finish() only carries the plan out on the thread pool.
//   all recipients final, none failed   → remove
//   all final, some bounced or expired  → DSN to the sender first, then failed/
//   some still pending                  → outcomes recorded, moved to the next tier
//   pending in the last tier            → expired: DSN, then failed/
//   no server tried (all skipped)       → postponed in its tier, no attempt counted
//   nothing attempted (stopping)        → released as it was
// Rules: a recipient is never expired untried; a null sender never gets a DSN; a delay warning
// goes once, when the entry enters `delay_warning_tier`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "daemon/delivery.h"
#include "daemon/dsn.h"
#include "spool/entry.h"

namespace spoold::daemon {

enum class Action { release, remove, next_tier, to_failed, postpone };
enum class LogStatus { sent, deferred, bounced, expired };
const char* to_string(Action a);
const char* to_string(LogStatus s);

// One log line of the outcome: the recipient's index in the entry and what to say.
struct LogItem {
  size_t index = 0;
  std::string relay, dsn;
  LogStatus status = LogStatus::deferred;
  std::string reason;
};

struct TierPolicy {
  std::vector<int64_t> delays_s;  // per tier, seconds
  int delay_warning_tier = 0;     // 0 = no delay warnings
};
TierPolicy tier_policy(const config::Config& cfg);

struct Plan {
  spool::Entry entry;  // with this attempt's outcomes recorded
  Action action = Action::release;
  int tier = 0;       // where the entry goes (next_tier, postpone)
  int64_t due = 0;    // unix seconds when it is due there
  bool warn = false;  // a delay warning goes to the sender
  bool attempted = false;
  std::vector<LogItem> logs;
  // The recipients a report names, each only if its NOTIFY asks (notify_wants): failed or
  // expired ones in a non-delivery report, ones sent to a server without DSN under NOTIFY=SUCCESS
  // in a "relayed" report. A delay warning (warn) names the pending recipients that want one.
  std::vector<DsnRecipient> bounces;
  std::vector<DsnRecipient> relayed;
};

Plan decide(spool::Entry entry, const std::vector<std::optional<RecipientResult>>& results, int tier,
            const TierPolicy& policy, int64_t now);

// "550 5.1.1 no such user" (the code and enhanced code when there are some).
std::string reply_text(const smtp::Outcome& o);

}  // namespace spoold::daemon
