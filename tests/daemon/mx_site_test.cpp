// tests/daemon/mx_site_test.cpp — what a route does beyond a domain's own MX: `fallback_relay`
// when every MX host is unreachable, and session limits shared by the domains of one MX site.
// Real DNS (dnsmasq) and real SMTP servers (aiosmtpd) on loopback addresses.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <string>

#include "tests/daemon/harness.h"
#include "tests/dns/dns_fixture.h"

using namespace spoold::test;

namespace {

// Adds `text` right after the config's "delivery:\n" line.
void add_to_delivery(Env& env, const std::string& text) {
  std::string cfg = read_file(env.config_path());
  auto pos = cfg.find("delivery:\n");
  REQUIRE(pos != std::string::npos);
  cfg.insert(pos + 10, text);
  write_file(env.config_path(), cfg);
}

}  // namespace

TEST_CASE("fallback_relay takes what no MX host could take, and nothing else", "[daemon][mx][fallback]") {
  Env env("", false);
  int port = free_port();
  Sink lab(env.dir() / "lab");                           // the sender's domain (bounces)
  Sink fallback(env.dir() / "fallback");                 // the fallback relay's server
  Sink live(env.dir() / "live", {}, "127.0.0.2", port);  // live.test's MX
  spoold::dns::test::Dnsmasq dns(
      {"--mx-host=live.test,mx.live.test,10", "--host-record=mx.live.test,127.0.0.2",
       // dead.test: its MX host has no server listening.
       "--mx-host=dead.test,mx.dead.test,10", "--host-record=mx.dead.test,127.0.0.4",
       // slow.test: its DNS server never answers.
       "--server=/slow.test/127.0.0.1#" + std::to_string(free_port(true))});
  write_file(env.config_path(),
             read_file(env.config_path()) + "dns:\n  servers: [\"" + dns.server() +
                 "\"]\n  timeout: 300ms\n  tries: 1\n"
                 "relays:\n  fb:\n    servers:\n      - { host: 127.0.0.1, port: " +
                 std::to_string(fallback.port()) + ", tls: none }\n" +
                 "routes:\n  - { match: [lab.test], hosts: [\"127.0.0.1:" + std::to_string(lab.port()) +
                 "\"] }\n  - { match: [\"*.test\"], mx: true, fallback_relay: fb }\n");
  add_to_delivery(env, "  port: " + std::to_string(port) + "\n");
  env.drop("m",
           envelope_message("alice@lab.test",
                            {"x@dead.test", "y@slow.test", "z@nosuch.test", "ok@live.test", "perm@live.test"},
                            "fallback"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto log = env.log();
  // Unreachable MX and a DNS timeout: to the fallback relay, in one transaction or two.
  std::vector<std::string> got;
  for (const auto& m : fallback.messages())
    for (const auto& r : m.meta["rcpts"].as_array()) got.push_back(r.as_string());
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"x@dead.test", "y@slow.test"});
  CHECK(log.find("mx:dead.test unreachable (") != std::string::npos);
  CHECK(log.find("to fallback relay fb") != std::string::npos);
  CHECK(log.find("to=<x@dead.test>, relay=127.0.0.1[127.0.0.1]:" + std::to_string(fallback.port())) !=
        std::string::npos);
  // A domain that does not exist and a 5xx from a live MX are verdicts: bounced, never relayed.
  REQUIRE(live.count() == 1);
  CHECK(live.messages()[0].meta["rcpts"].as_array().size() == 1);
  REQUIRE(lab.count() == 1);
  auto dsn = lab.messages()[0].data;
  CHECK(dsn.find("Final-Recipient: rfc822; z@nosuch.test") != std::string::npos);
  CHECK(dsn.find("Final-Recipient: rfc822; perm@live.test") != std::string::npos);
  CHECK(env.entries("queue/1").empty());
}

