// tests/reliability/hostile_smtp_test.cpp — guarantee 5 (and 4) against hostile SMTP servers: a
// scripted server on loopback per behaviour (hostile_smtp.py). Each time: the message to the
// hostile host is deferred (never lost, never reported sent when it was not), the per-command
// timeout fires at its configured value and the session is torn down, the daemon's memory stays
// bounded, and mail to a second, good destination keeps flowing meanwhile.
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <sstream>
#include <thread>

#include "tests/reliability/rel_util.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

// Distinct timeouts per command, so a test can tell which one fired.
const char* kTimeouts =
    "  timeouts: { connect: 2s, greeting: 1500ms, ehlo: 2s, mail: 2500ms, rcpt: 3s, data: 3500ms, block: 3s, "
    "dot: 4s }\n";

std::string config(const std::string& extra = "") {
  return "queue:\n  scan_interval: 200ms\n  lock_stale_after: 5s\n  tiers:\n"
         "    - { delay: 0, priority: 1 }\n    - { delay: 30s, priority: 1 }\n    - { delay: 60s, priority: "
         "1 }\n"
         "delivery:\n  idle_timeout: 1s\n  tls: opportunistic\n" +
         std::string(kTimeouts) + extra;
}

// The first time (unix seconds) an event appears in a hostile server log, -1 if never.
double event_time(const std::string& log, const std::string& event, const std::string& detail = "",
                  double after = 0) {
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    double t;
    std::string ev, rest;
    f >> t >> ev;
    std::getline(f, rest);
    if (ev == event && t >= after && rest.find(detail) != std::string::npos) return t;
  }
  return -1;
}

struct Run {
  std::string log;
  long rss_max_kib = 0, rss_start_kib = 0;
  size_t good_delivered = 0;
  double good_done_at = 0;  // when the last good message reached the sink
};

// Starts spoold, drops one message to the hostile host and then kGood to the good sink, waits until
// the hostile message has a logged outcome (bounded), sampling the daemon's RSS all along.
constexpr int kGood = 5;
Run run(Env& env, std::chrono::seconds limit = 30s, const std::string& hostile_rcpt = "victim@bad.test") {
  Run r;
  env.start();
  env.drop("hostile", rel::message("hostile@rel.test", "sender@ok.test", {hostile_rcpt}));
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < kGood; ++i)
    env.drop("good" + std::to_string(i),
             rel::message("good" + std::to_string(i) + "@rel.test", "sender@ok.test", {"good@ok.test"}));
  int pid = rel::find_pid(env.config_path());
  r.rss_start_kib = rel::rss_kib(pid);
  auto deadline = std::chrono::steady_clock::now() + limit;
  std::string needle = "to=<" + hostile_rcpt + ">";
  while (std::chrono::steady_clock::now() < deadline) {
    r.rss_max_kib = std::max(r.rss_max_kib, rel::rss_kib(pid));
    r.log = env.log();
    if (r.log.find(needle) != std::string::npos && env.sink().count() >= static_cast<size_t>(kGood)) break;
    std::this_thread::sleep_for(50ms);
  }
  r.log = env.log();
  r.good_delivered = env.sink().count();
  auto times = rel::arrival_times(env.dir() / "sink");
  for (const auto& [id, t] : times) r.good_done_at = std::max(r.good_done_at, t);
  return r;
}

}  // namespace

TEST_CASE("hostile SMTP servers: deferred, timed out on time, bounded, others keep flowing",
          "[hostile][smtp]") {
  struct Case {
    const char* mode;
    const char* stalled_cmd;  // what the server stops answering ("" = no stall)
    double timeout_s;         // the configured timeout that must fire (0 = none)
  };
  const Case cases[] = {
      {"silent", "", 1.5},         {"stall:EHLO", "EHLO", 2.0},
      {"stall:MAIL", "MAIL", 2.5}, {"stall:RCPT", "RCPT", 3.0},
      {"stall:DATA", "DATA", 3.5}, {"stall:DOT", "DOT", 4.0},
      {"reset_in_data", "", 0},    {"421_after_rcpt", "", 0},
      {"garbage", "", 0},          {"nul", "", 0},
      {"long_line", "", 0},        {"endless_multiline", "", 0},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.mode) {
      TempDir tmp;
      // On 127.0.0.2, apart from the good sink on 127.0.0.1.
      rel::HostileServer server(tmp, c.mode, {}, "127.0.0.2");
      Env env(config());
      rel::route_domain(env, "bad.test", server.port(), "127.0.0.2");
      Run r = run(env);
      std::string events = server.log();
      INFO("mode " << c.mode << "\nserver events:\n" << events.substr(0, 4000) << "\nspoold:\n" << r.log);
      // The hostile message: deferred with a reason, still queued (now in tier 1), nothing lost.
      CHECK(r.log.find("to=<victim@bad.test>") != std::string::npos);
      CHECK(r.log.find("status=deferred") != std::string::npos);
      CHECK(r.log.find("to=<victim@bad.test>, relay=") != std::string::npos);
      CHECK(r.log.find("status=sent (250 2.0.0 accepted") == std::string::npos);
      // Memory stayed bounded (a million-line reply or a 100 KB line is not buffered whole).
      CHECK(r.rss_start_kib > 0);
      CHECK(r.rss_max_kib < r.rss_start_kib + 16 * 1024);
      // Other destinations kept flowing.
      CHECK(r.good_delivered == static_cast<size_t>(kGood));
      REQUIRE(env.stop() == 0);
      CHECK(env.entries("queue/1").size() == 1);
      CHECK(env.entries("failed").empty());
      CHECK(env.entries("queue/0").empty());
      if (c.timeout_s > 0) {
        // Timeout fired at its configured value, measured from the stalled command (or the connect).
        // The first connect/disconnect pair is the harness's port probe; the daemon's session follows.
        double probe_gone = event_time(events, "disconnect");
        double from = *c.stalled_cmd ? event_time(events, "stall", c.stalled_cmd)
                                     : event_time(events, "connect", "", probe_gone + 0.0005);
        double to = event_time(events, "disconnect", "", from);
        REQUIRE(from > 0);
        REQUIRE(to > 0);
        CHECK(to - from >= c.timeout_s - 0.2);
        CHECK(to - from <= c.timeout_s + 1.5);
        // The good mail did not wait for the stalled session.
        CHECK(r.good_done_at < to);
      }
    }
  }
}

