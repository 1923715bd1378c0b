// tests/daemon/relay_test.cpp — relay groups (Mail::Bulkmail::Server semantics) against real aiosmtpd
// servers: STARTTLS + AUTH, round robin with max_messages_per_robin.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include <unistd.h>

#include "tests/daemon/harness.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

// An aiosmtpd relay with STARTTLS (self-signed) and AUTH for mailer:s3cret; the config's relay
// group "corp" points at it with the given password, and every domain routes there.
struct TlsAuthRelay {
  Env env{"", false};
  std::unique_ptr<Sink> relay;
  explicit TlsAuthRelay(const std::string& password) {
    make_certificate(env.dir().path());
    write_file(env.dir() / "relay.pw", password + "\n");
    relay = std::make_unique<Sink>(
        env.dir() / "relay", std::vector<std::string>{"--tls-cert", env.dir() / "cert.pem", "--tls-key",
                                                      env.dir() / "key.pem", "--auth", "mailer:s3cret"});
    write_file(env.config_path(),
               read_file(env.config_path()) + "relays:\n  corp:\n    servers:\n" +
                   "      - { host: 127.0.0.1, port: " + std::to_string(relay->port()) +
                   ", tls: starttls, verify: false,\n" + "          auth: { user: mailer, password_file: " +
                   (env.dir() / "relay.pw") + " } }\n" + "routes:\n  - { match: [\"*\"], relay: corp }\n");
  }
};

}  // namespace

