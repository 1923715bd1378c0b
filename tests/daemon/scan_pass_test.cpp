// tests/daemon/scan_pass_test.cpp — one scheduler pass (scan_pass.h) over a real spool directory,
// without a loop: pickups of fresh drops, claims of due entries, what stays on disk.
#include <catch2/catch.hpp>

#include <stdio.h>

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "daemon/scan_pass.h"
#include "tests/support/fixtures.h"

using namespace spoold;
using namespace spoold::daemon;
using namespace std::chrono_literals;

namespace {

struct SpoolWorld {
  test::TempDir tmp;
  std::string dir = tmp / "spool";
  std::shared_ptr<const config::Config> cfg;
  spool::Spool sp = open();

  spool::Spool open() {
    auto c = std::make_shared<config::Config>();
    c->spool_dir = dir;
    cfg = c;
    spool::Options o;
    o.dir = dir;
    o.tier_delays = {0s, 1800s, 14400s};
    o.lock_stale_after = 600s;
    o.instance = "scan-test";
    o.hostname = "host.test";
    auto r = spool::Spool::open(std::move(o));
    if (!r.ok()) FAIL(r.error().message);
    return std::move(*r);
  }

  void drop(const std::string& name, const std::string& rcpt) {
    std::string t = dir + "/tmp/.drop-" + name;
    test::write_file(t, "MAIL FROM:<a@x.test>\nRCPT TO:<" + rcpt + ">\n\nSubject: s\n\nbody\n");
    REQUIRE(::rename(t.c_str(), (dir + "/incoming/" + name).c_str()) == 0);
  }

  std::string enqueue(const std::string& rcpt) {
    auto id = sp.enqueue(spool::NewMessage{"a@x.test", {rcpt}, "Subject: s\n\nbody\n"});
    REQUIRE(id.ok());
    return *id;
  }

  PassInput input(int tier, size_t cap) const {
    PassInput in;
    in.tier = tier;
    in.cap = cap;
    in.now = unix_now();
    in.mono_s = 1000;
    in.config = cfg;
    in.in_flight = std::make_shared<InflightIds>();
    in.share = InflightShare(4096, 64);
    return in;
  }

  PassOutput pass(const PassInput& in) {
    PassOutput out;
    run_pass(sp, in, out);
    return out;
  }
};

std::vector<std::string> ids_of(const PassOutput& out) {
  std::vector<std::string> v;
  for (const auto& c : out.claimed) v.push_back(c.entry.id);
  return v;
}

}  // namespace

TEST_CASE("scan pass: fresh drops are claimed up to the cap, and it says more wait", "[scan]") {
  SpoolWorld w;
  for (int i = 0; i < 3; ++i) w.drop("d" + std::to_string(i), "u@a.test");
  auto in = w.input(0, 2);
  in.pickups = true;
  auto out = w.pass(in);
  CHECK(out.claimed.size() == 2);
  CHECK(out.pickups.size() == 2);
  CHECK(out.picked == 2);
  CHECK(out.more);
  CHECK(out.errors.empty());
  for (const auto& c : out.claimed) CHECK(c.fresh);
  // The one left is picked up by the next pass; nothing is claimed twice.
  out.claimed.clear();
  auto again = w.pass(in);
  CHECK(again.claimed.size() == 1);
  CHECK(!again.more);
}

TEST_CASE("scan pass: a tier pass claims what is due and not in memory, never the future", "[scan]") {
  SpoolWorld w;
  std::string a = w.enqueue("u@a.test"), b = w.enqueue("u@b.test"), later = w.enqueue("u@c.test");
  {
    auto ref = w.sp.find(later);
    REQUIRE((ref.ok() && *ref));
    auto c = w.sp.claim(**ref);
    REQUIRE((c.ok() && *c));
    REQUIRE(w.sp.reschedule(**c, 0, unix_now() + 3600).ok());
  }
  auto in = w.input(0, 10);
  auto ids = std::make_shared<InflightIds>();
  ids->with([&](auto& s) { s.insert(b); });  // already in memory: not claimed again
  in.in_flight = ids;
  auto out = w.pass(in);
  CHECK(ids_of(out) == std::vector<std::string>{a});
  CHECK(out.claims == 1);
  CHECK(out.pickups.empty());  // pickups were not asked for
  // What this pass holds is locked: a second pass claims nothing of it.
  auto second = w.pass(w.input(0, 10));
  CHECK(ids_of(second) == std::vector<std::string>{b});
}

TEST_CASE("scan pass: an entry whose next hop is over its share stays on disk and is remembered", "[scan]") {
  SpoolWorld w;
  std::string slow = w.enqueue("u@slow.test"), fast = w.enqueue("u@fast.test");
  auto in = w.input(0, 10);
  in.share = InflightShare(2, 1);  // a tiny total: the share of one hop is 1
  std::vector<std::string> slow_hops = pending_hops(*w.cfg, [&] {
    auto ref = w.sp.find(slow);
    REQUIRE((ref.ok() && *ref));
    auto e = w.sp.read(**ref);
    REQUIRE(e.ok());
    return *e;
  }());
  REQUIRE(slow_hops.size() == 1);
  in.share.add(slow_hops);  // slow.test already holds its share
  auto memo = std::make_shared<SharedMemo>(ShareMemo(100, 60));
  in.memo = memo;
  auto out = w.pass(in);
  CHECK(ids_of(out) == std::vector<std::string>{fast});
  REQUIRE(out.left.size() == 1);
  CHECK(out.left[0].name == slow);
  CHECK(out.left[0].hops == slow_hops);
  CHECK(out.refused.count(slow_hops[0]) == 1);
  // Left untouched: unlocked, so a later pass (once there is room) can take it.
  auto ref = w.sp.find(slow);
  REQUIRE((ref.ok() && *ref));
  auto c = w.sp.claim(**ref);
  REQUIRE(c.ok());
  CHECK(c->has_value());
}

TEST_CASE("scan pass: on a writable spool the write probe passes and the pass goes on", "[scan]") {
  SpoolWorld w;
  w.enqueue("u@a.test");
  w.drop("d", "u@a.test");
  auto in = w.input(0, 10);
  in.pickups = true;
  in.probe = true;
  auto ok = w.pass(in);  // (a full spool is reliability_tests' business: it needs a full disk)
  CHECK(ok.writable);
  CHECK(!ok.spool_full);
  CHECK(ok.claimed.size() == 2);
}
