// tests/spool/entry_test.cpp — the queue-entry text format: exact round trips with hostile field
// contents, and every way a damaged file must be rejected rather than half-read.
#include <catch2/catch.hpp>

#include <string>

#include "spool/drop.h"
#include "spool/entry.h"

using namespace spoold::spool;
using namespace std::string_literals;

namespace {

Entry sample() {
  Entry e;
  e.id = "0655F1A2B0F4240ABCDEF00303900A1";
  e.sender = "sender@example.com";
  e.arrived = 1700000000;
  e.last_attempt = 1700000600;
  e.attempts = 2;
  e.body_offset = 77;
  e.body_size = 12345;
  e.flags.missing_date = true;
  e.flags.eight_bit = true;
  e.recipients.push_back({"a@x.org", RcptState::pending, 2, "451 4.7.1 try later", {}});
  e.recipients.push_back({"\"john doe\"@x.org", RcptState::sent, 1, "250 2.0.0 Ok: queued as 12", {}});
  e.recipients.push_back({"b@x.org", RcptState::bounced, 1, "550 5.1.1 no such user", {}});
  e.recipients.push_back({"c@x.org", RcptState::expired, 7, "", {}});
  return e;
}

}  // namespace

TEST_CASE("entry round trip", "[entry]") {
  Entry e = sample();
  auto back = parse_entry(format_entry(e));
  REQUIRE(back.ok());
  CHECK(*back == e);
}

TEST_CASE("hostile field contents cannot break a record", "[entry]") {
  Entry e = sample();
  e.sender = "";  // null sender
  e.recipients[0].last_reply = "line1\r\nrcpt sent 0 <evil@x.org> injected\nend\n\0nul %41 100%"s;
  e.reason = "expired\nrcpt sent 0 <x@y>\n";
  e.flags = EntryFlags{true, true, true, true, true};
  std::string text = format_entry(e);
  // Exactly one line per record: header 9 lines + 4 rcpts + reason + end.
  CHECK(std::count(text.begin(), text.end(), '\n') == 9 + 4 + 1 + 1);
  CHECK(text.find('\0') == std::string::npos);
  CHECK(text.find('\r') == std::string::npos);
  auto back = parse_entry(text);
  REQUIRE(back.ok());
  CHECK(*back == e);
}

TEST_CASE("over-long reply text is shortened by the writer", "[entry]") {
  Entry e = sample();
  e.recipients[0].last_reply = std::string(5000, 'r');
  auto back = parse_entry(format_entry(e));
  REQUIRE(back.ok());
  CHECK(back->recipients[0].last_reply.size() == kMaxReplyText);
}

TEST_CASE("damaged entries are rejected", "[entry]") {
  const std::string good = format_entry(sample());
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    auto pos = s.find(from);
    REQUIRE(pos != std::string::npos);
    s.replace(pos, from.size(), to);
    return s;
  };
  struct Case {
    const char* name;
    std::string text;
    const char* reason;
  };
  std::vector<Case> cases = {
      {"empty", "", "missing end"},
      {"truncated before end", good.substr(0, good.find("end\n")), "missing end"},
      {"truncated mid-line", good.substr(0, good.size() - 2), "no newline"},
      {"newer version", replace("spoold-entry 1", "spoold-entry 3"), "unsupported entry version 3"},
      {"DSN record in a version 1 entry", replace("attempts 2\n", "attempts 2\ndsn-ret FULL\n"),
       "unknown key"},
      {"not an entry", "hello\n", "not a spoold entry"},
      {"unknown key", replace("attempts 2\n", "attempts 2\nfrobnicate 1\n"), "unknown key"},
      {"over-long line",
       good.substr(0, good.find("end\n")) + "rcpt pending 0 <a@x.org> " + std::string(20000, 'z') + "\nend\n",
       "longer than"},
      {"over-long reply line", replace("451 4.7.1 try later", std::string(kMaxEntryLine + 10, 'z')),
       "longer than"},
      {"bad escape", replace("try later", "try %ZZ later"), "bad % escape"},
      {"truncated escape", replace("try later", "try later%4"), "truncated % escape"},
      {"raw control byte", replace("try later", "try\x01later"), "raw control byte"},
      {"bad number", replace("attempts 2", "attempts two"), "bad number"},
      {"unknown state", replace("rcpt pending", "rcpt maybe"), "unknown recipient state"},
      {"unknown flag", replace("flags missing-date,8bit", "flags sparkly"), "unknown flag"},
      {"address not bracketed", replace("<a@x.org>", "a@x.org"), "not in <>"},
      {"data after end", good + "id X\n", "data after end"},
      {"bad id", replace("id 0655", "id ../0655"), "bad id"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto r = parse_entry(c.text);
    REQUIRE_FALSE(r.ok());
    if (r.ok()) continue;
    INFO(r.error().message);
    CHECK(r.error().message.find(c.reason) != std::string::npos);
  }
}

