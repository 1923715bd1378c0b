// tests/spool/drop_test.cpp — the drop-file parser and address rules, table-driven: every
// accepted format with what it must yield, every rejected input with the reason it must name,
// and the same inputs fed in small chunks (the parser streams) with identical results.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "common/ascii.h"
#include "spool/drop.h"
#include "tests/support/hostile_headers.h"

using namespace spoold::spool;
using namespace std::string_literals;

namespace {

struct Good {
  const char* name;
  std::string input;
  DropFormat format;
  std::string sender;
  std::vector<std::string> rcpts;
  uint64_t body_offset;
  bool missing_date, missing_mid, eight_bit, bcc;
};

const std::string kEnv = "MAIL FROM:<a@example.com>\nRCPT TO:<b@example.org>\nRCPT TO:<c@example.org>\n\n";

std::vector<Good> good_cases() {
  return {
      {"envelope-first LF",
       kEnv + "Subject: hi\n\nbody\n",
       DropFormat::envelope_first,
       "a@example.com",
       {"b@example.org", "c@example.org"},
       kEnv.size(),
       true,
       true,
       false,
       false},
      {"envelope-first with UTF-8 addresses (RFC 6531)",
       "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc"
       "cher.example>\nRCPT TO:<\xe5\xbc\xa0@\xe4\xbe\x8b.example>\n\nSubject: x\n\nb\n",
       DropFormat::envelope_first,
       "j\xc3\xb6rg@b\xc3\xbc"
       "cher.example",
       {"\xe5\xbc\xa0@\xe4\xbe\x8b.example"},
       61,
       true,
       true,
       false,
       false},
      {"envelope-first CRLF null sender",
       "mail from: <>\r\nRCPT TO:<x@y.org>\r\n\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: "
       "<1@y>\r\n\r\nb\r\n",
       DropFormat::envelope_first,
       "",
       {"x@y.org"},
       36,
       false,
       false,
       false,
       false},
      {"envelope-first keeps header To out of the envelope",
       kEnv + "To: z@z.org\nBcc: q@q.org\n\nx\n",
       DropFormat::envelope_first,
       "a@example.com",
       {"b@example.org", "c@example.org"},
       kEnv.size(),
       true,
       true,
       false,
       true},
      {"bare with display names, comments, Bcc",
       "From: Joe Q <joe@example.com>\nTo: a@example.org, \"B B\" <b@example.org>\nCc: c@example.org (the "
       "boss)\n"
       "Bcc: d@example.org\nSubject: x\n\nbody\n",
       DropFormat::rfc5322,
       "joe@example.com",
       {"a@example.org", "b@example.org", "c@example.org", "d@example.org"},
       0,
       true,
       true,
       false,
       true},
      {"Sender overrides From",
       "From: a@x.org\nSender: s@x.org\nTo: t@x.org\n\n",
       DropFormat::rfc5322,
       "s@x.org",
       {"t@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"folded To",
       "From: a@x.org\nTo: one@x.org,\n two@x.org,\r\n\tthree@x.org\n\nbody",
       DropFormat::rfc5322,
       "a@x.org",
       {"one@x.org", "two@x.org", "three@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"undisclosed-recipients group",
       "From: a@x.org\nTo: undisclosed-recipients:;\nBcc: hidden@x.org\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"hidden@x.org"},
       0,
       true,
       true,
       false,
       true},
      {"group with members",
       "From: a@x.org\nTo: team: m1@x.org, M Two <m2@x.org>;, other@x.org\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"m1@x.org", "m2@x.org", "other@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"quoted local parts",
       "From: a@x.org\nTo: \"john doe\"@x.org, \"john.doe\"@x.org\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"\"john doe\"@x.org", "john.doe@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"comments everywhere",
       "From: a@x.org\nTo: (c1) b(c2 (nested))@(c3)x.org (c4)\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"b@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"quoted display name with comma",
       "From: a@x.org\nTo: \"Doe, John\" <j@x.org>\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"j@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"8-bit body",
       "From: a@x.org\nTo: b@x.org\n\nGr\xc3\xbc\xc3\x9f"
       "e\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"b@x.org"},
       0,
       true,
       true,
       true,
       false},
      {"8-bit display name",
       "From: J\xc3\xb6rg <j@x.org>\nTo: b@x.org\n\nx",
       DropFormat::rfc5322,
       "j@x.org",
       {"b@x.org"},
       0,
       true,
       true,
       true,
       false},
      {"obsolete route",
       "From: a@x.org\nTo: <@relay.org,@r2.org:b@x.org>\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"b@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"duplicates removed",
       "From: a@x.org\nTo: b@x.org\nCc: b@x.org, c@x.org\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"b@x.org", "c@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"address literals",
       "From: a@x.org\nTo: a@[127.0.0.1], b@[IPv6:::1]\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"a@[127.0.0.1]", "b@[IPv6:::1]"},
       0,
       true,
       true,
       false,
       false},
      {"From <> is the null sender",
       "From: <>\nTo: b@x.org\n\n",
       DropFormat::rfc5322,
       "",
       {"b@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"headers only, no final newline",
       "From: a@x.org\nTo: b@x.org\nDate: x",
       DropFormat::rfc5322,
       "a@x.org",
       {"b@x.org"},
       0,
       false,
       true,
       false,
       false},
      {"a lone CR inside To is a space, as on the wire (obsolete local-part syntax)",
       "From: a@x.org\nTo: a\r@x.org\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"a@x.org"},
       0,
       true,
       true,
       false,
       false},
      {"case-insensitive header names",
       "FROM: a@x.org\nto: b@x.org\nMESSAGE-ID: <m@x>\n\n",
       DropFormat::rfc5322,
       "a@x.org",
       {"b@x.org"},
       0,
       true,
       false,
       false,
       false},
  };
}

struct Bad {
  const char* name;
  std::string input;
  const char* reason;  // substring the error must contain
};

std::vector<Bad> bad_cases() {
  return {
      {"empty file", "", "empty"},
      {"plain text", "hello world\n", "neither"},
      {"mbox From_ line", "From a@x.org Mon Jan  1 00:00:00 2024\nTo: b@x.org\n\n", "neither"},
      {"envelope without RCPT", "MAIL FROM:<a@x.org>\n\nbody", "no RCPT"},
      {"envelope without blank line", "MAIL FROM:<a@x.org>\nRCPT TO:<b@x.org>\n", "envelope not followed"},
      {"RCPT TO:<>", "MAIL FROM:<a@x.org>\nRCPT TO:<>\n\n", "not a recipient"},
      {"CR in envelope address", "MAIL FROM:<a\r@x.org>\nRCPT TO:<b@x.org>\n\n", "CR"},
      {"NUL in envelope address", "MAIL FROM:<a@x.org>\nRCPT TO:<b\0@x.org>\n\n"s, "NUL"},
      {"LF splits an envelope address", "MAIL FROM:<a@x.org>\nRCPT TO:<b\n@x.org>\n\n", "RCPT TO"},
      {"invalid envelope address", "MAIL FROM:<a@x.org>\nRCPT TO:<b@@x.org>\n\n", "invalid address"},
      {"unbracketed envelope address", "MAIL FROM:a@x.org\nRCPT TO:<b@x.org>\n\n", "expected <address>"},
      {"second MAIL FROM", "MAIL FROM:<a@x.org>\nMAIL FROM:<a@x.org>\nRCPT TO:<b@x.org>\n\n",
       "second MAIL FROM"},
      {"garbage in envelope", "MAIL FROM:<a@x.org>\nRCPT TO:<b@x.org>\nDATA\n\n", "expected RCPT TO"},
      {"bare without recipients", "From: a@x.org\nSubject: x\n\nbody", "no recipients"},
      {"bare without sender", "To: b@x.org\n\nbody", "no Sender"},
      {"bad To address", "From: a@x.org\nTo: foo bar\n\n", "to:"},
      {"unqualified address", "From: a@x.org\nTo: root\n\n", "without domain"},
      {"8-bit address that is not UTF-8", "From: a@x.org\nTo: j\xf6@x.org\n\n", "invalid address"},
      {"overlong UTF-8 in an envelope address", "MAIL FROM:<a@x.org>\nRCPT TO:<j\xc0\xaf@x.org>\n\n",
       "invalid address"},
      {"control character in To", "From: a@x.org\nTo: a\x01@x.org\n\n", "control character"},
      {"NUL in a header", "From: a@x.org\nTo: b@x.org\nSubject: a\0b\n\n"s, "NUL"},
      {"unterminated comment", "From: a@x.org\nTo: b@x.org (oops\n\n", "unterminated comment"},
      {"unterminated quote", "From: a@x.org\nTo: \"b@x.org\n\n", "unterminated quoted"},
      {"two Sender mailboxes", "Sender: a@x.org, b@x.org\nFrom: a@x.org\nTo: c@x.org\n\n", "exactly one"},
      {"continuation before any header", kEnv + " folded\n\n", "continuation"},
      {"header line too long", "From: a@x.org\nX-Long: " + std::string(70000, 'a') + "\nTo: b@x.org\n\n",
       "longer than"},
      {"domain label with a leading hyphen", "From: a@x.org\nTo: b@-x.org\n\n", "invalid address"},
  };
}

}  // namespace

TEST_CASE("drop files that parse", "[drop]") {
  for (const auto& c : good_cases()) {
    INFO(c.name);
    auto r = parse_drop(c.input);
    REQUIRE(r.ok());
    if (!r.ok()) continue;
    CHECK(r->format == c.format);
    CHECK(r->sender == c.sender);
    CHECK(r->recipients == c.rcpts);
    CHECK(r->body_offset == c.body_offset);
    CHECK(r->size == c.input.size());
    CHECK(r->missing_date == c.missing_date);
    CHECK(r->missing_message_id == c.missing_mid);
    CHECK(r->eight_bit == c.eight_bit);
    CHECK(r->has_bcc == c.bcc);
  }
}

TEST_CASE("drop files that are refused name the reason", "[drop]") {
  for (const auto& c : bad_cases()) {
    INFO(c.name);
    auto r = parse_drop(c.input);
    REQUIRE_FALSE(r.ok());
    if (r.ok()) continue;
    INFO(r.error().message);
    CHECK(r.error().message.find(c.reason) != std::string::npos);
  }
}

TEST_CASE("chunked feeding gives the same result as one piece", "[drop]") {
  std::mt19937 rng(42);
  std::vector<std::string> inputs;
  for (const auto& c : good_cases()) inputs.push_back(c.input);
  for (const auto& c : bad_cases()) inputs.push_back(c.input);
  for (const auto& in : inputs) {
    auto whole = parse_drop(in);
    for (int round = 0; round < 4; ++round) {
      DropParser p;
      size_t pos = 0;
      bool fed_ok = true;
      while (pos < in.size()) {
        size_t n = round == 0 ? 1 : std::uniform_int_distribution<size_t>(1, 17)(rng);
        n = std::min(n, in.size() - pos);
        fed_ok = p.feed(std::string_view(in).substr(pos, n)).ok() && fed_ok;
        pos += n;
      }
      auto r = p.finish();
      INFO(in.substr(0, 80));
      REQUIRE(r.ok() == whole.ok());
      if (r.ok()) {
        CHECK(r->recipients == whole->recipients);
        CHECK(r->sender == whole->sender);
        CHECK(r->body_offset == whole->body_offset);
        CHECK(r->size == whole->size);
        CHECK(r->eight_bit == whole->eight_bit);
        CHECK(r->longest_line == whole->longest_line);
      } else {
        CHECK(r.error().message == whole.error().message);
        (void)fed_ok;
      }
    }
  }
}

TEST_CASE("line endings are recorded, not changed", "[drop]") {
  auto lf = parse_drop("From: a@x.org\nTo: b@x.org\n\nx\n");
  REQUIRE(lf.ok());
  CHECK(lf->bare_lf);
  CHECK_FALSE(lf->crlf);
  auto mixed = parse_drop("From: a@x.org\r\nTo: b@x.org\n\r\nx\n");
  REQUIRE(mixed.ok());
  CHECK(mixed->bare_lf);
  CHECK(mixed->crlf);
}

TEST_CASE("a large body streams through without limits", "[drop]") {
  DropParser p;
  REQUIRE(p.feed(kEnv + "Subject: big\n\n").ok());
  std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 8; ++i) REQUIRE(p.feed(chunk).ok());
  auto r = p.finish();
  REQUIRE(r.ok());
  CHECK(r->size == kEnv.size() + 14 + 8 * chunk.size());
  CHECK(r->message_size() == 14 + 8 * chunk.size());
}

TEST_CASE("recipient limit is enforced", "[drop]") {
  DropLimits lim;
  lim.max_recipients = 3;
  auto r = parse_drop("From: a@x.org\nTo: a@x.org, b@x.org, c@x.org, d@x.org\n\n", lim);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("more than 3") != std::string::npos);
}

TEST_CASE("RFC 5321 mailbox validation", "[address]") {
  struct Case {
    std::string addr;
    bool valid;
  };
  std::vector<Case> cases = {
      {"a@x.org", true},
      {"first.last+tag@sub.example.co.uk", true},
      {"\"quoted space\"@x.org", true},
      {"\"q\\\"uote\"@x.org", true},
      {"a@[192.0.2.1]", true},
      {"a@[IPv6:2001:db8::1]", true},
      {"a@localhost", true},
      {"a!#$%&'*+-/=?^_`{|}~@x.org", true},
      {"", false},
      {"a", false},
      {"@x.org", false},
      {"a@", false},
      {"a..b@x.org", false},
      {".a@x.org", false},
      {"a.@x.org", false},
      {"a b@x.org", false},
      {"a@x..org", false},
      {"a@-x.org", false},
      {"a@x-.org", false},
      {"a@x_y.org", false},
      {"a@[300.1.1.1]", false},
      {"a@[IPv6:zz]", false},
      {std::string(65, 'a') + "@x.org", false},
      {std::string(64, 'a') + "@x.org", true},
      {"a@" + std::string(64, 'b') + ".org", false},
      {"a\r@x.org", false},
      {"a\n@x.org", false},
      {std::string("a\0@x.org", 8), false},
      {"j\xc3\xb6@x.org", true},  // RFC 6531: UTF-8, as an SMTPUTF8 session sends it
      {"a@b\xc3\xbc"
       "cher.org",
       true},
      {"j\xf6@x.org", false},          // Latin-1, not UTF-8
      {"a@b\xed\xa0\x80.org", false},  // a UTF-16 surrogate
      {"\"unterminated@x.org", false},
  };
  for (const auto& c : cases) {
    INFO(c.addr);
    CHECK(valid_mailbox(c.addr) == c.valid);
  }
}

TEST_CASE("an 8-bit byte is found at any position of the body", "[spool][drop]") {
  std::string env = "MAIL FROM:<a@example.com>\nRCPT TO:<b@example.org>\n\nSubject: x\n\n";
  for (size_t at = 0; at < 40; ++at) {
    std::string body(40, 'a');
    body[at] = static_cast<char>(0xC3);
    for (size_t chunk : {size_t(1), size_t(3), size_t(8), size_t(4096)}) {
      DropParser p;
      std::string text = env + body + "\n";
      for (size_t i = 0; i < text.size(); i += chunk)
        REQUIRE(p.feed(std::string_view(text).substr(i, chunk)).ok());
      auto info = p.finish();
      REQUIRE(info.ok());
      INFO("8-bit byte at " << at << ", chunk " << chunk);
      CHECK(info->eight_bit);
    }
  }
  auto plain = parse_drop(env + std::string(40, 'a') + "\n");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->eight_bit);
}

