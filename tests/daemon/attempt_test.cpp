// tests/daemon/attempt_test.cpp — the pure bookkeeping of one delivery attempt (daemon/attempt.h):
// how often a part may go to each server, what it is told when none is left, and when a server
// that keeps failing is skipped.
#include "daemon/attempt.h"
#include "daemon/address_health.h"

#include <catch2/catch.hpp>

using namespace spoold::daemon;
using spoold::smtp::Outcome;
using spoold::smtp::Status;

namespace {

Outcome temp(const char* text) {
  return Outcome{Status::temporary, 0, "4.4.1", text, false};
}
Outcome perm(int code, const char* enhanced) {
  return Outcome{Status::permanent, code, enhanced, "go away", false};
}

}  // namespace

TEST_CASE("a part uses each server at most connect_attempts times in one attempt", "[attempt]") {
  struct Row {
    int connect_attempts;
    int failures;
    bool exhausted;
  };
  const Row rows[] = {{1, 0, false}, {1, 1, true}, {2, 1, false}, {2, 2, true},
                      {3, 2, false}, {0, 1, true},  // 0 is treated as 1: every address is tried once
                      {3, 3, true}};
  for (const Row& r : rows) {
    INFO("connect_attempts " << r.connect_attempts << ", failures " << r.failures);
    AttemptLog log;
    for (int i = 0; i < r.failures; ++i) log.failed("127.0.0.2|25", temp("refused"), "none");
    CHECK(log.exhausted("127.0.0.2|25", r.connect_attempts) == r.exhausted);
    CHECK_FALSE(log.exhausted("127.0.0.3|25", r.connect_attempts));  // another server is untouched
    CHECK(log.any_failure() == (r.failures > 0));
  }
}

TEST_CASE("the verdict of an attempt: permanent only when no server failed temporarily", "[attempt]") {
  struct Row {
    std::vector<Outcome> failures;  // in order, each at its own server
    Status status;
    std::string enhanced;
  };
  const std::vector<Row> rows = {
      {{temp("timeout")}, Status::temporary, "4.4.1"},
      {{perm(554, "5.3.2")}, Status::permanent, "5.3.2"},  // the only server said 5xx at greeting
      {{temp("timeout"), perm(554, "5.3.2")}, Status::temporary, "4.3.2"},  // the first may take it later
      {{perm(554, "5.3.2"), temp("refused")}, Status::temporary, "4.4.1"},
      {{perm(554, ""), perm(550, "")}, Status::permanent, "5.0.0"},
      {{Outcome{Status::sent, 250, "2.0.0", "odd", false}}, Status::temporary, "4.0.0"},
  };
  for (const Row& r : rows) {
    AttemptLog log;
    int n = 0;
    for (const auto& f : r.failures)
      log.failed("10.0.0." + std::to_string(++n) + "|25", f, "mx[10.0.0.1]:25");
    Outcome v = log.verdict();
    INFO("verdict " << to_string(v.status) << " " << v.enhanced);
    CHECK(v.status == r.status);
    CHECK(v.enhanced == r.enhanced);
    CHECK(log.last_relay() == "mx[10.0.0.1]:25");
  }
}

TEST_CASE("a server is skipped after threshold failures in a row, for the memory period", "[attempt]") {
  using namespace std::chrono_literals;
  const auto t0 = Clock::time_point{} + 1000s;
  AddressHealth h;
  const std::string s = "127.0.0.6|25";
  h.failed(s, t0, 2, 60s);
  CHECK_FALSE(h.skipped_since(s, t0));  // one of two
  h.succeeded(s);
  h.failed(s, t0 + 1s, 2, 60s);
  CHECK_FALSE(h.skipped_since(s, t0 + 1s));  // the success reset the count
  h.failed(s, t0 + 2s, 2, 60s);
  auto since = h.skipped_since(s, t0 + 14s);
  REQUIRE(since);
  CHECK(*since == t0 + 2s);
  CHECK(h.skipped_until(s) == t0 + 62s);
  CHECK_FALSE(h.skipped_since(s, t0 + 62s));  // due again
  CHECK_FALSE(h.skipped_since("127.0.0.7|25", t0));
  h.forget_expired(t0 + 61s);  // due again, but failed less than a minute ago: kept
  CHECK(h.size() == 1);
  h.forget_expired(t0 + 63s);
  CHECK(h.skipped_until(s) == Clock::time_point{});
  CHECK(h.size() == 0);
  h.failed("127.0.0.9|25", t0, 3, 60s);  // below the threshold: forgotten after a quiet minute
  h.forget_expired(t0 + 30s);
  CHECK(h.size() == 1);
  h.forget_expired(t0 + 61s);
  CHECK(h.size() == 0);
}

TEST_CASE("servers are shown as ip:port, IPv6 in brackets", "[attempt]") {
  CHECK(server_display("127.0.0.6|25") == "127.0.0.6:25");
  CHECK(server_display("::1|2525") == "[::1]:2525");
  CHECK(server_display("odd") == "odd");
}
