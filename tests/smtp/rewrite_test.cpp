// tests/smtp/rewrite_test.cpp — sender rewriting (smtp/rewrite.h): the masquerade decision, the
// envelope sender, the address-list scanner, and the encoder sending From:/Sender: masqueraded
// under every chunking (folded fields, stray CRs, fields too long to hold, the body untouched).
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "smtp/body_encoder.h"
#include "smtp/rewrite.h"

using namespace spoold::smtp;

namespace {

const std::vector<std::string> kDomains = {"example.com"};

// Encodes `input` in `step`-byte chunks with masquerading under `domains`.
std::string encode_masq(const std::string& input, std::size_t step, const std::vector<std::string>& domains,
                        std::vector<std::string> qp = {}) {
  BodyEncoder enc({}, std::move(qp), domains);
  std::string out;
  for (std::size_t i = 0; i < input.size(); i += step) enc.feed(std::string_view(input).substr(i, step), out);
  enc.finish(out);
  return out;
}

// The same bytes under every chunk size from 1 to the whole input.
void check_every_step(const std::string& input, const std::string& wire,
                      const std::vector<std::string>& domains = kDomains) {
  for (std::size_t step = 1; step <= input.size() + 1; ++step) {
    INFO("step " << step);
    REQUIRE(encode_masq(input, step, domains) == wire);
  }
}

}  // namespace

TEST_CASE("masquerade_domain: the first listed name that is the domain or a parent decides", "[rewrite]") {
  struct Case {
    std::string domain;
    std::vector<std::string> domains;
    std::optional<std::string> want;
  };
  const std::vector<Case> cases = {
      {"host.example.com", {"example.com"}, "example.com"},
      {"a.b.example.com", {"example.com"}, "example.com"},
      {"HOST.Example.COM", {"example.com"}, "example.com"},
      {"host.example.com.", {"example.com"}, "example.com"},
      {"example.com", {"example.com"}, std::nullopt},                          // itself: unchanged
      {"Example.COM", {"example.com"}, std::nullopt},                          // unchanged, case kept
      {"badexample.com", {"example.com"}, std::nullopt},                       // a suffix, not a parent
      {"example.com.evil", {"example.com"}, std::nullopt},                     // not a parent either
      {"host.example.org", {"example.com"}, std::nullopt},                     // elsewhere
      {"com", {"example.com"}, std::nullopt},                                  // shorter than the name
      {"a.b.example.com", {"b.example.com", "example.com"}, "b.example.com"},  // first match wins
      {"a.b.example.com", {"example.com", "b.example.com"}, "example.com"},
      {"b.example.com", {"b.example.com", "example.com"}, std::nullopt},  // Postfix: itself stops it
      {"[192.0.2.1]", {"example.com"}, std::nullopt},                     // address literals never
      {"", {"example.com"}, std::nullopt},
      {".", {"example.com"}, std::nullopt},
      {"host.example.com", {}, std::nullopt},
      {"host.example.com", {""}, std::nullopt},
  };
  for (const auto& c : cases) {
    INFO(c.domain);
    CHECK(masquerade_domain(c.domain, c.domains) == c.want);
  }
}

TEST_CASE("the envelope sender: null sender kept, envelope_from verbatim, else masqueraded", "[rewrite]") {
  struct Case {
    std::string sender, envelope_from;
    std::vector<std::string> domains;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"", "", kDomains, ""},
      {"", "bounces@example.com", kDomains, ""},  // a bounce stays a bounce
      {"cron@host.example.com", "", kDomains, "cron@example.com"},
      {"cron@host.example.com", "", {}, "cron@host.example.com"},
      {"cron@host.example.com", "ops@sub.example.com", kDomains, "ops@sub.example.com"},  // never masqueraded
      {"\"a@b\"@host.example.com", "", kDomains, "\"a@b\"@example.com"},  // the domain is after the last '@'
      {"cron@example.com", "", kDomains, "cron@example.com"},
      {"noat", "", kDomains, "noat"},
      {"user@[192.0.2.1]", "", kDomains, "user@[192.0.2.1]"},
  };
  for (const auto& c : cases) {
    INFO(c.sender << " / " << c.envelope_from);
    CHECK(rewrite_envelope_sender(c.sender, c.envelope_from, c.domains) == c.want);
  }
}

