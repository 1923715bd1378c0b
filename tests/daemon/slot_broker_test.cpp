// tests/daemon/slot_broker_test.cpp — the engine's global session slots (slot_broker.h) with
// scripted destinations, and the pooled connection's state machine (connection.h), without a loop.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "daemon/connection.h"
#include "daemon/slot_broker.h"

using namespace spoold::daemon;
using Conn = DeliveryEngine::Conn;
using St = Conn::St;

namespace {

// A destination as the broker sees it: blocked while it has parts and no slot; its turn takes a
// slot if one is free, else it waits again.
struct FakeDest : SlotBroker::Waiter {
  FakeDest(SlotBroker& b, std::string n, std::vector<std::string> s)
      : broker(b), name(std::move(n)), srv(std::move(s)) {}
  bool blocked() const override { return parts > 0 && is_blocked; }
  bool waiting() const override { return parts > 0; }
  void pump() override {
    turns.push_back(name);
    if (broker.full()) {
      is_blocked = true;
      broker.wait(*this);
      return;
    }
    broker.take();
    --parts;
    is_blocked = parts > 0;
  }
  bool wants(const std::string& server) const override { return blocked() && want.count(server) > 0; }
  std::vector<std::string> servers() const override { return srv; }

  SlotBroker& broker;
  std::string name;
  std::vector<std::string> srv;
  std::set<std::string> want;
  int parts = 1;
  bool is_blocked = true;
  static inline std::vector<std::string> turns;
};

}  // namespace

TEST_CASE("slot broker: waiting destinations get their turn in the order they started waiting",
          "[pieces][slots]") {
  FakeDest::turns.clear();
  SlotBroker b(1);
  b.take();  // the one slot is in use
  FakeDest a(b, "a", {}), c(b, "c", {}), d(b, "d", {});
  b.wait(a);
  b.wait(c);
  b.wait(a);  // a second wait while waiting changes nothing
  b.wait(d);
  CHECK(b.waiting_count() == 3);
  CHECK(a.in_slot_queue());
  b.pump_waiting();  // full and nothing idle: nobody gets a turn
  CHECK(FakeDest::turns.empty());
  b.give_back();
  b.pump_waiting();  // a takes the slot; then it is full again and the others wait on
  CHECK(FakeDest::turns == std::vector<std::string>{"a"});
  CHECK(!a.in_slot_queue());
  CHECK(b.taken() == 1);
  CHECK(b.waiting_count() == 2);
  FakeDest::turns.clear();
  b.set_limit(2);  // a reload raised max_sessions
  b.give_back();
  b.pump_waiting();  // two free slots: c, then d, in the order they started waiting
  CHECK(FakeDest::turns == std::vector<std::string>{"c", "d"});
  CHECK(b.waiting_count() == 0);
  // A destination that finds the slots full on its turn waits again, at the back.
  FakeDest::turns.clear();
  FakeDest e(b, "e", {}), g(b, "g", {});
  e.parts = g.parts = 2;
  b.wait(e);
  b.wait(g);
  b.idle_up();  // full, but an idle connection could make room: a turn each, both wait again
  b.pump_waiting();
  CHECK(FakeDest::turns == std::vector<std::string>{"e", "g"});
  CHECK(b.waiting_count() == 2);
  CHECK(e.in_slot_queue());
}

TEST_CASE("slot broker: an idle connection is a turn even at the limit; forget drops a destination",
          "[pieces][slots]") {
  FakeDest::turns.clear();
  SlotBroker b(1);
  b.take();
  FakeDest a(b, "a", {"s1"}), c(b, "c", {"s1"});
  b.wait(a);
  b.wait(c);
  b.forget(a);
  CHECK(b.waiting_count() == 1);
  CHECK(b.taker_for("s1", nullptr) == nullptr);  // c does not want s1 (nothing for it)
  b.idle_up();
  b.pump_waiting();  // full, but an idle connection could make room: c gets its turn
  CHECK(FakeDest::turns == std::vector<std::string>{"c"});
  b.idle_down();
  b.idle_down();  // never below zero
  CHECK(b.idle() == 0);
}

