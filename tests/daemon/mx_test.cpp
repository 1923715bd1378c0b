// tests/daemon/mx_test.cpp — delivery by MX through a real DNS server (dnsmasq) to real SMTP servers
// on several loopback addresses: mixed next hops in one message, MX fallback, and the DNS answers
// that bounce (NXDOMAIN, null MX) or defer (no answer).
#include <catch2/catch.hpp>

#include "tests/daemon/harness.h"
#include "tests/dns/dns_fixture.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

struct MxWorld {
  Env env;
  int port = free_port();
  Sink lab;  // static route for lab.test (also where bounces to @lab.test senders go)
  Sink mx2, mx3;
  spoold::dns::test::Dnsmasq dns;

  MxWorld()
      : env("", false),
        lab(env.dir() / "lab"),
        mx2(env.dir() / "mx2", {}, "127.0.0.2", port),
        mx3(env.dir() / "mx3", {}, "127.0.0.3", port),
        dns({"--mx-host=a.test,mx1.a.test,10", "--host-record=mx1.a.test,127.0.0.2",
             "--mx-host=b.test,mx.b.test,10", "--host-record=mx.b.test,127.0.0.3",
             // c.test: the preferred MX has no server listening; the second one works.
             "--mx-host=c.test,dead.c.test,10", "--host-record=dead.c.test,127.0.0.4",
             "--mx-host=c.test,mx1.a.test,20", "--mx-host=null.test,.,0",
             // share1/share2.test: other domains behind a.test's MX host (connection reuse).
             "--mx-host=share1.test,mx1.a.test,10", "--mx-host=share2.test,mx1.a.test,10",
             // slow.test is forwarded to a server that never answers: a DNS timeout.
             "--server=/slow.test/127.0.0.1#" + std::to_string(free_port(true))}) {
    write_file(env.config_path(), read_file(env.config_path()) + "dns:\n  servers: [\"" + dns.server() +
                                      "\"]\n  timeout: 300ms\n  tries: 1\n"
                                      "routes:\n  - { match: [\"lab.test\"], hosts: [\"127.0.0.1:" +
                                      std::to_string(lab.port()) +
                                      "\"] }\n"
                                      "  - { match: [\"*.test\"], mx: true }\n");
    // delivery.port is where MX hosts are contacted; the base config has no delivery section
    // with a port, so add one.
    std::string cfg = read_file(env.config_path());
    auto pos = cfg.find("delivery:\n");
    cfg.insert(pos + 10, "  port: " + std::to_string(port) + "\n");
    write_file(env.config_path(), cfg);
  }
};

}  // namespace

TEST_CASE("one message to several domains goes to each domain's MX", "[daemon][mx]") {
  MxWorld w;
  w.env.drop("m",
             envelope_message("alice@lab.test", {"x@a.test", "y@b.test", "z@lab.test", "w@c.test"}, "mixed"));
  REQUIRE(w.env.run_once() == 0);
  INFO(w.env.log());
  CHECK(w.mx2.count() == 2);  // a.test, and c.test by its second MX
  CHECK(w.mx3.count() == 1);
  CHECK(w.lab.count() == 1);
  CHECK(w.env.entries("queue/0").empty());
  CHECK(w.env.entries("queue/1").empty());
  CHECK(w.env.log().find("to=<y@b.test>, relay=mx.b.test[127.0.0.3]:") != std::string::npos);
  CHECK(w.env.log().find("to=<w@c.test>, relay=mx1.a.test[127.0.0.2]:") != std::string::npos);
}

TEST_CASE("NXDOMAIN and null MX bounce at once; a DNS timeout defers", "[daemon][mx]") {
  MxWorld w;
  w.env.drop("m", envelope_message("alice@lab.test", {"a@nosuch.test", "b@null.test", "c@slow.test"}, "dns"));
  REQUIRE(w.env.run_once() == 0);
  INFO(w.env.log());
  auto log = w.env.log();
  CHECK(log.find("to=<a@nosuch.test>, relay=none") != std::string::npos);
  CHECK(log.find("to=<c@slow.test>, relay=none") != std::string::npos);
  CHECK(log.find("status=deferred") != std::string::npos);
  // One DSN for the two permanent failures, to the sender.
  REQUIRE(w.lab.count() == 1);
  auto dsn = w.lab.messages()[0].data;
  CHECK(dsn.find("Final-Recipient: rfc822; a@nosuch.test") != std::string::npos);
  CHECK(dsn.find("Final-Recipient: rfc822; b@null.test") != std::string::npos);
  CHECK(dsn.find("c@slow.test") == std::string::npos);
  CHECK(w.env.entries("queue/1").size() == 1);  // c@slow.test is retried
}

// Postfix-style connection reuse: with a single session slot, mail for three domains behind one MX
// host goes over one connection — an idle connection is handed to the destination waiting for the
// same server instead of being closed and a new one opened.
TEST_CASE("an idle connection is handed to another domain behind the same MX host", "[daemon][mx]") {
  MxWorld w;
  std::string cfg = read_file(w.env.config_path());
  cfg.insert(cfg.find("delivery:\n") + 10, "  max_sessions: 1\n  max_sessions_per_destination: 1\n");
  write_file(w.env.config_path(), cfg);
  const char* domains[] = {"a.test", "share1.test", "share2.test"};
  for (int i = 0; i < 6; ++i)
    w.env.drop("m" + std::to_string(i),
               envelope_message("alice@lab.test", {std::string("u@") + domains[i % 3]},
                                "reuse " + std::to_string(i)));
  REQUIRE(w.env.run_once() == 0);
  INFO(w.env.log());
  CHECK(w.mx2.count() == 6);
  CHECK(w.mx2.sessions() == 1);
  CHECK(w.env.log().find("to=<u@share1.test>, relay=mx1.a.test[127.0.0.2]:") != std::string::npos);
}