TEST_CASE("masquerade_field rewrites the addresses of an address list and nothing else", "[rewrite]") {
  struct Case {
    std::string value;
    std::optional<std::string> want;
  };
  const std::vector<Case> cases = {
      {" cron@host.example.com", " cron@example.com"},
      {" Cron Daemon <cron@host.example.com>", " Cron Daemon <cron@example.com>"},
      {" a@x.example.com, b@y.example.com", " a@example.com, b@example.com"},
      {" \"x@h.example.com\" <a@h.example.com>", " \"x@h.example.com\" <a@example.com>"},  // quoted: kept
      {" \"q\\\"@h.example.com\" <a@h.example.com>", " \"q\\\"@h.example.com\" <a@example.com>"},
      {" a@h.example.com (sent by b@h.example.com)", " a@example.com (sent by b@h.example.com)"},  // comment
      {" a@h.example.com (x (nested@h.example.com) y)", " a@example.com (x (nested@h.example.com) y)"},
      {" a@[192.0.2.1]", std::nullopt},
      {" a@[h.example.com]", std::nullopt},
      {" a@example.com", std::nullopt},
      {" a@elsewhere.org", std::nullopt},
      {" undisclosed-recipients:;", std::nullopt},
      {" group: a@h.example.com, b@h.example.com;", " group: a@example.com, b@example.com;"},
      {" a@\n h.example.com", " a@\n example.com"},  // folding after the '@' (obs-domain) is kept
      {" a@\r\n\th.example.com", " a@\r\n\texample.com"},
      {" Name\n <a@h.example.com>", " Name\n <a@example.com>"},
      {" a@HOST.EXAMPLE.COM.", " a@example.com"},
      {" a@badexample.com", std::nullopt},
      {" a@h.example.com.evil", std::nullopt},
      {" \"unterminated a@h.example.com", std::nullopt},
      {" (unterminated a@h.example.com", std::nullopt},
      {" a@", std::nullopt},
      {"@", std::nullopt},
      {" \\", std::nullopt},
      {"", std::nullopt},
      {" caf\xc3\xa9@h.example.com", " caf\xc3\xa9@example.com"},
      {" a@\xc3\xa9.example.com", " a@example.com"},
  };
  for (const auto& c : cases) {
    INFO(c.value);
    CHECK(masquerade_field(c.value, kDomains) == c.want);
  }
  CHECK(masquerade_field(" a@h.example.com", {}) == std::nullopt);
}

