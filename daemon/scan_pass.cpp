// daemon/scan_pass.cpp — see scan_pass.h.
#include "daemon/scan_pass.h"

#include <fmt/format.h>

#include <algorithm>

#include "daemon/notice.h"
#include "daemon/router.h"

namespace spoold::daemon {

namespace {

constexpr size_t kScanChunk = 256;
// A pass stops once it has left this many more entries on disk than it took: what it left is
// remembered, so the next pass reads further on instead of the same entries again.
constexpr size_t kLeaveSlack = 32;

class Pass {
 public:
  Pass(spool::Spool& sp, const PassInput& in, PassOutput& out)
      : sp_(sp), in_(in), out_(out), share_(in.share) {}

  void run() {
    if (in_.probe && !probe()) return;
    if (in_.pickups) pickups();
    scan();
  }

 private:
  bool probe() {
    if (auto p = sp_.probe_write(); !p.ok()) {
      out_.spool_full = true;
      if (in_.pickups) out_.pickup_stopped = p.error().message;
      out_.claim_stopped = p.error().message;
      return false;  // nothing is claimed while nothing could be recorded
    }
    out_.writable = true;
    return true;
  }

  // A remembered entry whose hops are all still over their share: skipped unread.
  bool known_over(const std::string& name) {
    if (!in_.memo) return false;
    return in_.memo->with([&](const ShareMemo& memo) {
      const auto* hops = memo.hops(name, in_.mono_s);
      if (!hops || share_.wanted(*hops)) return false;
      out_.refused.insert(hops->begin(), hops->end());
      return true;
    });
  }

  bool remembered(const std::string& name) const {
    return in_.memo &&
           in_.memo->with([&](const ShareMemo& memo) { return memo.hops(name, in_.mono_s) != nullptr; });
  }

  bool in_memory(const std::string& id) const {
    return in_.in_flight && in_.in_flight->with([&](const auto& ids) { return ids.count(id) > 0; });
  }

  bool stop_early() const { return left_ > taken_ + kLeaveSlack; }

  // Takes the claimed entry into memory, or leaves it on disk when every hop of it is full.
  void admit(spool::Claimed c, const std::string& name) {
    auto hops = pending_hops(*in_.config, c.entry);
    if (remembered(name)) out_.taken_known.push_back(name);
    if (!share_.wanted(hops) && leave(c)) {
      ++left_;
      out_.refused.insert(hops.begin(), hops.end());
      out_.left.push_back({c.ref.id, std::move(hops)});
      return;
    }
    ++taken_;
    share_.add(hops);
    out_.claimed.push_back(std::move(c));
  }

  bool leave(spool::Claimed& c) {
    auto r = c.fresh ? sp_.return_fresh(c) : sp_.unclaim(c);
    if (r.ok()) return true;
    // Not handed back: it is still ours and claimed, so it is delivered now after all.
    out_.errors.push_back(fmt::format("{}: leaving it for later: {}", c.ref.id, r.error().message));
    return false;
  }

  void pickups() {
    size_t want = std::min(in_.cap, in_.pickup_chunk);
    auto names = sp_.list_incoming(want, [this](const std::string& n) { return known_over(n); });
    if (!names.ok()) {
      out_.errors.push_back("incoming: " + names.error().message);
      return;
    }
    if (names->size() >= want) out_.more = true;
    // Fresh drops are claimed for delivery at once, without writing an envelope: the common case
    // (delivered on the first attempt) then costs no fsync (spool.h).
    for (size_t i = 0; i < names->size(); ++i) {
      const auto& n = (*names)[i];
      if (out_.claimed.size() >= in_.cap || stop_early()) {
        out_.more = true;
        out_.share_stopped = stop_early();
        return;
      }
      auto r = sp_.claim_fresh(n);
      if (r.ok()) {
        ++out_.picked;
        bool queued = r->claimed.has_value();
        size_t before = out_.claimed.size();
        if (queued) admit(std::move(*r->claimed), n);
        // A drop handed back is picked up (and logged) when it is taken later, under a new id.
        if (!queued || out_.claimed.size() > before) out_.pickups.push_back(std::move(r->result));
      } else if (spool_wide_error(r.error().code)) {
        out_.pickup_stopped = r.error().message;
        out_.drops_waiting = names->size() - i;
        return;
      } else {
        out_.errors.push_back(fmt::format("pickup of {}: {}", n, r.error().message));
      }
    }
  }

  void scan() {
    // The cutoff is taken after the pickups, so what was just picked up is due in this pass.
    auto scan = sp_.scan(spool::Place::queue, in_.tier, in_.now);
    if (!scan.ok()) {
      out_.errors.push_back(fmt::format("scan of tier {}: {}", in_.tier, scan.error().message));
      return;
    }
    left_ = taken_ = 0;
    while (out_.claimed.size() < in_.cap && !scan->done()) {
      auto batch = scan->next(kScanChunk);
      if (!batch.ok()) {
        out_.errors.push_back(fmt::format("scan of tier {}: {}", in_.tier, batch.error().message));
        return;
      }
      for (const auto& ref : *batch) {
        if (in_memory(ref.id) || known_over(ref.id)) continue;
        if (out_.claimed.size() >= in_.cap || stop_early()) {
          out_.more = true;
          out_.share_stopped = out_.share_stopped || stop_early();
          return;
        }
        auto c = sp_.claim(ref);
        if (!c.ok() && spool_wide_error(c.error().code)) {
          out_.claim_stopped = c.error().message;
          return;
        }
        if (!c.ok()) {
          out_.errors.push_back(fmt::format("{}: {}", ref.id, c.error().message));
        } else if (*c) {
          ++out_.claims;
          admit(std::move(**c), ref.id);
        }
      }
    }
  }

  spool::Spool& sp_;
  const PassInput& in_;
  PassOutput& out_;
  InflightShare share_;
  size_t taken_ = 0, left_ = 0;  // in the current stage (pickups, then the scan)
};

}  // namespace

std::vector<std::string> pending_hops(const config::Config& config, const spool::Entry& entry) {
  std::vector<std::string> addresses;
  std::vector<size_t> pending;
  for (size_t i = 0; i < entry.recipients.size(); ++i) {
    addresses.push_back(entry.recipients[i].address);
    if (!entry.recipients[i].final()) pending.push_back(i);
  }
  std::vector<std::string> hops;
  for (const auto& g : group_by_hop(config, addresses, pending)) hops.push_back(g.key.str());
  return hops;
}

void run_pass(spool::Spool& spool, const PassInput& in, PassOutput& out) {
  Pass(spool, in, out).run();
}

}  // namespace spoold::daemon