TEST_CASE("slot broker: an idle connection goes round robin to the destinations that want its server",
          "[pieces][slots]") {
  SlotBroker b(1);
  b.take();
  FakeDest a(b, "a", {"mx|25"}), c(b, "c", {"mx|25", "other|25"}), d(b, "d", {"other|25"});
  for (auto* x : {&a, &c, &d}) {
    x->want = {x->srv.begin(), x->srv.end()};
    b.wait(*x);
  }
  CHECK(b.taker_for("mx|25", nullptr) == &a);
  CHECK(b.taker_for("mx|25", nullptr) == &c);
  CHECK(b.taker_for("mx|25", nullptr) == &a);
  CHECK(b.taker_for("mx|25", &a) == &c);  // never the one the connection comes from
  CHECK(b.taker_for("nobody|25", nullptr) == nullptr);
  CHECK(b.someone_blocked(nullptr));
  // A destination that stopped waiting (its wait is over) is no taker, even though the index
  // still holds its entry from that wait.
  a.parts = 0;
  CHECK(b.someone_blocked(nullptr));  // a, no longer blocked, is dropped from the head
  CHECK(!a.in_slot_queue());
  CHECK(b.taker_for("mx|25", nullptr) == &c);
  CHECK(b.taker_for("mx|25", nullptr) == &c);
  c.parts = 0;
  d.parts = 0;
  CHECK(!b.someone_blocked(nullptr));
}

TEST_CASE("connection: the state machine's steps", "[pieces][connection]") {
  struct Row {
    St from, to;
    bool ok;
  };
  const Row rows[] = {
      {St::connecting, St::idle, true},    {St::connecting, St::busy, false},
      {St::connecting, St::closing, true}, {St::idle, St::busy, true},
      {St::idle, St::closing, true},       {St::idle, St::connecting, false},
      {St::busy, St::idle, true},          {St::busy, St::closing, true},
      {St::busy, St::connecting, false},   {St::closing, St::idle, false},
      {St::closing, St::busy, false},      {St::closing, St::connecting, false},
      {St::closing, St::closing, true},
  };
  for (const auto& r : rows) {
    INFO(Conn::to_string(r.from) << " -> " << Conn::to_string(r.to));
    CHECK(Conn::allowed(r.from, r.to) == r.ok);
  }
}

TEST_CASE("connection: holds a slot until it starts closing; the idle count follows it",
          "[pieces][connection]") {
  SlotBroker b(10);
  {
    Conn c(b, 1);
    CHECK(b.taken() == 1);
    CHECK(c.state() == St::connecting);
    CHECK(!c.enter(St::busy));  // refused: not ready yet
    CHECK(c.state() == St::connecting);
    CHECK(c.enter(St::idle));
    CHECK(b.idle() == 1);
    CHECK(c.enter(St::busy));
    CHECK(b.idle() == 0);
    CHECK(c.enter(St::idle));
    CHECK(c.enter(St::idle));  // no step
    CHECK(b.idle() == 1);
    CHECK(c.enter(St::closing));
    CHECK(b.idle() == 0);
    CHECK(b.taken() == 0);
    CHECK(!c.holds_slot());
    CHECK(!c.enter(St::idle));
    CHECK(b.idle() == 0);
  }
  CHECK(b.taken() == 0);  // dying after closing gives nothing back twice
  {
    Conn idle(b, 2);
    Conn busy(b, 3);
    idle.enter(St::idle);
    busy.enter(St::idle);
    busy.enter(St::busy);
    CHECK(b.taken() == 2);
    CHECK(b.idle() == 1);
  }
  // Dying without closing (a server closed it; the engine stopped) gives back slot and idle count.
  CHECK(b.taken() == 0);
  CHECK(b.idle() == 0);
}
