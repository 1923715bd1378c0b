// control/ops.h — the commands that change the spool (flush, hold, release, delete, requeue), done
// directly on the spool under each entry's lock. spoolctl uses them when the daemon is not running;
// spoold runs the same functions on its thread pool.
// Rule: an entry is changed only through Spool::claim (its lock); a lock held by someone else is
// reported per id as "in flight", never waited for or broken here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "control/json.h"
#include "control/views.h"
#include "spool/spool.h"

namespace spoold::control {

enum class Op { hold, release, remove, requeue, bounce, withdraw };
std::string_view to_string(Op op);  // the protocol's command name ("delete" for remove)
std::optional<Op> parse_op(std::string_view cmd);

// What a per-id command did: ids done, and a reason for each id that was not.
struct OpResult {
  std::vector<std::string> done;
  std::vector<std::pair<std::string, std::string>> errors;  // id, text
  Json to_json() const;                                     // {"ok":true,"done":[…],"errors":{…}}
};

// Makes queued entries due now. With ids, exactly those (each counts, even if it was due already);
// otherwise every queued entry the selection covers that was not due yet (domain: one with a
// pending recipient there). `flushed` counts the entries made due.
struct FlushResult {
  size_t flushed = 0;
  std::vector<std::pair<std::string, std::string>> errors;
  Json to_json() const;  // {"ok":true,"flushed":N,"errors":{…}}
};
FlushResult flush(spool::Spool& spool, const Selection& select, const std::vector<std::string>& ids,
                  int64_t now);

// hold: queue → hold/. release: hold/ → queue/0, due now. remove (`delete`): envelope and body go.
// requeue: failed/ → queue/0 due now, every recipient not yet sent back to pending.
// bounce: needs the daemon (it writes the DSN), so every id gets that error here.
// withdraw (`sendmail -odi` after a deferral): delete, but only a message nothing may have
// delivered: not in failed/, no recipient sent, no deferral after the final dot ("possible
// duplicate" in a last reply); else the error says which.
OpResult apply(spool::Spool& spool, Op op, const std::vector<std::string>& ids, int64_t now);

// The whole request → response for a spool-only answer (status, list, show, flush, hold, release,
// delete, requeue; bounce and reload answer that the daemon is needed). Never throws.
Json answer_from_spool(spool::Spool& spool, const Json& request, int64_t now);

}  // namespace spoold::control
