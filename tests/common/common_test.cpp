// tests/common/common_test.cpp — the header-only helpers of common/ that several libraries share:
// ASCII case folding (common/ascii.h), header unfolding (common/header_fields.h), the clock
// (common/clock.h), the delivery enums and their spellings (common/delivery_policy.h), mailbox
// syntax (common/mailbox.h). Built into common_test with the libuv handles' test.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/ascii.h"
#include "common/clock.h"
#include "common/delivery_policy.h"
#include "common/header_fields.h"

using namespace spoold;

// Folded at compile time.
static_assert(ascii_lower('Q') == 'q' && ascii_lower('q') == 'q' && ascii_lower('@') == '@');
static_assert(ascii_upper('q') == 'Q' && ascii_upper('[') == '[' && ascii_upper('`') == '`');
static_assert(ascii_iequals("Resent-BCC", "resent-bcc") && !ascii_iequals("bcc", "bcc:"));
static_assert(ascii_istarts_with("mail from:<a@b>", "MAIL FROM:") &&
              !ascii_istarts_with("MAIL", "MAIL FROM:"));
static_assert(is_blind_field("BcC") && is_blind_field("Resent-Bcc") && !is_blind_field("Bcc2"));
static_assert(to_string(TlsPolicy::verify) == "verify" &&
              parse_tls_policy("required") == TlsPolicy::required);
static_assert(to_string(AuthMechanism::cram_md5) == "cram-md5" &&
              sasl_name(AuthMechanism::cram_md5) == "CRAM-MD5");

TEST_CASE("ASCII case folding: only A-Z and a-z fold", "[common]") {
  struct Row {
    std::string_view in, lower, upper;
  };
  // The neighbours of the letter ranges ('@' '[' '`' '{'), digits and 8-bit bytes stay as they are
  // (a Latin-1 or UTF-8 byte is no letter here, whatever the locale).
  const Row rows[] = {
      {"", "", ""},
      {"Message-ID", "message-id", "MESSAGE-ID"},
      {"@AZ[`az{", "@az[`az{", "@AZ[`AZ{"},
      {"Example.ORG.", "example.org.", "EXAMPLE.ORG."},
      {"8BITMIME 250-Size", "8bitmime 250-size", "8BITMIME 250-SIZE"},
      {"\xc3\x84rger\xc4", "\xc3\x84rger\xc4", "\xc3\x84RGER\xc4"},
      {std::string_view("a\0B", 3), std::string_view("a\0b", 3), std::string_view("A\0B", 3)},
  };
  for (const auto& r : rows) {
    INFO(r.in);
    CHECK(ascii_lower(r.in) == r.lower);
    CHECK(ascii_upper(r.in) == r.upper);
  }
  for (int c = 0; c < 256; ++c) {
    char ch = static_cast<char>(c);
    bool upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z';
    CHECK(ascii_lower(ch) == (upper ? static_cast<char>(c + 32) : ch));
    CHECK(ascii_upper(ch) == (lower ? static_cast<char>(c - 32) : ch));
  }
}

TEST_CASE("ASCII case-insensitive equals and starts-with", "[common]") {
  struct Row {
    std::string_view a, b;
    bool equals, starts;  // a equals b; a starts with b
  };
  const Row rows[] = {
      {"", "", true, true},
      {"bcc", "BCC", true, true},
      {"Bcc", "bc", false, true},
      {"bc", "Bcc", false, false},
      {"RCPT TO:<a@b>", "rcpt to:", false, true},
      {"RCPT  TO:", "rcpt to:", false, false},
      {"example.org", "EXAMPLE.ORG", true, true},
      {"example.org", "example.org.", false, false},
      {"[", "{", false, false},  // 0x5b and 0x7b differ by 0x20 but are no letters
      {"@", "`", false, false},
      {"\xc4", "\xe4", false, false},  // Latin-1 Ä/ä are not folded
  };
  for (const auto& r : rows) {
    INFO(r.a << " / " << r.b);
    CHECK(ascii_iequals(r.a, r.b) == r.equals);
    CHECK(ascii_iequals(r.b, r.a) == r.equals);
    CHECK(ascii_istarts_with(r.a, r.b) == r.starts);
  }
}

TEST_CASE("header fields: names lower-cased, continuations appended as read", "[common]") {
  struct Row {
    std::string_view message;
    std::vector<std::pair<std::string, std::string>> fields;
  };
  const std::vector<Row> rows = {
      {"", {}},
      {"To: a@b.c\n", {{"to", " a@b.c"}}},
      {"To: a@b.c", {{"to", " a@b.c"}}},  // no final LF: the field still ends
      {"TO : a,\n\tb\n  c\nCC:d\n\nX: body\n", {{"to", " a,\tb  c"}, {"cc", "d"}}},
      {"A: 1\r\nB: 2\r\n\r\nC: 3\r\n", {{"a", " 1"}, {"b", " 2"}}},
      {"A: 1\nno header\nB: 2\n", {{"a", " 1"}}},      // the header ends before the body's first line
      {" lead: x\nA: 1\n", {}},                        // a continuation before any field is no header
      {"A: 1\r\r\n 2\rB: 3\n", {{"a", " 1 2 B: 3"}}},  // CRs before LF end the line; others are spaces
  };
  for (const auto& r : rows) {
    INFO(r.message);
    auto got = header_fields(r.message);
    REQUIRE(got.size() == r.fields.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].name == r.fields[i].first);
      CHECK(got[i].value == r.fields[i].second);
    }
  }
}

