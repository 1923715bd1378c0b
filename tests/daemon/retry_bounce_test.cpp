// tests/daemon/retry_bounce_test.cpp — deferrals walk the tiers, permanent failures and expiry bounce
// with an RFC 3464 DSN, the null sender is never bounced.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "tests/daemon/harness.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {
size_t count_dsn(const std::vector<SinkMessage>& msgs, const std::string& to) {
  size_t n = 0;
  for (const auto& m : msgs)
    if ((m.meta["from"].as_string().empty() || m.meta["from"].as_string() == "<>") &&
        !m.meta["rcpts"].as_array().empty() && m.meta["rcpts"].as_array()[0].as_string() == to)
      ++n;
  return n;
}
}  // namespace

TEST_CASE("a permanent failure bounces once with a DSN; the rest is delivered", "[daemon]") {
  Env env;
  env.drop("m", envelope_message("alice@example.com", {"perm-x@example.net", "ok@example.net"}, "p"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto msgs = env.sink().messages();
  REQUIRE(count_dsn(msgs, "alice@example.com") == 1);
  const SinkMessage* dsn = nullptr;
  for (const auto& m : msgs)
    if (m.meta["from"].as_string() == "<>") dsn = &m;
  REQUIRE(dsn);
  CHECK(dsn->data.find("Content-Type: multipart/report; report-type=delivery-status") != std::string::npos);
  CHECK(dsn->data.find("Final-Recipient: rfc822; perm-x@example.net") != std::string::npos);
  CHECK(dsn->data.find("Action: failed") != std::string::npos);
  CHECK(dsn->data.find("Status: 5.1.1") != std::string::npos);
  CHECK(dsn->data.find("Diagnostic-Code: smtp; 550 5.1.1") != std::string::npos);
  CHECK(dsn->data.find("Reporting-MTA: dns; spoold.test") != std::string::npos);
  CHECK(dsn->data.find("From: Mail Delivery System <MAILER-DAEMON@spoold.test>") != std::string::npos);
  CHECK(dsn->data.find("Subject: p") != std::string::npos);  // original headers attached
  CHECK(env.log().find("to=<perm-x@example.net>") != std::string::npos);
  CHECK(env.log().find("status=bounced (550 5.1.1") != std::string::npos);
  CHECK(env.entries("failed").size() == 1);  // the dead letter is kept
  CHECK(env.entries("queue/0").empty());
}

TEST_CASE("the null sender is never bounced", "[daemon]") {
  Env env;
  env.drop("m", envelope_message("", {"reject@example.net"}, "bounce of a bounce"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(env.sink().count() == 0);
  CHECK(env.entries("failed").size() == 1);
}

TEST_CASE("a temporary failure walks the tiers and expires into a bounce", "[daemon]") {
  // Tier delays long enough that a loaded machine cannot make the entry due between two runs.
  Env env(
      "queue:\n  scan_interval: 200ms\n  tiers:\n    - { delay: 0 }\n    - { delay: 3s }\n    - { delay: 4s "
      "}\n");
  env.drop("m", envelope_message("alice@example.com", {"temp-x@example.net"}, "t"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(env.entries("queue/1").size() == 1);
  CHECK(env.log().find("status=deferred (451 4.3.0") != std::string::npos);
  REQUIRE(env.run_once() == 0);  // not yet due: nothing happens
  CHECK(env.entries("queue/1").size() == 1);
  std::this_thread::sleep_for(3200ms);
  REQUIRE(env.run_once() == 0);
  CHECK(env.entries("queue/2").size() == 1);
  std::this_thread::sleep_for(4200ms);
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(env.log().find("status=expired") != std::string::npos);
  CHECK(env.entries("queue/2").empty());
  CHECK(env.entries("failed").size() == 1);
  auto msgs = env.sink().messages();
  REQUIRE(count_dsn(msgs, "alice@example.com") == 1);
  CHECK(msgs.back().data.find("Status: 4.4.7") != std::string::npos);
}

TEST_CASE("an unreachable next hop defers; the message goes out at its tier's time", "[daemon]") {
  int port = free_port();
  Env env("routes:\n  - { match: [\"*\"], hosts: [\"127.0.0.1:" + std::to_string(port) + "\"] }\n", false);
  env.drop("m", envelope_message("alice@example.com", {"bob@example.net"}, "x"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(env.entries("queue/1").size() == 1);
  CHECK(env.log().find("to=<bob@example.net>, relay=none") != std::string::npos);
  CHECK(env.log().find("status=deferred") != std::string::npos);
  // The server comes up; once tier 1's delay (1 s) has passed the message is delivered.
  Sink late(env.dir() / "late", {}, "127.0.0.1", port);
  std::this_thread::sleep_for(1200ms);
  REQUIRE(env.run_once() == 0);
  CHECK(late.count() == 1);
  CHECK(env.entries("queue/1").empty());
  CHECK(env.log().find("tier=1, dsn=2.0.0, status=sent") != std::string::npos);
}

TEST_CASE("a message with lines over 998 octets is delivered wrapped, and the log says so once", "[daemon]") {
  Env env;
  std::string body = std::string(1200, 'x') + "\n" + std::string(2100, 'y') + "\n";
  env.drop("m",
           envelope_message("alice@example.com", {"bob@example.net", "carol@example.net"}, "long", body));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto msgs = env.sink().messages();
  REQUIRE(msgs.size() == 1);  // delivered, no bounce
  CHECK(msgs[0].meta["rcpts"].as_array().size() == 2);
  const std::string& data = msgs[0].data;
  CHECK(data.find(std::string(998, 'x') + "\r\n" + std::string(202, 'x') + "\r\n") != std::string::npos);
  CHECK(data.find(std::string(998, 'y') + "\r\n" + std::string(998, 'y') + "\r\n" + std::string(104, 'y') +
                  "\r\n") != std::string::npos);
  for (std::size_t at = 0, eol; (eol = data.find('\n', at)) != std::string::npos; at = eol + 1)
    REQUIRE(eol - at <= 999);  // 998 and the CR
  std::string log = env.log();
  std::size_t note = log.find("wrapped 2 lines over 998 octets");
  CHECK(note != std::string::npos);
  CHECK(log.find("wrapped", note + 1) == std::string::npos);  // once per message, not per recipient
  CHECK(log.find("status=bounced") == std::string::npos);
  CHECK(log.find("status=sent") != std::string::npos);
}