TEST_CASE("the encoder masquerades From: and Sender:, folded or not, under every chunking", "[rewrite]") {
  struct Case {
    std::string name, input, wire;
  };
  const std::vector<Case> cases = {
      {"plain", "From: Cron <cron@host.example.com>\nTo: a@host.example.com\nSubject: s\n\nbody\n",
       "From: Cron <cron@example.com>\r\nTo: a@host.example.com\r\nSubject: s\r\n\r\nbody\r\n.\r\n"},
      {"sender and case", "sender: x@h.example.com\nFROM: y@h.example.com\n\nb\n",
       "sender: x@example.com\r\nFROM: y@example.com\r\n\r\nb\r\n.\r\n"},
      {"folded", "Subject: s\nFrom: A <a@h.example.com>,\n\tB <b@h.example.com>\nTo: t@x\n\nb\n",
       "Subject: s\r\nFrom: A <a@example.com>,\r\n\tB <b@example.com>\r\nTo: t@x\r\n\r\nb\r\n.\r\n"},
      {"CRLF input", "From: a@h.example.com\r\n  (c)\r\n\r\nb\r\n",
       "From: a@example.com\r\n  (c)\r\n\r\nb\r\n.\r\n"},
      {"stray CR", "From: a@h.example.com\r\rx\n\nb\n", "From: a@example.com  x\r\n\r\nb\r\n.\r\n"},
      {"last field, no body", "Subject: s\nFrom: a@h.example.com\n",
       "Subject: s\r\nFrom: a@example.com\r\n.\r\n"},
      {"no final LF", "From: a@h.example.com", "From: a@example.com\r\n.\r\n"},
      {"the body's From is no header", "Subject: s\n\nFrom: a@h.example.com\n",
       "Subject: s\r\n\r\nFrom: a@h.example.com\r\n.\r\n"},
      {"From behind a non-field line is body", "Subject: s\nnot a field\nFrom: a@h.example.com\n\n",
       "Subject: s\r\n\r\nnot a field\r\nFrom: a@h.example.com\r\n\r\n.\r\n"},
      {"Reply-To and Return-Path are left", "Reply-To: r@h.example.com\nFrom-X: f@h.example.com\n\nb\n",
       "Reply-To: r@h.example.com\r\nFrom-X: f@h.example.com\r\n\r\nb\r\n.\r\n"},
      {"Bcc still dropped", "From: a@h.example.com\nBcc: b@h.example.com\n\nb\n",
       "From: a@example.com\r\n\r\nb\r\n.\r\n"},
      {"a dot line", "From: a@h.example.com\n.\n", "From: a@example.com\r\n\r\n..\r\n.\r\n"},
      {"unchanged", "From: a@example.com\n\nb\n", "From: a@example.com\r\n\r\nb\r\n.\r\n"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    check_every_step(c.input, c.wire);
  }
  // Without domains nothing is held or changed.
  CHECK(encode_masq("From: a@h.example.com\n\nb\n", 3, {}) == "From: a@h.example.com\r\n\r\nb\r\n.\r\n");
}

TEST_CASE("a masqueraded From: over 998 octets is folded after the rewrite", "[rewrite]") {
  // Many addresses on one line: the rewrite shortens it, the folding then works on what is sent.
  std::string value, want_value;
  for (int i = 0; i < 60; ++i) {
    value += (i ? ", " : " ") + std::string("user") + std::to_string(i) + "@host.example.com";
    want_value += (i ? ", " : " ") + std::string("user") + std::to_string(i) + "@example.com";
  }
  REQUIRE(value.size() > 1200);
  REQUIRE(want_value.size() > 998);
  std::string input = "From:" + value + "\n\nb\n";
  // The reference: the rewritten field through the encoder without masquerading.
  std::string want = encode_masq("From:" + want_value + "\n\nb\n", 1 << 20, {});
  REQUIRE(want.find("user59@example.com") != std::string::npos);
  for (std::size_t step : {1u, 2u, 7u, 64u, 997u, 998u, 999u, 4096u}) {
    INFO("step " << step);
    CHECK(encode_masq(input, step, kDomains) == want);
  }
}

TEST_CASE("a From: too long to hold goes out as it is, folded, and nothing is lost", "[rewrite]") {
  std::string big = "From: a@h.example.com," + std::string(BodyEncoder::kMaxHeldField + 100, 'x') +
                    "\n b@h.example.com\n\nb\n";
  std::string plain = encode_masq(big, 1 << 20, {});
  for (std::size_t step : {1u, 13u, 4096u, 65536u, 1u << 20}) {
    INFO("step " << step);
    CHECK(encode_masq(big, step, kDomains) == plain);
  }
  // A long folded field that fits is held and rewritten on every line.
  std::string lines = "From: a@h.example.com";
  std::string want = "From: a@example.com";
  for (int i = 0; i < 100; ++i) {
    lines += ",\n b" + std::to_string(i) + "@h.example.com";
    want += ",\r\n b" + std::to_string(i) + "@example.com";
  }
  CHECK(encode_masq(lines + "\n\nb\n", 5, kDomains) == want + "\r\n\r\nb\r\n.\r\n");
}

TEST_CASE("masquerading composes with the quoted-printable conversion", "[rewrite]") {
  std::string input = "From: a@h.example.com\nContent-Type: text/plain\n\ncaf\xc3\xa9\n";
  std::vector<std::string> qp = {"Content-Transfer-Encoding: quoted-printable"};
  std::string want =
      "From: a@example.com\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
      "caf=C3=A9\r\n.\r\n";
  for (std::size_t step = 1; step <= input.size(); ++step) {
    INFO("step " << step);
    REQUIRE(encode_masq(input, step, kDomains, qp) == want);
  }
}
