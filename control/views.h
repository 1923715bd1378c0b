// control/views.h — the read commands (status, list, show) computed from the spool alone.
// Both spoolctl (daemon not running) and spoold (on its thread pool) call these, so the JSON of
// docs/control-protocol.md has one author; the daemon then overwrites the live parts (daemon{},
// counters, in_flight, destinations) with what only it knows.
// Rule: bounded. Directories are streamed; at most ListRequest::limit messages are kept in memory
// (the answer says "truncated"), and a message's header section is read up to kMaxHeaderBytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "control/json.h"
#include "spool/spool.h"
#include "spool/usage.h"

namespace spoold::control {

inline constexpr size_t kDefaultListLimit = 10000;
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;

// Which messages `list` (and `flush`) look at. Empty optionals mean "any".
struct Selection {
  std::optional<spool::Place> place;  // none: queue and hold (failed/ only when asked for)
  std::optional<int> tier;            // queue tier; implies place queue
  std::string domain;                 // a recipient's domain, compared case-insensitively
};

struct ListRequest {
  Selection select;
  size_t limit = kDefaultListLimit;  // messages[] and incoming[] together
  // Drops in incoming/ not picked up yet: listed unless a tier, domain or place narrows the list
  // (they have neither yet: the drop is not parsed for a listing); place "incoming" lists only them.
  bool incoming = true;
  bool entries = true;  // queue entries (false for place "incoming")
};

// Reads "tier", "domain", "place" ("queue", "hold", "failed" or "incoming") and "limit" of a
// list/flush request; an error names a bad field.
Result<ListRequest> parse_list_request(const Json& request);

// {"ok":true, daemon{running:false,pid:0,uptime_s:0,instance}, tiers[{tier,delay_s,messages,oldest_s}],
//  incoming, failed, bad, held, in_flight (lock files present), counters{…all 0}, destinations[],
//  usage{…usage_json() from the files in usage/…}}
Result<Json> status_view(const spool::Spool& spool, int64_t now);

// The usage totals (docs/control-protocol.md): {instance, since, total, since_start (null without
// a running daemon), all_instances, instances[{instance,since,updated,total}], problems[]}, each
// count {spooled,sent,deferred,bounced,expired} of {messages,recipients,bytes}. A running daemon
// passes its live totals (which replace its file's) and what it counted since start.
Json usage_json(const spool::UsageDir& dir, const std::string& instance, const spool::UsageFile* live,
                const spool::Usage* since_start);

// {"ok":true, messages[…message_json…] sorted by arrival, incoming[…incoming_json…] sorted by
//  mtime, truncated}
Result<Json> list_view(const spool::Spool& spool, const ListRequest& req, int64_t now);

// A drop in incoming/ that pickup has not taken yet: {name, state:"incoming", size, mtime, age_s}.
Json incoming_json(std::string_view name, uint64_t size, int64_t mtime, int64_t now);

// {"ok":true, message{…message_json…, headers, headers_truncated}}; an error when the id is unknown.
Result<Json> show_view(const spool::Spool& spool, std::string_view id);

// One message as list/show print it: id, place, tier, held, sender, size, arrived, last_attempt,
// attempts, next_attempt (null unless queued), reason (failed/ only), recipients[{address,state,
// attempts,last_reply}].
Json message_json(const spool::EntryRef& ref, const spool::Entry& e);

// Calls fn for every entry the selection covers, streaming the directories in batches; entries
// that vanish or cannot be read meanwhile are skipped (the daemon moves them concurrently).
// fn returns false to stop early.
using EntryVisitor = std::function<bool(const spool::EntryRef&, const spool::Entry&)>;
Result<void> for_each_entry(const spool::Spool& spool, const Selection& select, const EntryVisitor& fn);

// True when some recipient of `e` (only pending ones if pending_only) is in `domain`.
bool has_domain(const spool::Entry& e, std::string_view domain, bool pending_only);

// "queue" | "hold" | "failed" → Place.
std::optional<spool::Place> parse_place(std::string_view name);

}  // namespace spoold::control
