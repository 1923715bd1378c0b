// tests/spool/entry_test.cpp — the queue-entry text format: exact round trips with hostile field
// contents, and every way a damaged file must be rejected rather than half-read.
#include <catch2/catch.hpp>

#include <string>

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
  e.recipients.push_back({"a@x.org", RcptState::pending, 2, "451 4.7.1 try later"});
  e.recipients.push_back({"\"john doe\"@x.org", RcptState::sent, 1, "250 2.0.0 Ok: queued as 12"});
  e.recipients.push_back({"b@x.org", RcptState::bounced, 1, "550 5.1.1 no such user"});
  e.recipients.push_back({"c@x.org", RcptState::expired, 7, ""});
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
      {"newer version", replace("spoold-entry 1", "spoold-entry 2"), "unsupported entry version 2"},
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
