// tests/reliability/hostile_dns_test.cpp — guarantee 5 for DNS, against the real spoold binary:
// a server that never answers, SERVFAIL, garbled answers, truncated UDP answers (TCP fallback),
// thousands of MX records, and an MX that points back to us. Each hostile domain must be deferred
// or bounced as docs/design.md says, within a bounded time, while mail that needs no DNS keeps flowing.
// Rule: the hostile servers are real sockets on loopback (tests/dns/responder.py, a UDP socket
// nobody reads, dnsmasq with odd records); every wait is bounded.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <thread>

#include "tests/dns/dns_fixture.h"
#include "tests/reliability/rel_util.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

// A spool whose MX lookups go to `dns_server`; good.test is routed statically to `lab` (an IP
// literal: no DNS query), and MX hosts are contacted on `port`, where `mx` listens on 127.0.0.2.
struct DnsWorld {
  Env env{"", false};
  int port = free_port();
  Sink lab{env.dir() / "lab"};
  Sink mx{env.dir() / "mx", {}, "127.0.0.2", port};

  // `timeout` is dns.timeout: short where the server is hostile, longer where it must answer (a
  // 63 KB answer takes a while to parse in a sanitizer build).
  explicit DnsWorld(const std::string& dns_server, const std::string& timeout = "300ms") {
    std::string cfg = read_file(env.config_path());
    cfg.insert(cfg.find("delivery:\n") + 10, fmt::format("  port: {}\n", port));
    cfg += fmt::format(
        "dns:\n  servers: [\"{}\"]\n  timeout: {}\n  tries: 2\n"
        "routes:\n  - {{ match: [\"good.test\"], hosts: [\"127.0.0.1:{}\"] }}\n"
        "  - {{ match: [\"*.test\"], mx: true }}\n",
        dns_server, timeout, lab.port());
    write_file(env.config_path(), cfg);
  }

