// daemon/inflight_share.h — how many in-memory queue entries one next hop may hold, and which
// entries were left on disk for being over that share. Pure bookkeeping (no I/O, no loop), tested
// by table.
// Rule: at most kMaxInFlight entries are in memory (daemon/scheduler.cpp). A next hop that drains
// slowly (a tarpit, a rate-limited site) must not hold all of them, or pickups of other mail stop
// until its sessions give them back. So a hop may hold `share()` entries: the total divided by the
// hops holding entries plus one (room for a hop not seen yet), never less than `floor`. No
// exemption for a hop that drains fast: a tarpit drains fast too when its sessions fail and all it
// held is deferred at once, and would then take everything again. An entry is taken when any of its
// hops is under its share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace spoold::daemon {

class InflightShare {
 public:
  InflightShare(size_t total, size_t floor) : total_(total), floor_(floor) {}

  // The share of one next hop now.
  size_t share() const;
  size_t load(const std::string& hop) const;
  // Holds its share or more.
  bool over(const std::string& hop) const;
  // Whether an entry for these hops is taken now: some hop is under its share (no hops: always).
  bool wanted(const std::vector<std::string>& hops) const;
  // Whether a hop that was over its share has room for a refill pass again: it holds less than
  // half its share (a pass per finished entry would rescan the queue for one entry each time).
  bool refill(const std::string& hop) const;
  // Entries held by hops that are over their share (the room the others cannot count on).
  size_t pinned() const;
  size_t hops() const { return hops_.size(); }

  // An entry came into memory, or left it (its outcome is recorded, or it was given up).
  void add(const std::vector<std::string>& hops);
  void remove(const std::vector<std::string>& hops);

 private:
  size_t total_, floor_;
  std::unordered_map<std::string, size_t> hops_;  // hops holding entries, and how many
};

// Names (queue ids; a fresh drop handed back to incoming/ is named by its id) of entries left on
// disk because every hop of theirs was over its share, with those hops: a later pass skips them
// without reading them while that is still so. Bounded in count; a name older than `max_age`
// seconds is read again (it may have changed, or gone).
class ShareMemo {
 public:
  ShareMemo(size_t max_names, int64_t max_age_s) : max_(max_names), max_age_(max_age_s) {}

  // Returns false when full (the name is then not remembered).
  bool remember(const std::string& name, std::vector<std::string> hops, int64_t now_s);
  void forget(const std::string& name) { names_.erase(name); }
  // The hops of a remembered name, nullptr when unknown or too old.
  const std::vector<std::string>* hops(const std::string& name, int64_t now_s) const;
  void expire(int64_t now_s);
  bool full() const { return names_.size() >= max_; }
  size_t size() const { return names_.size(); }

 private:
  struct Known {
    std::vector<std::string> hops;
    int64_t since = 0;
  };
  size_t max_;
  int64_t max_age_;
  std::unordered_map<std::string, Known> names_;
};

}  // namespace spoold::daemon