TEST_CASE("a relay with STARTTLS and AUTH gets the mail", "[daemon][relay]") {
  TlsAuthRelay w("s3cret");
  Env& env = w.env;
  Sink& relay = *w.relay;
  env.drop("m", envelope_message("alice@example.com", {"bob@example.net"}, "via relay"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(relay.count() == 1);
  CHECK(read_file(env.dir() / "relay/auth-ok").find("PLAIN") != std::string::npos);
  CHECK(env.log().find("status=sent") != std::string::npos);
}

TEST_CASE("a wrong relay password is not retried in a storm and keeps the message", "[daemon][relay]") {
  TlsAuthRelay w("wrong");
  Env& env = w.env;
  Sink& relay = *w.relay;
  env.drop("m", envelope_message("alice@example.com", {"bob@example.net"}, "via relay"));
  int rc = env.run_once(std::chrono::seconds(20));
  INFO(env.log());
  REQUIRE(rc == 0);
  CHECK(relay.count() == 0);
  // A misconfigured relay must not bounce mail: the message is deferred (Postfix's soft bounce).
  CHECK(env.entries("queue/1").size() == 1);
  CHECK(env.entries("failed").empty());
  CHECK(env.log().find("authentication failed") != std::string::npos);
  CHECK(env.log().find("status=deferred") != std::string::npos);
}

TEST_CASE("round robin over two relays switches after max_messages_per_robin", "[daemon][relay]") {
  Env env("delivery:\n  max_sessions_per_destination: 1\n  idle_timeout: 1s\n", false);
  Sink a(env.dir() / "a"), b(env.dir() / "b");
  write_file(env.config_path(), read_file(env.config_path()) +
                                    "relays:\n  pool:\n    strategy: round_robin\n    servers:\n"
                                    "      - { host: 127.0.0.1, port: " +
                                    std::to_string(a.port()) +
                                    ", tls: none, max_messages_per_robin: 5 }\n"
                                    "      - { host: 127.0.0.1, port: " +
                                    std::to_string(b.port()) +
                                    ", tls: none, max_messages_per_robin: 5 }\n"
                                    "routes:\n  - { match: [\"*\"], relay: pool }\n");
  for (int i = 0; i < 20; ++i)
    env.drop("m" + std::to_string(i),
             envelope_message("a@example.com", {"b@example.net"}, std::to_string(i)));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(a.count() + b.count() == 20);
  CHECK(a.count() == 10);
  CHECK(b.count() == 10);
  CHECK(a.sessions() == 2);  // 5 messages per connection, then the other server
}

namespace {

// A relay group "g" over the given servers (YAML flow maps), every domain routed to it, one
// session at a time so the order of use is deterministic.
void relay_group(Env& env, const std::string& strategy, const std::vector<std::string>& servers) {
  std::string yaml = "relays:\n  g:\n    strategy: " + strategy + "\n    servers:\n";
  for (const auto& s : servers) yaml += "      - " + s + "\n";
  yaml += "routes:\n  - { match: [\"*\"], relay: g }\n";
  write_file(env.config_path(), read_file(env.config_path()) + yaml);
}

std::string server(int port, const std::string& extra = "") {
  return "{ host: 127.0.0.1, port: " + std::to_string(port) + ", tls: none" +
         (extra.empty() ? "" : ", " + extra) + " }";
}

void drop_n(Env& env, int n) {
  for (int i = 0; i < n; ++i)
    env.drop("m" + std::to_string(i),
             envelope_message("a@example.com", {"b@example.net"}, std::to_string(i)));
}

}  // namespace

TEST_CASE("failover uses the first relay that answers, after connect_attempts tries", "[daemon][relay]") {
  Env env("delivery:\n  max_sessions_per_destination: 1\n  connect_attempts: 2\n", false);
  Sink good(env.dir() / "good");
  int dead = free_port();
  relay_group(env, "failover", {server(dead), server(good.port())});
  drop_n(env, 5);
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(good.count() == 5);
  CHECK(env.log().find("connection failed (try 1 of 2)") != std::string::npos);
  CHECK(env.log().find("connection failed (try 2 of 2)") != std::string::npos);
  CHECK(env.log().find("try 3 of 2") == std::string::npos);  // then skipped, not hammered
}

TEST_CASE("max_messages retires a relay server; while_awake puts it to sleep", "[daemon][relay]") {
  SECTION("max_messages") {
    Env env("delivery:\n  max_sessions_per_destination: 1\n", false);
    Sink a(env.dir() / "a"), b(env.dir() / "b");
    relay_group(env, "failover", {server(a.port(), "max_messages: 3"), server(b.port())});
    drop_n(env, 8);
    REQUIRE(env.run_once() == 0);
    INFO(env.log());
    CHECK(a.count() == 3);
    CHECK(b.count() == 5);
  }
  SECTION("max_messages_while_awake + sleep_length") {
    Env env("delivery:\n  max_sessions_per_destination: 1\n", false);
    Sink a(env.dir() / "a"), b(env.dir() / "b");
    relay_group(env, "failover",
                {server(a.port(), "max_messages_while_awake: 2, sleep_length: 60s"), server(b.port())});
    drop_n(env, 6);
    REQUIRE(env.run_once() == 0);
    INFO(env.log());
    CHECK(a.count() == 2);  // then asleep for 60 s: the rest goes to b
    CHECK(b.count() == 4);
  }
}

namespace {

// "rcpt|dot ADDRESS SESSION TIME" lines the sink wrote for each grey*/dotgrey* refusal.
struct Refusal {
  std::string kind, address;
  int session = 0;
  double time = 0;
};

std::vector<Refusal> refusals(const std::string& sink_dir) {
  std::vector<Refusal> out;
  std::istringstream in(read_file(sink_dir + "/refusals"));
  Refusal r;
  while (in >> r.kind >> r.address >> r.session >> r.time) out.push_back(r);
  return out;
}

std::map<int, int> messages_per_session(const Sink& s) {
  std::map<int, int> out;
  for (const auto& m : s.messages()) ++out[static_cast<int>(m.meta["session"].as_int())];
  return out;
}

const char* kQuickTimeouts =
    "  timeouts: { connect: 5s, greeting: 10s, ehlo: 10s, mail: 10s, rcpt: 10s, data: 10s, dot: 10s }\n";

}  // namespace

TEST_CASE("talk_attempts tries a transaction refused with 4xx again on the same session", "[daemon][talk]") {
  Env env(
      std::string("delivery:\n  max_sessions_per_destination: 1\n  idle_timeout: 1s\n  talk_attempts: 3\n") +
      kQuickTimeouts);
  env.drop("m1", envelope_message("a@example.com", {"grey2-one@example.net"}, "refused twice at RCPT"));
  env.drop("m2",
           envelope_message("a@example.com", {"dotgrey1-two@example.net"}, "refused once after the dot"));
  env.drop("m3", envelope_message("a@example.com", {"temp-three@example.net"}, "always 451"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto got = env.sink().messages();
  REQUIRE(got.size() == 2);
  std::set<std::string> rcpts;
  for (const auto& m : got) rcpts.insert(m.meta["rcpts"].as_array()[0].as_string());
  CHECK(rcpts == std::set<std::string>{"grey2-one@example.net", "dotgrey1-two@example.net"});
  // Every try on the one session the messages went out on, a pause between the tries.
  CHECK(env.sink().sessions() == 1);
  auto refused = refusals(env.dir() / "sink");
  REQUIRE(refused.size() == 3);
  for (const auto& r : refused) CHECK(r.session == got[0].meta["session"].as_int());
  std::vector<double> grey;
  for (const auto& r : refused)
    if (r.address == "grey2-one@example.net") grey.push_back(r.time);
  REQUIRE(grey.size() == 2);
  CHECK(grey[1] - grey[0] >= 0.9);
  // The one that is always refused: three tries, then deferred with the server's reply.
  CHECK(env.log().find("(try 3 of 3)") != std::string::npos);
  CHECK(env.log().find("(try 4 of 3)") == std::string::npos);
  CHECK(env.entries("queue/1").size() == 1);
  CHECK(env.log().find("to=<temp-three@example.net>") != std::string::npos);
  CHECK(env.log().find("status=deferred (451 4.3.0 mailbox busy") != std::string::npos);
}

TEST_CASE("talk_attempts: one try by default; a relay server's own setting wins", "[daemon][talk]") {
  SECTION("default: the 4xx defers at once") {
    Env env;
    env.drop("m", envelope_message("a@example.com", {"grey1-x@example.net"}, "greylisted"));
    REQUIRE(env.run_once() == 0);
    INFO(env.log());
    CHECK(env.sink().count() == 0);
    CHECK(env.entries("queue/1").size() == 1);
    CHECK(refusals(env.dir() / "sink").size() == 1);
  }
  SECTION("a session cut in the pause (max_connection_time) defers with the server's reply") {
    Env env(std::string("delivery:\n  talk_attempts: 3\n  max_connection_time: 400ms\n") + kQuickTimeouts);
    env.drop("m", envelope_message("a@example.com", {"grey3-x@example.net"}, "greylisted"));
    REQUIRE(env.run_once() == 0);
    INFO(env.log());
    CHECK(env.sink().count() == 0);
    CHECK(refusals(env.dir() / "sink").size() == 1);
    CHECK(env.entries("queue/1").size() == 1);
    CHECK(env.log().find("status=deferred (451 4.7.1 <grey3-x@example.net>: greylisted") !=
          std::string::npos);
  }
  SECTION("relay server talk_attempts: 2 over delivery's 1") {
    Env env("", false);
    Sink a(env.dir() / "a");
    relay_group(env, "failover", {server(a.port(), "talk_attempts: 2")});
    env.drop("m", envelope_message("a@example.com", {"grey1-x@example.net"}, "greylisted"));
    REQUIRE(env.run_once() == 0);
    INFO(env.log());
    CHECK(a.count() == 1);
    CHECK(a.sessions() == 1);
    CHECK(refusals(env.dir() / "a").size() == 1);
    CHECK(env.entries("queue/1").empty());
  }
}

TEST_CASE("relay counts never overshoot with several connections in flight", "[daemon][relay]") {
  Env env(std::string("delivery:\n  max_sessions_per_destination: 4\n  idle_timeout: 1s\n") + kQuickTimeouts,
          false);
  Sink a(env.dir() / "a"), b(env.dir() / "b");
  relay_group(env, "failover",
              {server(a.port(), "max_messages: 5, max_messages_per_connection: 2"), server(b.port())});
  drop_n(env, 40);
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(a.count() == 5);  // exactly: four connections at once never take more between them
  CHECK(b.count() == 35);
  // The server's own max_messages_per_connection (delivery's is unlimited).
  for (const auto& [session, n] : messages_per_session(a)) {
    INFO("session " << session);
    CHECK(n <= 2);
  }
  size_t most_b = 0;
  for (const auto& [session, n] : messages_per_session(b)) most_b = std::max(most_b, static_cast<size_t>(n));
  CHECK(most_b > 2);  // b's connections are not limited by a's setting
}

TEST_CASE("talk_attempts with a transaction half accepted reports every recipient once", "[daemon][talk]") {
  Env env(
      std::string("delivery:\n  max_sessions_per_destination: 1\n  idle_timeout: 1s\n  talk_attempts: 2\n") +
      kQuickTimeouts);
  env.drop("m1", envelope_message("a@example.com", {"ok-one@example.net", "grey1-two@example.net"}, "mixed"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(env.sink().messages().size() == 2);  // the first try's and the second try's transactions
  CHECK(env.entries("queue/1").empty());
  CHECK(env.log().find("to=<grey1-two@example.net>, relay=127.0.0.1") != std::string::npos);
  CHECK(env.log().find("to=<ok-one@example.net>, relay=127.0.0.1") != std::string::npos);
}

TEST_CASE("a part reported in pieces does not end its message's attempt early", "[daemon][talk]") {
  // One message for a fast sink (one recipient refused once, tried again on its session) and a
  // tarpit (every reply 0.3 s late): the attempt ends when both are done, and the tarpit's
  // recipient is delivered once.
  Env env(std::string("delivery:\n  idle_timeout: 1s\n  talk_attempts: 2\n") + kQuickTimeouts, false);
  Sink a(env.dir() / "a");
  int slow_port = free_port();
  std::string events = env.dir() / "slow.events", ready = env.dir() / "slow.ready";
  Process slow(
      {system_python(), std::string(SPOOLD_SOURCE_DIR) + "/tests/reliability/hostile_smtp.py", "--port",
       std::to_string(slow_port), "--mode", "tarpit:0.3", "--log", events, "--ready", ready},
      env.dir() / "slow.out", env.dir() / "slow.err");
  REQUIRE(wait_until([&] { return ::access(ready.c_str(), F_OK) == 0; }, std::chrono::seconds(20)));
  write_file(env.config_path(),
             read_file(env.config_path()) + "routes:\n" +
                 "  - { match: [\"b.test\"], hosts: [\"127.0.0.1:" + std::to_string(slow_port) + "\"] }\n" +
                 "  - { match: [\"*\"], hosts: [\"127.0.0.1:" + std::to_string(a.port()) + "\"] }\n");
  env.drop("m1",
           envelope_message("x@example.com", {"ok-one@a.test", "grey1-two@a.test", "slow@b.test"}, "m"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  std::string t = read_file(events);
  size_t accepted = 0;
  for (size_t pos = t.find(" accepted"); pos != std::string::npos; pos = t.find(" accepted", pos + 1))
    ++accepted;
  CHECK(accepted == 1);
  CHECK(a.count() == 2);
  CHECK(env.entries("queue/1").empty());  // every recipient sent in the one attempt
  CHECK(env.log().find("next tier") == std::string::npos);
}
