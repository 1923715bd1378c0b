// tests/control/spool_commands_test.cpp — status/list/show and flush/hold/release/delete/requeue
// computed directly on a real spool in a temporary directory (what spoolctl does offline and the
// daemon does on its thread pool).
#include <catch2/catch.hpp>

#include <chrono>
#include <ctime>

#include "control/ops.h"
#include "control/protocol.h"
#include "control/views.h"
#include "tests/support/fixtures.h"

using spoold::control::Json;
namespace control = spoold::control;
namespace spool = spoold::spool;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  spoold::test::TempDir tmp;
  spool::Spool sp = open();
  int64_t now = std::time(nullptr);

  spool::Spool open() {
    spool::Options o;
    o.dir = tmp / "spool";
    o.tier_delays = {0s, 1800s, 14400s};
    o.hostname = "test.example";
    auto s = spool::Spool::open(o);
    REQUIRE(s.ok());
    return std::move(*s);
  }

  std::string add(std::vector<std::string> rcpts, std::string sender = "alice@example.com") {
    std::string msg = "From: " + sender + "\nSubject: hello\nX-Test: 1\n\nbody line\n";
    auto id = sp.enqueue({sender, std::move(rcpts), msg});
    REQUIRE(id.ok());
    return *id;
  }

  spool::Claimed claim(const std::string& id) {
    auto ref = sp.find(id);
    REQUIRE(ref.ok());
    REQUIRE(ref->has_value());
    auto c = sp.claim(**ref);
    REQUIRE(c.ok());
    REQUIRE(c->has_value());
    return std::move(**c);
  }

  // Moves an entry to `tier`, due `in` seconds from now, after one failed attempt.
  void defer(const std::string& id, int tier, int64_t in, const std::string& reply = "451 4.7.1 try later") {
    auto c = claim(id);
    for (auto& r : c.entry.recipients) {
      r.attempts = 1;
      r.last_reply = reply;
    }
    c.entry.attempts = 1;
    c.entry.last_attempt = now;
    REQUIRE(sp.reschedule(c, tier, now + in).ok());
  }

  void fail(const std::string& id) {
    auto c = claim(id);
    for (auto& r : c.entry.recipients) r.state = spool::RcptState::expired;
    REQUIRE(sp.fail(c, "expired after the last tier", now).ok());
  }

  Json ask(Json req) { return control::answer_from_spool(sp, req, now); }
};

std::vector<std::string> ids_in(const Json& list) {
  std::vector<std::string> out;
  for (const auto& m : list["messages"].as_array()) out.push_back(m["id"].as_string());
  return out;
}

}  // namespace

TEST_CASE_METHOD(Fixture, "status counts every place from the spool") {
  auto a = add({"bob@example.org"});
  auto b = add({"carol@example.net"});
  auto c = add({"dave@example.net"});
  add({"erin@example.org"});
  defer(a, 1, 600);
  defer(b, 2, 7200);
  fail(c);
  spoold::test::write_file(tmp / "spool/incoming/drop1", "MAIL FROM:<>\n");
  auto s = ask(Json().set("cmd", "status"));
  REQUIRE(s["ok"].as_bool());
  CHECK_FALSE(s["daemon"]["running"].as_bool(true));
  const auto& tiers = s["tiers"].as_array();
  REQUIRE(tiers.size() == 3);
  CHECK(tiers[0]["messages"].as_int() == 1);
  CHECK(tiers[1]["messages"].as_int() == 1);
  CHECK(tiers[1]["delay_s"].as_int() == 1800);
  CHECK(tiers[2]["messages"].as_int() == 1);
  CHECK(tiers[2]["tier"].as_int() == 2);
  CHECK(tiers[0]["oldest_s"].as_int() >= 0);
  CHECK(s["failed"].as_int() == 1);
  CHECK(s["held"].as_int() == 0);
  CHECK(s["incoming"].as_int() == 1);
  CHECK(s["bad"].as_int() == 0);
  CHECK(s["in_flight"].as_int() == 0);
  CHECK(s["counters"]["sent"].as_int() == 0);
  CHECK(s["destinations"].is_array());
}

TEST_CASE_METHOD(Fixture, "oldest_s is the age of the oldest arrival in a tier") {
  add({"bob@example.org"});
  auto s = control::status_view(sp, now + 3600);
  REQUIRE(s.ok());
  auto oldest = (*s)["tiers"].as_array()[0]["oldest_s"].as_int();
  CHECK(oldest >= 3599);
  CHECK(oldest <= 3700);
}