TEST_CASE("the longest line is measured as the SMTP encoder will cut lines", "[spool][drop]") {
  struct Case {
    std::string text;
    uint64_t longest;
  };
  std::string env = "MAIL FROM:<a@example.com>\nRCPT TO:<b@example.org>\n\n";
  const std::vector<Case> cases = {
      {env + "Subject: hi\n\nshort\n", 11},                                  // "Subject: hi"
      {env + "Subject: x\r\n\r\n" + std::string(1000, 'a') + "\r\n", 1000},  // CRLF not counted
      {env + "Subject: x\n\n" + std::string(500, 'a') + "\r" + std::string(600, 'b') + "\n", 600},  // lone CR
      {env + "Subject: x\n\n" + std::string(998, 'a'), 998},  // no final newline
      {env + "Subject: " + std::string(1200, 'h') + "\n\nbody\n", 1209},
  };
  for (const auto& c : cases) {
    for (size_t chunk : {size_t(1), size_t(7), size_t(4096)}) {
      DropParser p;
      for (size_t i = 0; i < c.text.size(); i += chunk)
        REQUIRE(p.feed(std::string_view(c.text).substr(i, chunk)).ok());
      auto info = p.finish();
      REQUIRE(info.ok());
      INFO("chunk " << chunk << " expecting " << c.longest);
      CHECK(info->longest_line == c.longest);
    }
  }
}

