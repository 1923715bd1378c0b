// tests/daemon/route_policy_test.cpp — a route's own connection policy (tls, max_sessions,
// rate_limit, bind_address) against real aiosmtpd sinks on loopback; routes without one keep
// delivery's.
#include <catch2/catch.hpp>

#include <algorithm>
#include <ctime>
#include <string>
#include <vector>

#include "tests/daemon/harness.h"

using namespace spoold::test;

namespace {

const char* kDelivery =
    "delivery:\n  idle_timeout: 1s\n  max_sessions_per_destination: 4\n"
    "  timeouts: { connect: 5s, greeting: 10s, ehlo: 10s, mail: 10s, rcpt: 10s, data: 10s, dot: 10s }\n";

std::string hosts(int port) {
  return "hosts: [\"127.0.0.1:" + std::to_string(port) + "\"]";
}

// Seconds (with milliseconds) of the log lines that contain `what`, in order.
std::vector<double> times_of(const std::string& log, const std::string& what) {
  std::vector<double> out;
  size_t at = 0;
  while ((at = log.find(what, at)) != std::string::npos) {
    size_t line = log.rfind('\n', at);
    line = line == std::string::npos ? 0 : line + 1;
    // "2026-12-07T17:41:37.889Z ..."
    std::tm tm{};
    const char* rest = strptime(log.c_str() + line, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest && *rest == '.') out.push_back(static_cast<double>(timegm(&tm)) + std::atof(rest));
    at += what.size();
  }
  return out;
}

}  // namespace

TEST_CASE("a route's bind_address and tls apply to its mail only", "[daemon][route_policy]") {
  Env env(kDelivery, false);
  Sink sink(env.dir() / "sink");
  write_file(env.config_path(),
             read_file(env.config_path()) + "routes:\n" + "  - { match: [bound.test], " + hosts(sink.port()) +
                 ", bind_address: 127.0.0.2 }\n" + "  - { match: [strict.test], " + hosts(sink.port()) +
                 ", tls: required }\n" + "  - { match: [\"*\"], " + hosts(sink.port()) + " }\n");
  env.drop("m1", envelope_message("a@example.com", {"x@bound.test"}, "from 127.0.0.2"));
  env.drop("m2", envelope_message("a@example.com", {"y@other.test"}, "from the kernel's choice"));
  env.drop("m3", envelope_message("a@example.com", {"z@strict.test"}, "needs TLS the sink lacks"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto got = sink.messages();
  REQUIRE(got.size() == 2);
  for (const auto& m : got) {
    std::string rcpt = m.meta["rcpts"].as_array()[0].as_string();
    std::string peer = m.meta["peer"].as_array()[0].as_string();
    INFO(rcpt);
    CHECK(peer == (rcpt == "x@bound.test" ? "127.0.0.2" : "127.0.0.1"));
  }
  // tls: required on its route only: the sink offers no STARTTLS, so that mail waits.
  CHECK(env.entries("queue/1").size() == 1);
  CHECK(env.log().find("to=<z@strict.test>") != std::string::npos);
  CHECK(env.log().find("STARTTLS") != std::string::npos);
}

TEST_CASE("a route's max_sessions and rate_limit hold its next hops", "[daemon][route_policy]") {
  Env env(kDelivery, false);
  // Each final dot answered 0.2 s late: mail waits, so a next hop opens more sessions (slow start).
  const std::vector<std::string> late{"--dot-delay", "0.2"};
  Sink held(env.dir() / "held", late), free_sink(env.dir() / "free", late), slow(env.dir() / "slow");
  write_file(env.config_path(),
             read_file(env.config_path()) + "routes:\n" + "  - { match: [held.test], " + hosts(held.port()) +
                 ", max_sessions: 1 }\n" + "  - { match: [slow.test], " + hosts(slow.port()) +
                 ", rate_limit: 2 }\n" + "  - { match: [\"*\"], " + hosts(free_sink.port()) + " }\n");
  for (int i = 0; i < 10; ++i) {
    env.drop("h" + std::to_string(i), envelope_message("a@example.com", {"r@held.test"}, std::to_string(i)));
    env.drop("f" + std::to_string(i), envelope_message("a@example.com", {"r@free.test"}, std::to_string(i)));
  }
  for (int i = 0; i < 6; ++i)
    env.drop("s" + std::to_string(i), envelope_message("a@example.com", {"r@slow.test"}, std::to_string(i)));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(held.count() == 10);
  CHECK(free_sink.count() == 10);
  CHECK(slow.count() == 6);
  CHECK(held.sessions() == 1);      // the route's max_sessions
  CHECK(free_sink.sessions() > 1);  // delivery's 4
  // rate_limit 2 a second: a burst of two, then one every half second.
  auto sent = times_of(env.log(), "to=<r@slow.test>");
  REQUIRE(sent.size() == 6);
  CHECK(sent.back() - sent.front() >= 1.5);
}
