// tests/daemon/limits_test.cpp — the delivery limits, observed at a real server: envelope_limit
// splitting, rate_limit, max_connection_time, and the delay warning DSN.
#include <signal.h>

#include <catch2/catch.hpp>
#include <map>
#include <thread>

#include "tests/daemon/harness.h"

using namespace spoold::test;
using namespace std::chrono_literals;

TEST_CASE("envelope_limit splits recipients into several transactions", "[daemon][limits]") {
  Env env("delivery:\n  envelope_limit: 2\n");
  env.drop("m", envelope_message("a@example.com",
                                 {"r1@example.net", "r2@example.net", "r3@example.net", "r4@example.net",
                                  "r5@example.net"},
                                 "split"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto msgs = env.sink().messages();
  REQUIRE(msgs.size() == 3);
  CHECK(msgs[0].meta["rcpts"].as_array().size() == 2);
  CHECK(msgs[1].meta["rcpts"].as_array().size() == 2);
  CHECK(msgs[2].meta["rcpts"].as_array().size() == 1);
  CHECK(env.sink().sessions() == 1);  // all on one connection
}

TEST_CASE("rate_limit spaces messages to one destination", "[daemon][limits]") {
  Env env("delivery:\n  rate_limit: 4\n");
  for (int i = 0; i < 10; ++i)
    env.drop("m" + std::to_string(i),
             envelope_message("a@example.com", {"b@example.net"}, std::to_string(i)));
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(env.run_once() == 0);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(env.sink().count() == 10);
  // A burst of 4, then one every 250 ms: at least 1.5 s for 10.
  CHECK(took >= 1400ms);
}

TEST_CASE(
    "on one connection each message goes out behind the previous dot; max_messages_per_connection holds",
    "[daemon][limits][pipelining]") {
  // All 10 drops are claimed in one pickup pass (the first takes up to 32) before the connection
  // is ready, so each dot has a part waiting to go behind it. cap -1: a server without
  // PIPELINING, where nothing may be sent before a reply.
  for (int cap : {0, 3, -1}) {
    INFO("max_messages_per_connection " << cap);
    TempDir transcripts;
    Env env("delivery:\n  max_sessions_per_destination: 1\n  max_messages_per_connection: " +
                std::to_string(std::max(cap, 0)) + "\n  transcript_dir: " + transcripts.path() + "\n",
            true, cap < 0 ? std::vector<std::string>{"--no-pipelining"} : std::vector<std::string>{});
    for (int i = 0; i < 10; ++i)
      env.drop("m" + std::to_string(i),
               envelope_message("a@example.com", {"b@example.net"}, std::to_string(i)));
    REQUIRE(env.run_once() == 0);
    INFO(env.log());
    REQUIRE(env.sink().count() == 10);
    std::map<std::int64_t, int> per_session;
    for (const auto& m : env.sink().messages()) ++per_session[m.meta["session"].as_int()];
    if (cap <= 0) {
      CHECK(per_session.size() == 1);
    } else {
      CHECK(per_session.size() == 4);  // 3 + 3 + 3 + 1
      for (const auto& [session, n] : per_session) CHECK(n <= cap);
    }
    // The transcripts show the next MAIL sent right after a body, before the dot's reply.
    int behind = 0;
    for (const auto& name : list_dir(transcripts.path())) {
      std::string t = read_file(transcripts / name);
      for (auto at = t.find("(message body not logged)\n> MAIL FROM:"); at != std::string::npos;
           at = t.find("(message body not logged)\n> MAIL FROM:", at + 1))
        ++behind;
    }
    CHECK(behind == (cap == 0 ? 9 : cap == 3 ? 6 : 0));  // every message but each connection's first
  }
}

TEST_CASE("a connection older than max_connection_time is not reused", "[daemon][limits]") {
  Env env("delivery:\n  max_connection_time: 1s\n  idle_timeout: 30s\n");
  env.start();
  env.drop("m1", envelope_message("a@example.com", {"b@example.net"}, "first"));
  REQUIRE(env.sink().wait_count(1, 10s));
  env.drop("m2", envelope_message("a@example.com", {"b@example.net"}, "second"));
  REQUIRE(env.sink().wait_count(2, 10s));
  std::this_thread::sleep_for(1200ms);
  env.drop("m3", envelope_message("a@example.com", {"b@example.net"}, "third"));
  REQUIRE(env.sink().wait_count(3, 10s));
  auto msgs = env.sink().messages();
  CHECK(msgs[0].meta["session"].as_int() == msgs[1].meta["session"].as_int());  // reused while young
  CHECK(msgs[2].meta["session"].as_int() != msgs[1].meta["session"].as_int());  // retired when old
  CHECK(env.stop(SIGTERM) == 0);
}

TEST_CASE("delay_warning_tier sends one 'delayed' DSN", "[daemon][limits]") {
  Env env(
      "queue:\n  scan_interval: 200ms\n  delay_warning_tier: 1\n  tiers:\n"
      "    - { delay: 0 }\n    - { delay: 1s }\n    - { delay: 2s }\n");
  env.drop("m", envelope_message("alice@example.com", {"temp-1@example.net"}, "slow"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto msgs = env.sink().messages();
  REQUIRE(msgs.size() == 1);
  CHECK(msgs[0].meta["rcpts"].as_array()[0].as_string() == "alice@example.com");
  CHECK(msgs[0].data.find("Action: delayed") != std::string::npos);
  CHECK(msgs[0].data.find("Subject: Delayed Mail") != std::string::npos);
  CHECK(env.entries("queue/1").size() == 1);  // still queued
  std::this_thread::sleep_for(1200ms);
  REQUIRE(env.run_once() == 0);
  CHECK(env.sink().count() == 1);  // only one warning
}

TEST_CASE("an idle pooled connection gives its slot to a destination that waits", "[daemon][limits]") {
  Env env("delivery:\n  max_sessions: 1\n  max_sessions_per_destination: 1\n  idle_timeout: 60s\n", false);
  Sink a(env.dir() / "a"), b(env.dir() / "b"), c(env.dir() / "c");
  write_file(env.config_path(),
             read_file(env.config_path()) + "routes:\n" +
                 "  - { match: [\"a.test\"], hosts: [\"127.0.0.1:" + std::to_string(a.port()) + "\"] }\n" +
                 "  - { match: [\"b.test\"], hosts: [\"127.0.0.1:" + std::to_string(b.port()) + "\"] }\n" +
                 "  - { match: [\"c.test\"], hosts: [\"127.0.0.1:" + std::to_string(c.port()) + "\"] }\n");
  for (const char* d : {"a", "b", "c"})
    env.drop(d, envelope_message("x@example.com", {std::string("r@") + d + ".test"}, d));
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(env.run_once(std::chrono::seconds(50)) == 0);
  INFO(env.log());
  CHECK(a.count() == 1);
  CHECK(b.count() == 1);
  CHECK(c.count() == 1);
  CHECK(std::chrono::steady_clock::now() - t0 < 20s);  // not three idle_timeouts
}

TEST_CASE("a 452 for too many recipients sends the rest in the next transaction", "[daemon][limits]") {
  // tests/smtp/servers/raw_server.py "452-after-2": at most two RCPTs per transaction.
  Env env("", false);
  int port = free_port();
  Process server(
      {system_python(), std::string(SPOOLD_SOURCE_DIR) + "/tests/smtp/servers/raw_server.py", "--port",
       std::to_string(port), "--scenario", "452-after-2", "--log", env.dir() / "raw.log"},
      env.dir() / "raw.out", env.dir() / "raw.err");
  REQUIRE(wait_for_port("127.0.0.1", port, 10s));
  write_file(env.config_path(),
             read_file(env.config_path()) +
                 "routes:\n  - { match: [\"*\"], hosts: [\"127.0.0.1:" + std::to_string(port) + "\"] }\n");
  env.drop("m", envelope_message("a@example.com",
                                 {"r1@example.net", "r2@example.net", "r3@example.net", "r4@example.net",
                                  "r5@example.net"},
                                 "452"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log() << "\nserver:\n" << read_file(env.dir() / "raw.log"));
  std::string log = env.log();
  size_t sent = 0;
  for (auto p = log.find("status=sent"); p != std::string::npos; p = log.find("status=sent", p + 1)) ++sent;
  CHECK(sent == 5);
  CHECK(log.find("status=deferred") == std::string::npos);
  CHECK(env.entries("queue/1").empty());
  std::string srv = read_file(env.dir() / "raw.log");
  size_t bodies = 0;
  for (auto p = srv.find("body "); p != std::string::npos; p = srv.find("body ", p + 1)) ++bodies;
  CHECK(bodies == 3);  // 2 + 2 + 1 recipients
}