TEST_CASE("entry helpers", "[entry]") {
  Entry e = sample();
  CHECK(e.pending() == 1);
  CHECK_FALSE(e.all_final());
  e.recipients[0].state = RcptState::sent;
  CHECK(e.all_final());
  CHECK(to_string(RcptState::expired) == "expired");
}

TEST_CASE("DSN requests: version 2 only when there is one, exact round trip, strict reader", "[entry][dsn]") {
  Entry plain = sample();
  CHECK(format_entry(plain).rfind("spoold-entry 1\n", 0) == 0);  // an older spoold still reads it

  Entry e = sample();
  e.dsn.ret = "HDRS";
  e.dsn.envid = "QQ 314159%+=";
  e.recipients[0].dsn.notify = "SUCCESS,DELAY";
  e.recipients[0].dsn.orcpt = "rfc822;a+b@x.org";
  e.recipients[2].dsn.notify = "NEVER";
  e.recipients[3].dsn.orcpt = "utf-8;c x@x.org";
  const std::string text = format_entry(e);
  INFO(text);
  CHECK(text.rfind("spoold-entry 2\n", 0) == 0);
  CHECK(text.find("dsn-ret HDRS\ndsn-envid QQ 314159%25+=\n") != std::string::npos);
  CHECK(
      text.find("rcpt pending 2 <a@x.org> 451 4.7.1 try later\nrcpt-dsn SUCCESS,DELAY rfc822;a+b@x.org\n") !=
      std::string::npos);
  CHECK(text.find("rcpt-dsn NEVER \n") != std::string::npos);
  CHECK(text.find("rcpt-dsn - utf-8;c x@x.org\n") != std::string::npos);
  auto back = parse_entry(text);
  REQUIRE(back.ok());
  CHECK(*back == e);

  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = text;
    auto pos = s.find(from);
    REQUIRE(pos != std::string::npos);
    s.replace(pos, from.size(), to);
    return s;
  };
  struct Case {
    const char* name;
    std::string text;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"bad RET", replace("dsn-ret HDRS", "dsn-ret SOME"), "dsn-ret"},
      {"RET twice", replace("dsn-ret HDRS\n", "dsn-ret HDRS\ndsn-ret FULL\n"), "dsn-ret"},
      {"ENVID with a control byte", replace("dsn-envid QQ", "dsn-envid Q%01Q"), "dsn-envid"},
      {"NOTIFY not canonical", replace("rcpt-dsn SUCCESS,DELAY", "rcpt-dsn DELAY,SUCCESS"), "NOTIFY"},
      {"NOTIFY unknown", replace("rcpt-dsn NEVER", "rcpt-dsn SOMETIMES"), "NOTIFY"},
      {"rcpt-dsn not after its rcpt", replace("dsn-ret HDRS\n", "dsn-ret HDRS\nrcpt-dsn NEVER \n"),
       "right after"},
      {"rcpt-dsn twice", replace("rcpt-dsn NEVER \n", "rcpt-dsn NEVER \nrcpt-dsn NEVER \n"), "right after"},
      {"empty rcpt-dsn", replace("rcpt-dsn NEVER \n", "rcpt-dsn - \n"), "empty rcpt-dsn"},
      {"ORCPT without type", replace("rfc822;a+b", ";a+b"), "ORCPT"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto r = parse_entry(c.text);
    REQUIRE_FALSE(r.ok());
    if (r.ok()) continue;
    INFO(r.error().message);
    CHECK(r.error().message.find(c.reason) != std::string::npos);
  }
}