TEST_CASE("HeaderUnfolder: a field completes at the next line that does not continue it", "[common]") {
  HeaderUnfolder u([](std::string_view name) { return is_recipient_field(name); }, 8);
  CHECK(u.name().empty());
  CHECK(u.next("Bcc: a") == HeaderLineKind::field);
  CHECK(u.name() == "bcc");
  CHECK(u.blind());
  CHECK(u.completed() == nullptr);
  CHECK(u.next(" b") == HeaderLineKind::continuation);
  CHECK(u.completed() == nullptr);
  CHECK(u.next(" cdefg") == HeaderLineKind::continuation);  // " a b" + " cdefg" > 8: left out
  CHECK(u.over_limit());
  CHECK(u.next("Subject: s") == HeaderLineKind::field);  // completes Bcc:, starts one not kept
  CHECK_FALSE(u.over_limit());
  CHECK_FALSE(u.blind());
  REQUIRE(u.completed() != nullptr);
  CHECK(u.completed()->name == "bcc");
  CHECK(u.completed()->value == " a b");
  CHECK(u.next(" more") == HeaderLineKind::continuation);
  CHECK_FALSE(u.over_limit());  // not kept, so never over the limit
  CHECK(u.next("") == HeaderLineKind::end);
  CHECK(u.completed() == nullptr);  // Subject: is complete, but not kept
  CHECK(u.name().empty());
  u.finish();
  CHECK(u.completed() == nullptr);  // nothing was open

  HeaderUnfolder v;
  v.next("X: 1");
  v.finish();
  REQUIRE(v.completed() != nullptr);
  CHECK(v.completed()->name == "x");
  CHECK(v.completed()->value == " 1");
}

TEST_CASE("unix_now is the wall clock in seconds", "[common]") {
  CHECK(std::llabs(unix_now() - static_cast<long long>(std::time(nullptr))) <= 1);
}

namespace {

// Every value of E, in declaration order: the last enumerator is `last`.
template <class E>
std::vector<E> all_values(E last) {
  std::vector<E> v;
  for (int i = 0; i <= static_cast<int>(last); ++i) v.push_back(static_cast<E>(i));
  return v;
}

// Each spelling names one value and parses back to it; every value but `unspelled` has a spelling.
template <class E, std::size_t N, class Parse>
void check_round_trip(const EnumName<E> (&names)[N], E last, Parse parse, std::optional<E> unspelled = {}) {
  for (E v : all_values(last)) {
    std::string_view name = to_string(v);
    INFO(name);
    CHECK(name != "?");
    CHECK(parse(name) == (v == unspelled ? std::nullopt : std::optional<E>(v)));
    CHECK(name_in(names, v) == (v == unspelled ? "?" : name));
  }
  for (const auto& n : names) {
    INFO(n.name);
    CHECK(parse(n.name) == n.value);
    CHECK(to_string(n.value) == n.name);
    CHECK_FALSE(parse(ascii_upper(n.name)));  // spellings are exact, as the config has them
  }
  CHECK_FALSE(parse(""));
  CHECK_FALSE(parse("?"));
}

}  // namespace

TEST_CASE("delivery enums: to_string and parse round trip, spellings exact", "[common][policy]") {
  check_round_trip(tls_policy_names, TlsPolicy::verify, parse_tls_policy);
  check_round_trip(address_preference_names, AddressPreference::ipv6, parse_address_preference);
  // none is how smtp says "no AUTH"; the config says it by leaving `auth:` out, so it has no spelling.
  check_round_trip(auth_mechanism_names, AuthMechanism::xoauth2, parse_auth_mechanism,
                   std::optional(AuthMechanism::none));
  CHECK_FALSE(parse_tls_policy("starttls"));  // a relay server's `tls`, not delivery.tls
  CHECK_FALSE(parse_auth_mechanism("automatic"));
  CHECK_FALSE(parse_auth_mechanism("CRAM-MD5"));  // the wire name is no config spelling
}

TEST_CASE("delivery enums: the spellings the config lists, in its order", "[common][policy]") {
  auto joined = [](const auto& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : " | ") + std::string(n.name);
    return s;
  };
  CHECK(joined(tls_policy_names) == "none | opportunistic | required | verify");
  CHECK(joined(address_preference_names) == "any | ipv4 | ipv6");
  CHECK(joined(auth_mechanism_names) == "auto | plain | login | cram-md5 | xoauth2");
}

TEST_CASE("AUTH mechanisms: the SASL name on the wire", "[common][policy]") {
  const std::pair<AuthMechanism, std::string_view> rows[] = {
      {AuthMechanism::none, ""},
      {AuthMechanism::automatic, ""},
      {AuthMechanism::plain, "PLAIN"},
      {AuthMechanism::login, "LOGIN"},
      {AuthMechanism::cram_md5, "CRAM-MD5"},
      {AuthMechanism::xoauth2, "XOAUTH2"},
  };
  for (const auto& [m, wire] : rows) {
    INFO(to_string(m));
    CHECK(sasl_name(m) == wire);
    if (!wire.empty()) CHECK(sasl_name(m) == ascii_upper(to_string(m)));  // one name, two cases
  }
}