// A server that fails at the protocol level is remembered by address *and port*: another server on
// the same IP (a submission relay next to port 25, two sinks on one host) keeps working. (This was
// a bug: the memory was keyed by IP alone.)
TEST_CASE("a protocol error from one server does not block another server on the same IP",
          "[hostile][smtp]") {
  TempDir tmp;
  rel::HostileServer server(tmp, "garbage");  // 127.0.0.1, like the good sink
  Env env(config());
  rel::route_domain(env, "bad.test", server.port());
  Run r = run(env, 8s);
  INFO(r.log);
  CHECK(r.log.find("to=<victim@bad.test>") != std::string::npos);
  CHECK(r.good_delivered == static_cast<size_t>(kGood));
  CHECK(r.log.find("no usable next-hop address") == std::string::npos);
}

// Plaintext injected after the STARTTLS 220, a certificate that fails `verify`, and an AUTH
// failure at a relay: never "sent" on the strength of the bad exchange, deferred or bounced with a
// logged reason, nothing lost, and the good destination keeps flowing.
TEST_CASE("STARTTLS injection, bad certificate, AUTH failure", "[hostile][smtp][tls]") {
  TempDir tmp;
  make_certificate(tmp.path());
  SECTION("plaintext injected after STARTTLS 220") {
    rel::HostileServer server(tmp, "starttls_inject",
                              {"--tls-cert", tmp / "cert.pem", "--tls-key", tmp / "key.pem"}, "127.0.0.2");
    Env env(config());
    rel::route_domain(env, "bad.test", server.port(), "127.0.0.2");
    Run r = run(env);
    INFO(r.log << "\nserver:\n" << server.log());
    CHECK(r.log.find("to=<victim@bad.test>") != std::string::npos);
    // Either the session was dropped (deferred) or the injected line was discarded and the real
    // post-TLS EHLO answer used; the injected "250" must never be taken as the EHLO reply.
    bool sent = r.log.find("to=<victim@bad.test>, relay=127.0.0.2") != std::string::npos &&
                r.log.find("status=sent (250 2.0.0 accepted") != std::string::npos;
    bool deferred = env.entries("queue/1").size() == 1;
    CHECK((sent || deferred));
    if (sent) CHECK(server.count("tls") == 1);  // what was accepted was accepted over TLS
    CHECK(r.good_delivered == static_cast<size_t>(kGood));
  }
  SECTION("a self-signed certificate with a verifying relay") {
    Sink tls_sink(tmp / "tls-sink", {"--tls-cert", tmp / "cert.pem", "--tls-key", tmp / "key.pem"},
                  "127.0.0.2");
    Env env(config("relays:\n  strict:\n    servers:\n      - { host: 127.0.0.2, port: " +
                   std::to_string(tls_sink.port()) + ", tls: starttls, verify: true }\n"));
    std::string yaml = read_file(env.config_path());
    yaml.insert(yaml.find("routes:\n") + 8, "  - { match: [\"bad.test\"], relay: strict }\n");
    write_file(env.config_path(), yaml);
    Run r = run(env);
    INFO(r.log);
    CHECK(r.log.find("to=<victim@bad.test>") != std::string::npos);
    CHECK(tls_sink.count() == 0);  // nothing handed to a server that failed verification
    CHECK(env.entries("queue/1").size() + env.entries("failed").size() == 1);
    CHECK(r.good_delivered == static_cast<size_t>(kGood));
  }
  SECTION("AUTH rejected by the relay") {
    rel::HostileServer server(tmp, "auth_fail", {}, "127.0.0.2");
    write_file(tmp / "pw", "secret\n");
    Env env(config("relays:\n  authrelay:\n    servers:\n      - { host: 127.0.0.2, port: " +
                   std::to_string(server.port()) +
                   ", tls: none, auth: { user: u, password_file: " + (tmp / "pw") + " } }\n"));
    std::string yaml = read_file(env.config_path());
    yaml.insert(yaml.find("routes:\n") + 8, "  - { match: [\"bad.test\"], relay: authrelay }\n");
    write_file(env.config_path(), yaml);
    Run r = run(env);
    INFO(r.log << "\nserver:\n" << server.log());
    CHECK(r.log.find("to=<victim@bad.test>") != std::string::npos);
    CHECK(server.count("accepted") == 0);
    CHECK(env.entries("queue/1").size() + env.entries("failed").size() == 1);
    CHECK(r.good_delivered == static_cast<size_t>(kGood));
  }
}