  void drop_good(int n) {
    for (int i = 0; i < n; ++i)
      env.drop(fmt::format("good{}", i),
               rel::message(fmt::format("good{}@dns.test", i), "alice@good.test", {"bob@good.test"}));
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("a DNS server that never answers, answers SERVFAIL or garbage: deferred, other mail flows",
          "[hostile][dns]") {
  spoold::dns::test::BlackHole silent;
  spoold::dns::test::Responder servfail("servfail"), garbled("garbled");
  struct Case {
    const char* what;
    std::string server;
  };
  for (const auto& c : {Case{"never answers", silent.server()}, Case{"SERVFAIL", servfail.server()},
                        Case{"garbled answer", garbled.server()}}) {
    DYNAMIC_SECTION(c.what) {
      DnsWorld w(c.server);
      w.env.drop("hostile", rel::message("hostile@dns.test", "alice@good.test", {"x@hostile.test"}));
      w.drop_good(3);
      auto t0 = std::chrono::steady_clock::now();
      int st = w.env.run_once(30s);
      double took = seconds_since(t0);
      auto log = w.env.log();
      INFO(log);
      REQUIRE(st == 0);
      CHECK(took < 10);  // 2 tries x 300 ms per query, not a hang
      CHECK(w.lab.count() == 3);
      CHECK(log.find("to=<x@hostile.test>, relay=none") != std::string::npos);
      CHECK(log.find("dsn=4.4.3, status=deferred") != std::string::npos);
      CHECK(w.env.entries("queue/1").size() == 1);  // kept for the next tier, not bounced
      CHECK(w.mx.count() == 0);
    }
  }
}

TEST_CASE("a running daemon keeps delivering while a lookup hangs, then defers it", "[hostile][dns]") {
  spoold::dns::test::BlackHole silent;
  DnsWorld w(silent.server());
  std::string cfg = read_file(w.env.config_path());
  cfg.replace(cfg.find("timeout: 300ms"), 14, "timeout: 2s");  // 2 tries x 2 s: a long hang
  write_file(w.env.config_path(), cfg);
  w.env.start();
  w.env.drop("hostile", rel::message("hostile@dns.test", "alice@good.test", {"x@hostile.test"}));
  auto t0 = std::chrono::steady_clock::now();
  w.drop_good(5);
  REQUIRE(w.lab.wait_count(5, 3s));
  double good_after = seconds_since(t0);
  CHECK(good_after < 2.5);  // well before the lookup gives up
  // Then the hostile message is deferred (bounded: 2 tries x 2 s, plus a scan).
  bool deferred = false;
  for (int i = 0; i < 100 && !deferred; ++i) {
    deferred = w.env.entries("queue/1").size() == 1 || w.env.entries("queue/2").size() == 1;
    if (!deferred) std::this_thread::sleep_for(100ms);
  }
  INFO(w.env.log());
  CHECK(deferred);
  CHECK(w.env.stop() == 0);
  CHECK(w.env.log().find("to=<x@hostile.test>, relay=none") != std::string::npos);
}

TEST_CASE("truncated answers fall back to TCP; thousands of MX records do not hang or explode",
          "[hostile][dns]") {
  std::vector<std::string> args;
  // big.test: 40 MX hosts with long names, too big for a 512-byte UDP answer (TC → TCP).
  for (int i = 1; i <= 40; ++i) {
    std::string host = fmt::format("mx{}.a-rather-long-label-to-fill-the-packet.big.test", i);
    args.push_back(fmt::format("--mx-host=big.test,{},{}", host, i));
    args.push_back(fmt::format("--host-record={},{}", host, i == 1 ? "127.0.0.2" : "127.0.0.9"));
  }
  // huge.test: 2,000 MX records; only the most preferred one works, most have no address at all.
  for (int i = 1; i <= 2000; ++i) args.push_back(fmt::format("--mx-host=huge.test,mx{}.huge.test,{}", i, i));
  args.push_back("--host-record=mx1.huge.test,127.0.0.2");
  spoold::dns::test::Dnsmasq dns(args);
  DnsWorld w(dns.server(), "3s");
  w.env.drop("big", rel::message("big@dns.test", "alice@good.test", {"a@big.test"}));
  w.env.drop("huge", rel::message("huge@dns.test", "alice@good.test", {"a@huge.test"}));
  w.drop_good(2);
  auto t0 = std::chrono::steady_clock::now();
  int st = w.env.run_once(60s);
  double took = seconds_since(t0);
  auto log = w.env.log();
  INFO(log);
  REQUIRE(st == 0);
  CHECK(took < 15);
  auto counts = rel::message_id_counts(w.mx);
  CHECK(counts["big@dns.test"] == 1);
  CHECK(counts["huge@dns.test"] == 1);
  CHECK(w.lab.count() == 2);
  CHECK(log.find("to=<a@big.test>, relay=mx1.a-rather-long-label-to-fill-the-packet.big.test[127.0.0.2]") !=
        std::string::npos);
  CHECK(log.find("to=<a@huge.test>, relay=mx1.huge.test[127.0.0.2]") != std::string::npos);
  CHECK(rel::leftovers(w.env.spool()).empty());
}

TEST_CASE("an MX pointing back to us bounces (mail loop); a domain that is its own MX is delivered",
          "[hostile][dns]") {
  // spoold.test is the daemon's hostname (the harness's base config).
  spoold::dns::test::Dnsmasq dns({"--mx-host=loop.test,spoold.test,10", "--host-record=spoold.test,127.0.0.2",
                                  "--mx-host=loop2.test,mx.loop2.test,20",
                                  "--mx-host=loop2.test,SPOOLD.test.,5",
                                  "--host-record=mx.loop2.test,127.0.0.2", "--mx-host=self.test,self.test,10",
                                  "--host-record=self.test,127.0.0.2"});
  DnsWorld w(dns.server());
  w.env.drop("loop", rel::message("loop@dns.test", "alice@good.test", {"a@loop.test", "b@loop2.test"}));
  w.env.drop("self", rel::message("self@dns.test", "alice@good.test", {"a@self.test"}));
  REQUIRE(w.env.run_once(30s) == 0);
  auto log = w.env.log();
  INFO(log);
  auto counts = rel::message_id_counts(w.mx);
  CHECK(counts["self@dns.test"] == 1);
  CHECK(counts["loop@dns.test"] == 0);  // never sent to ourselves, nor to a less preferred host
  CHECK(log.find("to=<a@loop.test>, relay=none") != std::string::npos);
  CHECK(log.find("to=<b@loop2.test>, relay=none") != std::string::npos);
  CHECK(log.find("status=bounced (MX loops back to us") != std::string::npos);
  // One DSN to the sender names both recipients.
  REQUIRE(w.lab.count() == 1);
  auto dsn = w.lab.messages()[0].data;
  CHECK(dsn.find("Final-Recipient: rfc822; a@loop.test") != std::string::npos);
  CHECK(dsn.find("Final-Recipient: rfc822; b@loop2.test") != std::string::npos);
  CHECK(rel::leftovers(w.env.spool()).empty());
}
