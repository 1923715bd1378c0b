// tests/daemon/inflight_share_test.cpp — the in-flight share of a next hop (daemon/inflight_share.h):
// how many in-memory entries one hop may hold, which entries are taken, when a refill pass is worth
// it, and the memo of entries left on disk.
#include "daemon/inflight_share.h"

#include <catch2/catch.hpp>

using namespace spoold::daemon;

namespace {

void hold(InflightShare& s, const std::string& hop, size_t n) {
  for (size_t i = 0; i < n; ++i) s.add({hop});
}

}  // namespace

TEST_CASE("the share: the total over the hops holding entries plus one, never below the floor", "[share]") {
  struct Row {
    size_t hops;  // holding one entry each
    size_t share;
  };
  const Row rows[] = {{0, 4096}, {1, 2048}, {2, 1365}, {5, 682}, {6, 585}, {63, 64}, {64, 64}, {500, 64}};
  for (const Row& r : rows) {
    INFO(r.hops << " hops");
    InflightShare s(4096, 64);
    for (size_t i = 0; i < r.hops; ++i) s.add({"hop" + std::to_string(i)});
    CHECK(s.share() == r.share);
    CHECK(s.hops() == r.hops);
  }
}

TEST_CASE("an entry is taken while any of its hops is under its share", "[share]") {
  InflightShare s(4096, 64);
  hold(s, "pit", 2047);
  hold(s, "ok", 10);  // share now 4096 / 3 = 1365
  struct Row {
    std::vector<std::string> hops;
    bool wanted;
  };
  const std::vector<Row> rows = {
      {{}, true},               // nothing pending: always (it only completes)
      {{"pit"}, false},         // 2047 >= 1365
      {{"ok"}, true},           //
      {{"pit", "ok"}, true},    // one hop wants it
      {{"new"}, true},          // a hop not seen yet
      {{"pit", "pit2"}, true},  // pit2 holds nothing
  };
  for (const Row& r : rows) {
    INFO(r.hops.size() << " hops, first " << (r.hops.empty() ? "-" : r.hops[0]));
    CHECK(s.wanted(r.hops) == r.wanted);
  }
  CHECK(s.over("pit"));
  CHECK_FALSE(s.over("ok"));
  CHECK(s.pinned() == 2047);
}

TEST_CASE("a hop's share shrinks as hops appear and grows as they leave", "[share]") {
  InflightShare s(4096, 64);
  hold(s, "pit", 1000);
  CHECK_FALSE(s.over("pit"));  // share 2048
  for (int i = 0; i < 3; ++i) s.add({"other" + std::to_string(i)});
  CHECK(s.share() == 819);
  CHECK(s.over("pit"));  // 1000 >= 819: what it holds stays, it takes no more
  for (int i = 0; i < 3; ++i) s.remove({"other" + std::to_string(i)});
  CHECK(s.hops() == 1);
  CHECK_FALSE(s.over("pit"));
  CHECK(s.load("pit") == 1000);
  for (int i = 0; i < 1000; ++i) s.remove({"pit"});
  CHECK(s.hops() == 0);
  CHECK(s.load("pit") == 0);
  s.remove({"pit"});  // an extra removal is harmless
  CHECK(s.load("pit") == 0);
}

TEST_CASE("a refill pass is worth it once a hop holds less than half its share", "[share]") {
  struct Row {
    size_t load;
    bool refill;
  };
  // One hop holding `load`: share 2048, half 1024.
  const Row rows[] = {{2048, false}, {1025, false}, {1024, false}, {1023, true}, {1, true}};
  for (const Row& r : rows) {
    INFO("load " << r.load);
    InflightShare s(4096, 64);
    hold(s, "h", r.load);
    CHECK(s.refill("h") == r.refill);
  }
  InflightShare s(4096, 64);
  CHECK(s.refill("unknown"));
}

TEST_CASE("the memo of entries left on disk: bounded, forgotten when old", "[share]") {
  ShareMemo m(2, 60);
  CHECK(m.remember("a", {"pit"}, 100));
  CHECK(m.remember("b", {"pit", "x"}, 100));
  CHECK_FALSE(m.remember("c", {"pit"}, 100));  // full
  CHECK(m.remember("a", {"pit2"}, 110));       // known names are updated when full
  REQUIRE(m.hops("a", 110) != nullptr);
  CHECK(*m.hops("a", 110) == std::vector<std::string>{"pit2"});
  CHECK(m.hops("c", 110) == nullptr);
  CHECK(m.hops("b", 159) != nullptr);
  CHECK(m.hops("b", 160) == nullptr);  // 60 s old: read again
  m.expire(165);
  CHECK(m.size() == 1);  // a (since 110) stays
  m.forget("a");
  CHECK(m.size() == 0);
  CHECK_FALSE(m.full());
}