TEST_CASE_METHOD(Fixture, "list filters by tier, domain and place and reports replies") {
  auto a = add({"bob@example.org", "x@other.test"});
  auto b = add({"carol@Example.NET"});
  auto c = add({"dave@example.org"});
  defer(a, 1, 600);
  fail(c);

  auto all = ask(Json().set("cmd", "list"));
  REQUIRE(all["ok"].as_bool());
  CHECK(ids_in(all) == std::vector<std::string>{a, b});  // sorted by arrival; failed/ not listed
  CHECK_FALSE(all["truncated"].as_bool(true));

  auto t1 = ask(Json().set("cmd", "list").set("tier", 1));
  REQUIRE(ids_in(t1) == std::vector<std::string>{a});
  const Json& m = t1["messages"].as_array()[0];
  CHECK(m["tier"].as_int() == 1);
  CHECK(m["place"].as_string() == "queue");
  CHECK(m["sender"].as_string() == "alice@example.com");
  CHECK(m["next_attempt"].as_int() == now + 600);
  CHECK(m["size"].as_int() > 0);
  REQUIRE(m["recipients"].as_array().size() == 2);
  CHECK(m["recipients"].as_array()[0]["state"].as_string() == "pending");
  CHECK(m["recipients"].as_array()[0]["last_reply"].as_string() == "451 4.7.1 try later");

  CHECK(ids_in(ask(Json().set("cmd", "list").set("domain", "example.net"))) == std::vector<std::string>{b});
  CHECK(ids_in(ask(Json().set("cmd", "list").set("domain", "OTHER.test"))) == std::vector<std::string>{a});
  CHECK(ids_in(ask(Json().set("cmd", "list").set("place", "failed"))) == std::vector<std::string>{c});
  CHECK(ask(Json().set("cmd", "list").set("tier", 7))["ok"].as_bool(true) == false);
  CHECK(ask(Json().set("cmd", "list").set("tier", "x"))["ok"].as_bool(true) == false);
}

TEST_CASE_METHOD(Fixture, "list is bounded and says it was truncated") {
  for (int i = 0; i < 5; ++i) add({"bob@example.org"});
  auto r = control::list_view(sp, control::ListRequest{{}, 3}, 0);
  REQUIRE(r.ok());
  CHECK((*r)["messages"].as_array().size() == 3);
  CHECK((*r)["truncated"].as_bool());
}

TEST_CASE_METHOD(Fixture, "list shows drops in incoming/ by name, size and age; flush leaves them alone") {
  auto a = add({"bob@example.org"});
  std::string dir = tmp / "spool/incoming";
  spoold::test::write_file(dir + "/sendmail.1.a",
                           "MAIL FROM:<a@example.com>\nRCPT TO:<b@example.org>\n\nx\n");
  spoold::test::write_file(dir + "/.hidden", "not a drop");
  spoold::test::write_file(dir + "/x.lock", "a claim");
  auto r = control::list_view(sp, control::ListRequest{}, now + 7);
  REQUIRE(r.ok());
  CHECK(ids_in(*r) == std::vector<std::string>{a});
  const auto& in = (*r)["incoming"].as_array();
  REQUIRE(in.size() == 1);
  CHECK(in[0]["name"].as_string() == "sendmail.1.a");
  CHECK(in[0]["state"].as_string() == "incoming");
  CHECK(in[0]["size"].as_int() == 53);
  CHECK(in[0]["age_s"].as_int() >= 6);
  CHECK(in[0]["age_s"].as_int() <= 9);
  auto only = ask(Json().set("cmd", "list").set("place", "incoming"));
  CHECK(only["messages"].as_array().empty());
  CHECK(only["incoming"].as_array().size() == 1);
  CHECK(ask(Json().set("cmd", "list").set("place", "queue"))["incoming"].as_array().empty());
  CHECK_FALSE(
      ask(Json().set("cmd", "list").set("place", "incoming").set("domain", "x.org"))["ok"].as_bool(true));
  CHECK_FALSE(ask(Json().set("cmd", "flush").set("place", "incoming"))["ok"].as_bool(true));
}

