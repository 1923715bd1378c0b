// tests/daemon/rewrite_test.cpp — sender rewriting end to end: the MAIL FROM and the From: that
// real aiosmtpd servers receive under the global `rewrite`, a route's and a relay server's.
#include <catch2/catch.hpp>

#include <map>

#include "tests/daemon/harness.h"

using namespace spoold::test;

namespace {

// The messages a sink got, by Subject.
std::map<std::string, SinkMessage> by_subject(const Sink& sink) {
  std::map<std::string, SinkMessage> out;
  for (auto& m : sink.messages()) {
    auto at = m.data.find("Subject: ");
    REQUIRE(at != std::string::npos);
    auto end = m.data.find_first_of("\r\n", at);
    out[m.data.substr(at + 9, end - at - 9)] = m;
  }
  return out;
}

std::string header_from(const std::string& data) {
  auto at = data.find("\nFrom: ");
  if (data.rfind("From: ", 0) == 0)
    at = 0;
  else if (at != std::string::npos)
    ++at;
  REQUIRE(at != std::string::npos);
  return data.substr(at, data.find_first_of("\r\n", at) - at);
}

}  // namespace

TEST_CASE("the envelope sender and From: are rewritten per route and relay server", "[daemon][rewrite]") {
  Env env("", false);
  Sink hosts(env.dir() / "hosts"), relay(env.dir() / "relay");
  std::string h = std::to_string(hosts.port());
  write_file(env.config_path(), read_file(env.config_path()) +
                                    "rewrite: { masquerade_domains: [example.com] }\n"
                                    "relays:\n  corp:\n    servers:\n"
                                    "      - { host: 127.0.0.1, port: " +
                                    std::to_string(relay.port()) +
                                    ", tls: none, rewrite: { envelope_from: relay-bounces@example.com } }\n"
                                    "routes:\n"
                                    "  - { match: [partner.example], relay: corp }\n"
                                    "  - { match: [lab.test], hosts: [\"127.0.0.1:" +
                                    h +
                                    "\"], rewrite: { envelope_from: lab@example.com } }\n"
                                    "  - { match: [keep.test], hosts: [\"127.0.0.1:" +
                                    h +
                                    "\"], rewrite: { masquerade_domains: [] } }\n"
                                    "  - { match: [\"*\"], hosts: [\"127.0.0.1:" +
                                    h + "\"] }\n");
  const std::string cron = "cron@host.example.com";
  env.drop("global", envelope_message(cron, {"a@other.example"}, "global", "From: cron@host.example.com\n"));
  env.drop("route", envelope_message(cron, {"b@lab.test"}, "route"));
  env.drop("off", envelope_message(cron, {"c@keep.test"}, "off"));
  env.drop("relay", envelope_message(cron, {"d@partner.example"}, "relay"));
  env.drop("bounce", envelope_message("", {"e@other.example"}, "bounce"));
  env.drop("split", envelope_message(cron, {"f@other.example", "g@lab.test", "h@other.example"}, "split"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  REQUIRE(hosts.count() == 6);  // "split" is two transactions: one MAIL FROM each
  REQUIRE(relay.count() == 1);
  auto got = by_subject(hosts);

  CHECK(got["global"].meta["from"].as_string() == "cron@example.com");
  CHECK(header_from(got["global"].data) == "From: <cron@example.com>");
  CHECK(got["global"].data.find("\r\n\r\nFrom: cron@host.example.com") !=
        std::string::npos);  // the body is not

  CHECK(got["route"].meta["from"].as_string() == "lab@example.com");    // never masqueraded
  CHECK(header_from(got["route"].data) == "From: <cron@example.com>");  // the global masquerade

  CHECK(got["off"].meta["from"].as_string() == cron);
  CHECK(header_from(got["off"].data) == "From: <cron@host.example.com>");

  CHECK(got["bounce"].meta["from"].as_string() == "<>");  // the null sender stays null
  CHECK(header_from(got["bounce"].data) == "From: <mailer-daemon@spoold.test>");

  auto r = by_subject(relay);
  CHECK(r["relay"].meta["from"].as_string() == "relay-bounces@example.com");
  CHECK(header_from(r["relay"].data) == "From: <cron@example.com>");

  std::map<std::string, std::size_t> split;  // MAIL FROM -> recipients
  for (const auto& m : hosts.messages())
    if (m.data.find("Subject: split") != std::string::npos)
      split[m.meta["from"].as_string()] += m.meta["rcpts"].as_array().size();
  CHECK(split == std::map<std::string, std::size_t>{{"cron@example.com", 2}, {"lab@example.com", 1}});
  CHECK(env.entries("failed").empty());
  // The spool kept what was submitted: a bounce would go to the stored sender (DESIGN "rewrite").
  CHECK(env.log().find("from=<cron@host.example.com>") != std::string::npos);
}