TEST_CASE("DSN parameters of drop envelope lines", "[drop][dsn]") {
  CHECK(*canonical_notify("delay,Success") == "SUCCESS,DELAY");
  CHECK(*canonical_notify("never") == "NEVER");
  CHECK_FALSE(canonical_notify("NEVER,SUCCESS").ok());
  CHECK_FALSE(canonical_notify("SUCCESS,SUCCESS").ok());
  CHECK_FALSE(canonical_notify("").ok());
  CHECK_FALSE(canonical_notify("SUCCESS,").ok());

  const std::string drop =
      "MAIL FROM:<s@x.test> RET=hdrs ENVID=QQ+2B314159\n"
      "RCPT TO:<a@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bx@y.test\n"
      "RCPT TO:<b@y.test>\n"
      "RCPT TO:<\"odd> name\"@y.test> NOTIFY=NEVER\n"
      "RCPT TO:<a@y.test> NOTIFY=NEVER\n"  // a repeat keeps the first one's request
      "\nSubject: t\n\nhi\n";
  auto info = parse_drop(drop);
  INFO((info.ok() ? "" : info.error().message));
  REQUIRE(info.ok());
  CHECK(info->sender == "s@x.test");
  CHECK(info->dsn == MessageDsn{"HDRS", "QQ+314159"});
  REQUIRE(info->recipients.size() == 3);
  CHECK(info->recipients[2] == "\"odd> name\"@y.test");
  REQUIRE(info->recipient_dsn.size() == 3);
  CHECK(info->recipient_dsn[0] == RecipientDsn{"SUCCESS,FAILURE", "rfc822;a+x@y.test"});
  CHECK(info->recipient_dsn[1].empty());
  CHECK(info->recipient_dsn[2] == RecipientDsn{"NEVER", ""});

  // drop_envelope writes what the parser reads back.
  std::string head = drop_envelope(info->sender, info->recipients, info->dsn, info->recipient_dsn);
  CHECK(head.find("MAIL FROM:<s@x.test> RET=HDRS ENVID=QQ+2B314159\n") == 0);
  auto again = parse_drop(head + "Subject: t\n\nhi\n");
  REQUIRE(again.ok());
  CHECK(again->dsn == info->dsn);
  CHECK(again->recipient_dsn == info->recipient_dsn);
  CHECK(drop_envelope("s@x.test", {"a@y.test"}) == "MAIL FROM:<s@x.test>\nRCPT TO:<a@y.test>\n\n");

  struct Row {
    const char* envelope;
    const char* error;
  };
  const Row rows[] = {
      {"MAIL FROM:<s@x.test> RET=ALL\n", "RET must be FULL or HDRS"},
      {"MAIL FROM:<s@x.test> RET=FULL RET=HDRS\n", "RET twice"},
      {"MAIL FROM:<s@x.test> ENVID=a+2\n", "bad ENVID"},
      {"MAIL FROM:<s@x.test> ENVID=\n", "bad ENVID"},
      {"MAIL FROM:<s@x.test> SIZE=10\n", "unknown MAIL FROM parameter SIZE"},
      {"MAIL FROM:<s@x.test> RET\n", "expected KEY=VALUE"},
      {"MAIL FROM:<s@x.test>\nRCPT TO:<a@y.test> NOTIFY=NEVER,DELAY\n", "NEVER with other"},
      {"MAIL FROM:<s@x.test>\nRCPT TO:<a@y.test> ORCPT=a@y.test\n", "bad ORCPT"},
      {"MAIL FROM:<s@x.test>\nRCPT TO:<a@y.test> ORCPT=rfc822;a+0Db@y.test\n", "bad ORCPT"},
      {"MAIL FROM:<s@x.test>\nRCPT TO:<a@y.test> BOGUS=1\n", "unknown RCPT TO parameter BOGUS"},
      {"MAIL FROM:<s@x.test>\nRCPT TO:<a@y.test>x\n", "expected <address>"},
  };
  for (const auto& r : rows) {
    INFO(r.envelope);
    auto res = parse_drop(std::string(r.envelope) + "RCPT TO:<z@y.test>\n\nSubject: t\n\nhi\n");
    REQUIRE_FALSE(res.ok());
    INFO(res.error().message);
    CHECK(res.error().message.find(r.error) != std::string::npos);
  }
}

TEST_CASE("ORCPT is at most 500 characters as sent (xtext-encoded), RFC 3461 4.2", "[dsn]") {
  CHECK(valid_orcpt("rfc822;" + std::string(493, 'a')));
  CHECK_FALSE(valid_orcpt("rfc822;" + std::string(494, 'a')));
  CHECK(valid_orcpt("rfc822;" + std::string(164, '+')));        // 7 + 164 * 3 = 499
  CHECK_FALSE(valid_orcpt("rfc822;" + std::string(200, '+')));  // 200 decoded, 600 encoded
  std::string encoded;
  for (int i = 0; i < 170; ++i) encoded += "+2B";  // 170 decoded, 517 as sent
  CHECK_FALSE(parse_rcpt_params("ORCPT=rfc822;" + encoded).ok());
  CHECK(parse_rcpt_params("ORCPT=rfc822;" + encoded.substr(0, 3 * 164)).ok());
}