TEST_CASE("a fallback relay that fails too defers with its own reason", "[daemon][mx][fallback]") {
  Env env("", false);
  int port = free_port();
  int nobody = free_port();
  spoold::dns::test::Dnsmasq dns(
      {"--mx-host=dead.test,mx.dead.test,10", "--host-record=mx.dead.test,127.0.0.4"});
  write_file(env.config_path(), read_file(env.config_path()) + "dns:\n  servers: [\"" + dns.server() +
                                    "\"]\n  timeout: 300ms\n  tries: 1\n"
                                    "relays:\n  fb:\n    servers:\n      - { host: 127.0.0.1, port: " +
                                    std::to_string(nobody) + ", tls: none }\n" +
                                    "routes:\n  - { match: [\"*.test\"], mx: true, fallback_relay: fb }\n");
  add_to_delivery(env, "  port: " + std::to_string(port) + "\n");
  env.drop("m", envelope_message("", {"x@dead.test"}, "nowhere"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto log = env.log();
  CHECK(log.find("to fallback relay fb") != std::string::npos);
  // Deferred once (not twice: the fallback's failure is the attempt's only report), by the relay.
  CHECK(env.entries("queue/1").size() == 1);
  auto first = log.find("to=<x@dead.test>");
  REQUIRE(first != std::string::npos);
  CHECK(log.find("to=<x@dead.test>", first + 1) == std::string::npos);
  CHECK(log.find("status=deferred", first) != std::string::npos);
  CHECK(log.find("127.0.0.1:" + std::to_string(nobody), first) != std::string::npos);
}

TEST_CASE("domains behind one MX site share its session limit", "[daemon][mx][site]") {
  Env env("", false);
  int port = free_port();
  // Each final dot answered 0.2 s late: mail waits, and every domain would want sessions of its own.
  Sink site(env.dir() / "site", {"--dot-delay", "0.2"}, "127.0.0.2", port);
  Sink other(env.dir() / "other", {"--dot-delay", "0.2"}, "127.0.0.3", port);
  std::vector<std::string> args{
      "--host-record=mx1.provider.test,127.0.0.2", "--host-record=mx2.provider.test,127.0.0.2",
      "--mx-host=other.test,mx.other.test,10", "--host-record=mx.other.test,127.0.0.3"};
  // Six domains hosted by one provider: the same two MX hosts, listed in different orders.
  for (int d = 0; d < 6; ++d) {
    std::string dom = "d" + std::to_string(d) + ".test";
    args.push_back("--mx-host=" + dom + (d % 2 ? ",mx1.provider.test,10" : ",mx2.provider.test,10"));
    args.push_back("--mx-host=" + dom + (d % 2 ? ",mx2.provider.test,20" : ",mx1.provider.test,20"));
  }
  spoold::dns::test::Dnsmasq dns(args);
  write_file(env.config_path(), read_file(env.config_path()) + "dns:\n  servers: [\"" + dns.server() +
                                    "\"]\n  timeout: 1s\n  tries: 2\n"
                                    "routes:\n  - { match: [\"*.test\"], mx: true }\n");
  add_to_delivery(env, "  port: " + std::to_string(port) + "\n  max_sessions_per_destination: 2\n");
  for (int d = 0; d < 6; ++d)
    for (int i = 0; i < 4; ++i)
      env.drop("m" + std::to_string(d) + "-" + std::to_string(i),
               envelope_message("a@example.com", {"r@d" + std::to_string(d) + ".test"}, std::to_string(i)));
  for (int i = 0; i < 6; ++i)
    env.drop("o" + std::to_string(i), envelope_message("a@example.com", {"r@other.test"}, std::to_string(i)));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  REQUIRE(site.count() == 24);
  CHECK(other.count() == 6);
  std::int64_t most = 0;
  for (const auto& m : site.messages()) most = std::max(most, m.meta["open"].as_int());
  CHECK(most <= 2);  // one limit for the six domains (each alone would have opened its own)
  CHECK(most >= 1);
  // Another site keeps its own limit: it is not held behind the provider's line.
  std::int64_t most_other = 0;
  for (const auto& m : other.messages()) most_other = std::max(most_other, m.meta["open"].as_int());
  CHECK(most_other >= 1);
  CHECK(most_other <= 2);
  CHECK(env.entries("queue/1").empty());
}

TEST_CASE("a big backlog at one domain does not hold its MX site from another", "[daemon][mx][site]") {
  Env env("", false);
  int port = free_port();
  Sink site(env.dir() / "site", {"--dot-delay", "0.05"}, "127.0.0.2", port);
  spoold::dns::test::Dnsmasq dns({"--host-record=mx.provider.test,127.0.0.2",
                                  "--mx-host=big.test,mx.provider.test,10",
                                  "--mx-host=small.test,mx.provider.test,10"});
  write_file(env.config_path(), read_file(env.config_path()) + "dns:\n  servers: [\"" + dns.server() +
                                    "\"]\n  timeout: 1s\n  tries: 2\n"
                                    "routes:\n  - { match: [\"*.test\"], mx: true }\n");
  add_to_delivery(env, "  port: " + std::to_string(port) + "\n  max_sessions_per_destination: 1\n");
  for (int i = 0; i < 40; ++i)
    env.drop("b" + std::to_string(100 + i),
             envelope_message("a@example.com", {"r@big.test"}, std::to_string(i)));
  env.drop("s", envelope_message("a@example.com", {"r@small.test"}, "small"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto got = site.messages();
  REQUIRE(got.size() == 41);
  size_t at = got.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i].meta["rcpts"].as_array()[0].as_string() == "r@small.test") at = i;
  CHECK(at < 20);  // taken in turn, not after the other domain's whole backlog
  std::int64_t most = 0;
  for (const auto& m : got) most = std::max(most, m.meta["open"].as_int());
  CHECK(most == 1);
}
