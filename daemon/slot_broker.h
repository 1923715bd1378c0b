// daemon/slot_broker.h — the engine's global session slots (delivery.max_sessions) and the
// destinations that wait for one.
// Rules: every open connection that is not closing holds one slot; a destination that cannot open
// a connection for want of a slot waits here (at most once), and gets its turn in the order it
// started waiting (pump_waiting()) when a slot is freed or an idle connection could free one. An
// idle connection that a waiting destination can use for the same server is handed to it
// (taker_for()) instead of closing. With hundreds of destinations (fan-out) nothing here walks
// every destination: only the waiting ones, indexed by the servers they deliver to.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

namespace spoold::daemon {

class SlotBroker {
 public:
  // What the broker asks of a destination that waits for a slot.
  class Waiter {
   public:
    // Still waits: it has queued parts that it could not start for want of a slot.
    virtual bool blocked() const = 0;
    // Has queued parts at all: worth a turn.
    virtual bool waiting() const = 0;
    // Its turn: opens connections (or waits again).
    virtual void pump() = 0;
    // Has a part for this server ("ip|port[|mx]") that an idle connection to it could carry now.
    virtual bool wants(const std::string& server) const = 0;
    // The servers it can deliver to, for the index of waiting destinations.
    virtual std::vector<std::string> servers() const = 0;

    bool in_slot_queue() const { return queued_; }

   protected:
    Waiter() = default;
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    ~Waiter() = default;

   private:
    friend class SlotBroker;
    bool queued_ = false;
    std::uint64_t wait_ = 0;  // which wait this is: index entries of earlier waits are stale
  };

  explicit SlotBroker(size_t limit) : limit_(limit) {}

  // A reload may change delivery.max_sessions; connections open beyond it stay until they close.
  void set_limit(size_t limit) { limit_ = limit; }
  size_t limit() const { return limit_; }

  size_t taken() const { return slots_; }
  bool full() const { return slots_ >= limit_; }
  void take() { ++slots_; }
  void give_back() {
    if (slots_ > 0) --slots_;
  }

  // Pooled connections with nothing to do: what an idle reclaim can free.
  size_t idle() const { return idle_; }
  void idle_up() { ++idle_; }
  void idle_down() {
    if (idle_ > 0) --idle_;
  }

  // w waits for a slot (a second call while it waits changes nothing).
  void wait(Waiter& w);
  // w goes away: it is dropped from the queue and the index.
  void forget(const Waiter& w);
  // A waiting destination, other than `except`, that wants an idle connection to `server`; the one
  // found goes to the back of that server's line (round robin among the destinations behind one
  // server).
  Waiter* taker_for(const std::string& server, const Waiter* except);
  // Some destination other than `except` at the head of the queue still waits (only the first two
  // are looked at: the head may be `except` itself).
  bool someone_blocked(const Waiter* except);
  // Gives each waiting destination a turn, in the order they started waiting, while a slot is free
  // or an idle connection could make one; each turn takes a slot or queues the destination again.
  void pump_waiting();

  size_t waiting_count() const { return queue_.size(); }

 private:
  struct Entry {
    Waiter* w;
    std::uint64_t wait;
  };
  size_t limit_;
  size_t slots_ = 0;
  size_t idle_ = 0;
  std::deque<Waiter*> queue_;
  std::unordered_map<std::string, std::deque<Entry>> by_server_;
};

}  // namespace spoold::daemon
