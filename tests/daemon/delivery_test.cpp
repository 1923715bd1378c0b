// tests/daemon/delivery_test.cpp — spoold end to end against a real SMTP server: drop formats,
// header fix-ups, pooled connections, immediate pickup by a running daemon.
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>

#include "tests/daemon/harness.h"

using namespace spoold::test;
using namespace std::chrono_literals;

TEST_CASE("--once delivers both drop formats and empties the queue", "[daemon]") {
  Env env;
  env.drop("a.msg", envelope_message("alice@example.com", {"bob@example.net", "carol@example.org"}, "one"));
  env.drop("b.eml",
           "From: Dave <dave@example.com>\r\nTo: erin@example.net\r\nBcc: secret@example.org\r\n"
           "Subject: two\r\n\r\n.leading dot\r\nbody\r\n");
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto msgs = env.sink().messages();
  REQUIRE(msgs.size() == 2);
  size_t rcpts = 0;
  bool saw_bcc_rcpt = false;
  for (const auto& m : msgs) {
    rcpts += m.meta["rcpts"].as_array().size();
    for (const auto& r : m.meta["rcpts"].as_array())
      if (r.as_string() == "secret@example.org") saw_bcc_rcpt = true;
    CHECK(m.data.find("Bcc:") == std::string::npos);  // never transmitted
    CHECK(m.data.find("Date: ") != std::string::npos);
    CHECK(m.data.find("Message-ID: ") != std::string::npos);
  }
  CHECK(rcpts == 4);
  CHECK(saw_bcc_rcpt);
  CHECK(env.entries("incoming").empty());
  CHECK(env.entries("queue/0").empty());
  CHECK(env.entries("failed").empty());
  auto log = env.log();
  CHECK(log.find("from=<alice@example.com>, size=") != std::string::npos);
  CHECK(log.find("to=<bob@example.net>, relay=127.0.0.1[127.0.0.1]:") != std::string::npos);
  CHECK(log.find("status=sent (250 2.0.0 Ok: queued as") != std::string::npos);
}

TEST_CASE("a malformed drop goes to bad/ with a reason and does not stop the rest", "[daemon]") {
  Env env;
  env.drop("junk", "\x01\x02\x03 not mail at all\n");
  env.drop("good", envelope_message("a@example.com", {"b@example.net"}, "ok"));
  REQUIRE(env.run_once() == 0);
  CHECK(env.sink().count() == 1);
  auto bad = spoold::test::list_dir(env.spool() + "/bad");
  CHECK(std::count(bad.begin(), bad.end(), "junk") == 1);
  CHECK(std::count(bad.begin(), bad.end(), "junk.reason") == 1);
}

TEST_CASE("connections are reused for many messages to one next hop", "[daemon]") {
  Env env("delivery:\n  max_sessions_per_destination: 2\n  idle_timeout: 2s\n");
  for (int i = 0; i < 60; ++i)
    env.drop("m" + std::to_string(i),
             envelope_message("a@example.com", {"b@example.net"}, std::to_string(i)));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(env.sink().count() == 60);
  CHECK(env.sink().sessions() <= 2);
}

TEST_CASE("a running daemon picks up a new drop at once and stops cleanly on SIGTERM", "[daemon]") {
  Env env("queue:\n  scan_interval: 60s\n");  // only inotify can be this fast
  env.start();
  env.drop("now", envelope_message("a@example.com", {"b@example.net"}, "fast"));
  CHECK(env.sink().wait_count(1, 5s));
  CHECK(env.stop(SIGTERM) == 0);
  INFO(env.log());
  CHECK(env.log().find("stopped") != std::string::npos);
}
