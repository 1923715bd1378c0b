// tests/smtp/mime_convert_test.cpp — the 8-bit decision as a table (every MIME shape a message can
// have against a server with and without 8BITMIME), the header lines a conversion adds, and the
// classification of Content-Type / Content-Transfer-Encoding values.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "smtp/mime_convert.h"

using namespace spoold::smtp;

namespace {

MimeFacts facts(MimeType t, MimeEncoding e, bool header_8bit = false, bool body_8bit = true) {
  return MimeFacts{true, t, e, header_8bit, body_8bit};
}

}  // namespace

TEST_CASE("what 8-bit data needs, for every MIME shape and server", "[mime]") {
  using T = MimeType;
  using E = MimeEncoding;
  using P = BodyPlan;
  struct Row {
    const char* name;
    bool eight_bit, server_8bitmime;
    std::optional<MimeFacts> facts;
    BodyPlan plan;
    const char* reason;  // a part of the reason for defer
  };
  const std::vector<Row> rows = {
      {"7-bit, no 8BITMIME", false, false, std::nullopt, P::as_is, ""},
      {"7-bit, 8BITMIME", false, true, std::nullopt, P::as_is, ""},
      {"8-bit, 8BITMIME: declared, facts not needed", true, true, std::nullopt, P::eight_bit_mime, ""},
      {"8-bit multipart, 8BITMIME", true, true, facts(T::multipart, E::absent), P::eight_bit_mime, ""},
      {"8-bit, no 8BITMIME, header not read", true, false, std::nullopt, P::needs_facts, ""},
      {"no MIME header at all", true, false, MimeFacts{false, T::absent, E::absent, false, true},
       P::quoted_printable, ""},
      {"text, no CTE", true, false, facts(T::text, E::absent), P::quoted_printable, ""},
      {"text, 8bit", true, false, facts(T::text, E::eight_bit), P::quoted_printable, ""},
      {"text, 7bit (mislabelled)", true, false, facts(T::text, E::seven_bit), P::quoted_printable, ""},
      {"no Content-Type, 8bit", true, false, facts(T::absent, E::eight_bit), P::quoted_printable, ""},
      {"8-bit header", true, false, facts(T::text, E::eight_bit, true), P::defer,
       "the header has 8-bit bytes"},
      {"8-bit header, 7-bit body", true, false, facts(T::text, E::absent, true, false), P::defer, "header"},
      {"8-bit only in a dropped Bcc", true, false, facts(T::text, E::absent, false, false), P::as_is, ""},
      {"multipart", true, false, facts(T::multipart, E::absent), P::defer, "multipart"},
      {"message/rfc822", true, false, facts(T::message, E::absent), P::defer, "encapsulated"},
      {"application/*", true, false, facts(T::other, E::eight_bit), P::defer, "not text"},
      {"two Content-Types", true, false, facts(T::ambiguous, E::eight_bit), P::defer,
       "more than one Content-Type"},
      {"binary", true, false, facts(T::text, E::binary), P::defer, "binary"},
      {"8-bit in quoted-printable", true, false, facts(T::text, E::quoted_printable), P::defer,
       "already encoded"},
      {"8-bit in base64", true, false, facts(T::text, E::base64), P::defer, "already encoded"},
      {"x-uuencode", true, false, facts(T::text, E::other), P::defer, "unknown Content-Transfer-Encoding"},
      {"two CTEs", true, false, facts(T::text, E::ambiguous), P::defer,
       "more than one Content-Transfer-Encoding"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    BodyDecision d = decide_body(r.eight_bit, r.server_8bitmime, r.facts);
    CHECK(d.plan == r.plan);
    if (r.plan == P::defer) {
      CHECK(d.reason.find("the server does not offer 8BITMIME") == 0);
      CHECK(d.reason.find(r.reason) != std::string::npos);
    } else {
      CHECK(d.reason.empty());
    }
  }
}

TEST_CASE("a conversion adds the transfer encoding, and MIME-Version and a charset when missing", "[mime]") {
  using V = std::vector<std::string>;
  const std::string cte = "Content-Transfer-Encoding: quoted-printable";
  CHECK(qp_header_lines(MimeFacts{true, MimeType::text, MimeEncoding::eight_bit, false, true}) == V{cte});
  CHECK(qp_header_lines(MimeFacts{false, MimeType::text, MimeEncoding::absent, false, true}) ==
        V{cte, "MIME-Version: 1.0"});
  CHECK(qp_header_lines(MimeFacts{false, MimeType::absent, MimeEncoding::absent, false, true}) ==
        V{cte, "MIME-Version: 1.0", "Content-Type: text/plain; charset=unknown-8bit"});
}

TEST_CASE("Content-Type and Content-Transfer-Encoding values are classified", "[mime]") {
  CHECK(classify_content_type(" text/plain; charset=utf-8") == MimeType::text);
  CHECK(classify_content_type("TEXT/HTML") == MimeType::text);
  CHECK(classify_content_type(" (a comment (nested)) multipart/alternative; boundary=x") ==
        MimeType::multipart);
  CHECK(classify_content_type("\tmessage/rfc822") == MimeType::message);
  CHECK(classify_content_type(" image/png") == MimeType::other);
  CHECK(classify_content_type("") == MimeType::other);
  CHECK(classify_content_type(" texts/plain") == MimeType::other);
  CHECK(classify_transfer_encoding(" 7BIT") == MimeEncoding::seven_bit);
  CHECK(classify_transfer_encoding(" 8bit (sent as is)") == MimeEncoding::eight_bit);
  CHECK(classify_transfer_encoding("binary") == MimeEncoding::binary);
  CHECK(classify_transfer_encoding(" Quoted-Printable") == MimeEncoding::quoted_printable);
  CHECK(classify_transfer_encoding(" base64") == MimeEncoding::base64);
  CHECK(classify_transfer_encoding(" x-uue") == MimeEncoding::other);
}

TEST_CASE("the quoted-printable encoder keeps RFC 2045 rules in any chunking", "[mime]") {
  struct Case {
    std::vector<std::string> lines;
    std::string out;
  };
  const std::vector<Case> cases = {
      {{"plain"}, "plain\r\n"},
      {{"a=b"}, "a=3Db\r\n"},
      {{"trailing ", "tab\t"}, "trailing=20\r\ntab=09\r\n"},
      {{"  inner  spaces"}, "  inner  spaces\r\n"},
      {{".", ".."}, "=2E\r\n=2E.\r\n"},
      {{std::string("nul\0x", 5)}, "nul=00x\r\n"},
      {{std::string(75, 'a')}, std::string(75, 'a') + "\r\n"},
      {{std::string(76, 'a')}, std::string(75, 'a') + "=\r\na\r\n"},
      {{std::string(75, 'a') + "."}, std::string(75, 'a') + "=\r\n=2E\r\n"},
      {{std::string(74, 'a') + " "}, std::string(74, 'a') + "=\r\n=20\r\n"},
      {{""}, "\r\n"},
  };
  for (const auto& c : cases) {
    std::string whole;
    QpEncoder e;
    for (const auto& l : c.lines) {
      e.put(l, whole);
      e.end_line(whole);
    }
    CHECK(whole == c.out);
    std::string bytewise;
    QpEncoder b;
    for (const auto& l : c.lines) {
      for (char ch : l) b.put(std::string_view(&ch, 1), bytewise);
      b.end_line(bytewise);
    }
    CHECK(bytewise == c.out);
  }
}