TEST_CASE_METHOD(Fixture, "show gives the envelope and the header section only") {
  auto a = add({"bob@example.org"});
  auto r = ask(Json().set("cmd", "show").set("id", a));
  REQUIRE(r["ok"].as_bool());
  CHECK(r["message"]["id"].as_string() == a);
  CHECK(r["message"]["headers"].as_string() == "From: alice@example.com\nSubject: hello\nX-Test: 1\n");
  CHECK_FALSE(r["message"]["headers_truncated"].as_bool(true));
  auto missing = ask(Json().set("cmd", "show").set("id", "0000000000000000000000000000AA"));
  CHECK_FALSE(missing["ok"].as_bool(true));
  CHECK(missing["error"].as_string().find("no such message") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "flush makes deferred entries due now, by tier, domain or id") {
  auto a = add({"bob@example.org"});
  auto b = add({"carol@example.net"});
  auto c = add({"dave@example.org"});
  defer(a, 1, 600);
  defer(b, 1, 600);
  defer(c, 2, 7200);

  auto r = ask(Json().set("cmd", "flush").set("domain", "example.net"));
  REQUIRE(r["ok"].as_bool());
  CHECK(r["flushed"].as_int() == 1);
  auto ref = sp.find(b);
  REQUIRE((ref.ok() && ref->has_value()));
  CHECK((*ref)->when == now);
  CHECK((*ref)->tier == 1);  // flushing keeps the tier

  r = ask(Json().set("cmd", "flush").set("tier", 2));
  CHECK(r["flushed"].as_int() == 1);
  CHECK((*sp.find(c))->when == now);

  r = ask(Json().set("cmd", "flush").set("ids", Json().push(a).push("0000000000000000000000000000AA")));
  CHECK(r["flushed"].as_int() == 1);
  CHECK(r["errors"]["0000000000000000000000000000AA"].as_string() == "no such message");
  CHECK((*sp.find(a))->when == now);

  r = ask(Json().set("cmd", "flush"));
  CHECK(r["flushed"].as_int() == 0);  // everything is due already
}

TEST_CASE_METHOD(Fixture, "an entry whose lock is held is reported in flight, not changed") {
  auto a = add({"bob@example.org"});
  defer(a, 1, 600);
  auto held = claim(a);
  for (const char* cmd : {"hold", "delete"}) {
    auto r = ask(Json().set("cmd", cmd).set("ids", Json().push(a)));
    REQUIRE(r["ok"].as_bool());
    CHECK(r["done"].as_array().empty());
    CHECK(r["errors"][a].as_string().find("in flight") != std::string::npos);
  }
  auto f = ask(Json().set("cmd", "flush"));
  CHECK(f["flushed"].as_int() == 0);
  CHECK(f["errors"][a].as_string().find("in flight") != std::string::npos);
  CHECK((*sp.find(a))->when == now + 600);
}

TEST_CASE_METHOD(Fixture, "hold, release, delete") {
  auto a = add({"bob@example.org"});
  auto b = add({"carol@example.org"});
  defer(a, 2, 7200);
  auto r = ask(Json().set("cmd", "hold").set("ids", Json().push(a)));
  CHECK(r["done"].as_array().size() == 1);
  CHECK((*sp.find(a))->place == spool::Place::hold);
  CHECK(ask(Json().set("cmd", "status"))["held"].as_int() == 1);
  auto listed = ask(Json().set("cmd", "list"));
  CHECK(listed["messages"].as_array()[0]["held"].as_bool());
  CHECK(ask(Json().set("cmd", "hold").set("ids", Json().push(a)))["errors"][a].as_string() == "already held");
  CHECK(ask(Json().set("cmd", "flush").set("ids", Json().push(a)))["errors"][a].as_string().find("held") ==
        0);

  r = ask(Json().set("cmd", "release").set("ids", Json().push(a).push(b)));
  CHECK(r["done"].as_array().size() == 1);
  CHECK(r["errors"][b].as_string() == "not held");
  auto ref = *sp.find(a);
  CHECK(ref->place == spool::Place::queue);
  CHECK(ref->tier == 0);
  CHECK(ref->when == now);

  r = ask(Json().set("cmd", "delete").set("ids", Json().push(b)));
  CHECK(r["done"].as_array()[0].as_string() == b);
  CHECK_FALSE(sp.find(b)->has_value());
  CHECK_FALSE(spoold::test::read_file(sp.body_path(a)).empty());
  CHECK(spoold::test::read_file(sp.body_path(b)).empty());
}

TEST_CASE_METHOD(Fixture, "requeue brings a failed entry back with its unsent recipients pending") {
  auto a = add({"bob@example.org", "carol@example.org"});
  {
    auto c = claim(a);
    c.entry.recipients[0].state = spool::RcptState::sent;
    c.entry.recipients[1].state = spool::RcptState::expired;
    REQUIRE(sp.fail(c, "expired", now).ok());
  }
  auto b = add({"dave@example.org"});
  auto r = ask(Json().set("cmd", "requeue").set("ids", Json().push(a).push(b)));
  CHECK(r["done"].as_array().size() == 1);
  CHECK(r["errors"][b].as_string().find("not in failed/") == 0);
  auto ref = *sp.find(a);
  REQUIRE(ref.has_value());
  CHECK(ref->place == spool::Place::queue);
  CHECK(ref->tier == 0);
  auto e = sp.read(*ref);
  REQUIRE(e.ok());
  CHECK(e->recipients[0].state == spool::RcptState::sent);
  CHECK(e->recipients[1].state == spool::RcptState::pending);
  CHECK(e->reason.empty());
}

TEST_CASE_METHOD(Fixture, "bounce and bad requests are refused without the daemon") {
  auto a = add({"bob@example.org"});
  auto r = ask(Json().set("cmd", "bounce").set("ids", Json().push(a)));
  CHECK_FALSE(r["ok"].as_bool(true));
  CHECK(r["error"].as_string().find("daemon") != std::string::npos);
  CHECK(control::apply(sp, control::Op::bounce, {a}, now).errors.size() == 1);
  CHECK(sp.find(a)->has_value());
  CHECK_FALSE(ask(Json().set("cmd", "hold"))["ok"].as_bool(true));
  CHECK_FALSE(ask(Json().set("cmd", "frobnicate"))["ok"].as_bool(true));
  CHECK_FALSE(ask(Json())["ok"].as_bool(true));
}
