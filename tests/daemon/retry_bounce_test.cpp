// tests/daemon/retry_bounce_test.cpp — deferrals walk the tiers, permanent failures and expiry bounce
// with an RFC 3464 DSN, the null sender is never bounced.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
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

namespace {
const SinkMessage* report_for(const std::vector<SinkMessage>& msgs) {
  for (const auto& m : msgs)
    if (m.meta["from"].as_string() == "<>") return &m;
  return nullptr;
}
bool has(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}
}  // namespace

TEST_CASE("DSN requests: NOTIFY=NEVER and NOTIFY=SUCCESS without FAILURE get no bounce", "[daemon][dsn]") {
  Env env;
  env.drop("m",
           "MAIL FROM:<alice@example.com>\nRCPT TO:<perm-a@example.net> NOTIFY=NEVER\n"
           "RCPT TO:<perm-b@example.net> NOTIFY=SUCCESS,DELAY\n\nSubject: quiet\n\nbody\n");
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(env.sink().count() == 0);
  CHECK(has(env.log(), "to=<perm-a@example.net>"));
  CHECK(has(env.log(), "status=bounced (550 5.1.1"));
  CHECK_FALSE(has(env.log(), "sender notification queued"));
  CHECK(env.entries("failed").size() == 1);  // the dead letter is kept all the same
}

TEST_CASE("DSN requests: NOTIFY=SUCCESS to a server without DSN gets a relayed report", "[daemon][dsn]") {
  Env env;  // aiosmtpd does not offer DSN
  env.drop("m",
           "MAIL FROM:<alice@example.com> ENVID=env+2B42\n"
           "RCPT TO:<ok@example.net> NOTIFY=SUCCESS ORCPT=rfc822;Ok+40Example.net\n"
           "RCPT TO:<plain@example.net>\n\nSubject: tell me\n\nsecret body\n");
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  auto msgs = env.sink().messages();
  REQUIRE(count_dsn(msgs, "alice@example.com") == 1);
  const SinkMessage* r = report_for(msgs);
  REQUIRE(r);
  INFO(r->data);
  CHECK(has(r->data, "Subject: Successful Mail Delivery Report"));
  CHECK(has(r->data, "Original-Envelope-Id: env+42\r\n"));
  CHECK(has(r->data,
            "Original-Recipient: rfc822; Ok@Example.net\r\nFinal-Recipient: rfc822; ok@example.net\r\n"
            "Action: relayed\r\nStatus: 2.0.0\r\n"));
  CHECK_FALSE(has(r->data, "plain@example.net>"));  // no NOTIFY: no success report for it
  CHECK(has(r->data, "Content-Type: text/rfc822-headers"));
  CHECK_FALSE(has(r->data, "secret body"));  // a success report never returns the message
  CHECK(has(env.log(), "sender notification queued (relayed)"));
}

TEST_CASE("DSN requests: RET=FULL returns the whole message, RET=HDRS and no RET the headers",
          "[daemon][dsn]") {
  for (std::string ret : {"FULL", "HDRS", ""}) {
    INFO("RET=" << ret);
    Env env;
    env.drop("m", "MAIL FROM:<alice@example.com>" + (ret.empty() ? "" : " RET=" + ret) +
                      "\nRCPT TO:<perm-x@example.net>\n\nSubject: returned\n\nthe body line\n");
    REQUIRE(env.run_once() == 0);
    auto msgs = env.sink().messages();  // report_for points into it
    const SinkMessage* r = report_for(msgs);
    REQUIRE(r);
    INFO(r->data);
    CHECK(has(r->data, "Subject: returned"));
    if (ret == "FULL") {
      CHECK(has(r->data, "Content-Type: message/rfc822\r\n"));
      CHECK(has(r->data, "the body line"));
      CHECK(has(r->data, "It's attached below."));
    } else {
      CHECK(has(r->data, "Content-Type: text/rfc822-headers\r\n"));
      CHECK_FALSE(has(r->data, "the body line"));
      CHECK_FALSE(has(r->data, "It's attached below."));  // it used to say so with headers only
      CHECK(has(r->data, "Its header section is\r\nattached below."));
    }
  }
}

TEST_CASE("DSN requests go on to a server that offers DSN (Postfix's smtp-sink); it reports, not us",
          "[daemon][dsn]") {
  // smtp-sink offers DSN and records each transaction's MAIL and RCPT arguments in its dump.
  TempDir dump;
  REQUIRE(::chmod(dump.path().c_str(), 0777) == 0);  // smtp-sink run by root drops to nobody
  int port = free_port();
  Env env("routes:\n  - { match: [\"*\"], hosts: [\"127.0.0.1:" + std::to_string(port) + "\"] }\n", false);
  std::vector<std::string> argv{"smtp-sink", "-d", dump / "%M."};
  if (::geteuid() == 0) argv.insert(argv.end(), {"-u", "nobody"});
  argv.insert(argv.end(), {"127.0.0.1:" + std::to_string(port), "10"});
  Process sink(argv, dump / "stdout", dump / "stderr");
  REQUIRE(wait_for_port("127.0.0.1", port, 10s));
  env.drop("m",
           "MAIL FROM:<alice@example.com> RET=HDRS ENVID=env+2B42\n"
           "RCPT TO:<ok@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Ok+40Example.net\n"
           "RCPT TO:<plain@example.net>\n\nSubject: passed on\n\nbody\n");
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  std::vector<std::string> dumps;
  REQUIRE(wait_until(
      [&] {
        dumps.clear();
        for (const auto& n : list_dir(dump.path()))
          if (n != "stdout" && n != "stderr") dumps.push_back(n);
        return !dumps.empty();
      },
      10s));
  sink.stop(SIGTERM);
  REQUIRE(dumps.size() == 1);  // the message, and no "relayed" report of ours behind it
  std::string d = read_file(dump / dumps[0]);
  INFO(d);
  CHECK(has(d, "X-Mail-Args: <alice@example.com> RET=HDRS ENVID=env+2B42\n"));
  CHECK(has(d, "X-Rcpt-Args: <ok@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Ok@Example.net\n"));
  CHECK(has(d, "X-Rcpt-Args: <plain@example.net>\n"));
  CHECK(has(env.log(), "status=sent"));
  CHECK_FALSE(has(env.log(), "sender notification queued"));
}