// Where LF-only and CR-splitting readers of a header disagree (tests/support/hostile_headers.h):
// the parser must take its recipients and facts from the header the encoder sends, whatever the
// chunking. A Bcc: line the parser never saw as a field would reach the wire (the reported leak).
TEST_CASE("a header with stray CRs is read as the encoder sends it", "[drop]") {
  for (const auto& c : spoold::test::hostile_headers()) {
    INFO(c.name);
    bool blind = false, date = false;
    for (const auto& f : c.fields) {
      blind = blind || f == "bcc" || f == "resent-bcc";
      date = date || f == "date";
    }
    for (size_t chunk : {size_t(1), size_t(2), size_t(5), size_t(4096)}) {
      INFO("chunk " << chunk);
      for (const std::string& text : {c.message, kEnv + c.message}) {
        DropParser p;
        std::vector<std::string> fields;
        p.observe_header([&](spoold::HeaderLineKind kind, std::string_view line) {
          if (kind == spoold::HeaderLineKind::field)
            fields.push_back(spoold::ascii_lower(line.substr(0, spoold::header_name_length(line))));
        });
        for (size_t i = 0; i < text.size(); i += chunk) (void)p.feed(std::string_view(text).substr(i, chunk));
        auto info = p.finish();
        REQUIRE(info.ok());
        CHECK(fields == c.fields);
        if (info->format == DropFormat::rfc5322) CHECK(info->recipients == c.rcpts);
        CHECK(info->has_bcc == blind);
        CHECK(info->missing_date == !date);
        CHECK(info->longest_line == c.longest);
      }
    }
  }
}
