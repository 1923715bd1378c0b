// daemon/scan_pass.h — one pass of the scheduler over the spool, run on the thread pool: claim
// fresh drops from incoming/ (tier 0 only), then due entries of one tier, and decide for each
// claimed entry whether it comes into memory now.
// Rules: at most `cap` entries come into memory; an entry every next hop of which holds its
// in-flight share already (inflight_share.h) is left on disk untouched — a queued entry keeps its
// envelope (only the lock is released), a fresh drop goes back to incoming/ without a write — and
// is remembered (ShareMemo), so later passes skip it without reading it while that holds. A pass
// that leaves more entries than it takes stops early (the next pass goes on where this one
// stopped, skipping what it remembered), so a destination over its share costs a few reads per
// pass, not a read of everything it has queued. Pure with respect to the loop: it reads only its
// input and fills its output; the spool is the only thing it touches.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "config/config.h"
#include "daemon/guarded.h"
#include "daemon/inflight_share.h"
#include "spool/spool.h"

namespace spoold::daemon {

// The ids of the entries in memory, and the share memo: the loop changes them while passes read.
using InflightIds = Guarded<std::unordered_set<std::string>>;
using SharedMemo = Guarded<ShareMemo>;

struct PassInput {
  int tier = 0;
  size_t cap = 0;        // entries that may come into memory
  bool pickups = false;  // claim fresh drops from incoming/ first
  bool probe = false;    // check that the spool can be written before claiming anything
  size_t pickup_chunk = 256;
  int64_t now = 0;     // unix seconds: the scan's cutoff
  int64_t mono_s = 0;  // steady seconds, for the memo's ages
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const InflightIds> in_flight;  // ids already in memory
  InflightShare share{0, 0};                     // a copy: the pass adds what it takes
  std::shared_ptr<const SharedMemo> memo;        // null: nothing remembered
};

struct LeftEntry {
  std::string name;               // the id (queue entry, or a fresh drop handed back)
  std::vector<std::string> hops;  // its pending next hops, each over its share
};

struct PassOutput {
  std::vector<spool::Claimed> claimed;
  std::vector<spool::PickupResult> pickups;  // of the drops claimed (not of those handed back)
  std::vector<std::string> errors;
  bool more = false;  // stopped at `cap` or the pickup chunk: more is waiting on disk
  // A spool-wide error (no space, read-only, ...) stops the pass: every further claim would fail
  // the same way, and one line per entry per scan would flood the log (notice.h).
  std::string pickup_stopped, claim_stopped;
  size_t drops_waiting = 0;
  bool spool_full = false, writable = false;  // the write probe's verdict (when it ran)
  size_t picked = 0, claims = 0;              // successful claims in this pass
  std::vector<LeftEntry> left;                // left on disk for the share (to remember)
  std::vector<std::string> taken_known;       // remembered names that were taken (to forget)
  std::set<std::string> refused;              // hops over their share that refused entries
  bool share_stopped = false;                 // stopped early: more over-share entries may follow
};

void run_pass(spool::Spool& spool, const PassInput& in, PassOutput& out);

// The next hops (HopKey::str()) of an entry's pending recipients, in first-seen order.
std::vector<std::string> pending_hops(const config::Config& config, const spool::Entry& entry);

}  // namespace spoold::daemon