// A server that stalls inside a transaction is skipped for the rest of the queue: with 12 messages
// and 4 sessions, the first 4 wait out the data timeout together and the other 8 are deferred at
// once — not 3 waves of 4, each waiting the same timeout (found by the valgrind run: 10 messages
// took 6 minutes with the default 2 min data timeout).
TEST_CASE("a server that times out mid-transaction is skipped; the rest of its queue is deferred at once",
          "[hostile][smtp]") {
  TempDir tmp;
  rel::HostileServer server(tmp, "stall:DATA", {}, "127.0.0.2");
  Env env(config());
  rel::route_domain(env, "bad.test", server.port(), "127.0.0.2");
  constexpr int kStalled = 12;
  for (int i = 0; i < kStalled; ++i)
    env.drop("m" + std::to_string(i),
             rel::message("m" + std::to_string(i) + "@stall.test", "sender@ok.test", {"victim@bad.test"}));
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(env.run_once(60s) == 0);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string log = env.log();
  INFO(log << "\nserver:\n" << server.log().substr(0, 3000));
  CHECK(took < 2 * 3.5);               // one data timeout (3.5 s), not three
  CHECK(server.count("stall") <= 4u);  // at most one wave of sessions reached DATA
  CHECK(env.entries("queue/1").size() == static_cast<size_t>(kStalled));  // all deferred, none lost
  CHECK(log.find("session failed (try 1 of 1)") != std::string::npos);
}

// A second SIGTERM cuts a session stalled inside a transaction at once (the first one lets running
// transactions finish, up to the stop grace period): spoold exits 0 within seconds, not after the
// data timeout, and the message stays queued. (A bug: the abort sent QUIT "after the running
// transaction", so neither the grace period nor a second signal ended a stalled session.)
TEST_CASE("a second SIGTERM aborts a stalled transaction; the message stays queued", "[hostile][smtp]") {
  TempDir tmp;
  rel::HostileServer server(tmp, "stall:DATA", {}, "127.0.0.2");
  Env env(config("").replace(config("").find("data: 3500ms"), 12, "data: 60s"));
  rel::route_domain(env, "bad.test", server.port(), "127.0.0.2");
  env.start();
  env.drop("stalled", rel::message("stalled@stop.test", "sender@ok.test", {"victim@bad.test"}));
  for (int i = 0; i < 100 && server.count("stall") == 0; ++i) std::this_thread::sleep_for(50ms);
  REQUIRE(server.count("stall") == 1);
  env.signal(SIGTERM);
  std::this_thread::sleep_for(500ms);
  auto t0 = std::chrono::steady_clock::now();
  env.signal(SIGTERM);
  int st = env.stop(0);  // wait only
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(env.log());
  CHECK(st == 0);
  CHECK(took < 5);  // not the 60 s data timeout
  size_t queued = 0;
  for (int t = 0; t < 3; ++t) queued += env.entries("queue/" + std::to_string(t)).size();
  CHECK(queued + env.entries("incoming").size() == 1);  // never lost
  CHECK(env.log().find("stop grace period over") != std::string::npos);
}

// docs/design.md: relay=none only when no connection was made. A server that accepted the connection
// and then never greeted is named in the deferral.
TEST_CASE("a failure after the connection was made names the server, not relay=none", "[hostile][smtp]") {
  TempDir tmp;
  rel::HostileServer server(tmp, "silent", {}, "127.0.0.2");
  Env env(config());
  rel::route_domain(env, "bad.test", server.port(), "127.0.0.2");
  env.drop("m", rel::message("silent@relay.test", "sender@ok.test", {"victim@bad.test"}));
  REQUIRE(env.run_once(30s) == 0);
  INFO(env.log());
  CHECK(env.log().find("to=<victim@bad.test>, relay=127.0.0.2[127.0.0.2]:" + std::to_string(server.port())) !=
        std::string::npos);
  CHECK(env.log().find("to=<victim@bad.test>, relay=none") == std::string::npos);
}
