// tests/smtp/body_encoder_test.cpp — exact wire bytes for stored messages, whatever the chunking,
// including smuggling attempts (a bare "." line behind LF or lone CR) and Bcc removal.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "smtp/body_encoder.h"

using namespace spoold::smtp;

namespace {

// Encodes `input` cut into `step`-byte chunks; returns the wire bytes or "ERROR: ...".
std::string encode(const std::string& input, std::size_t step, std::vector<std::string> prepend = {}) {
  BodyEncoder enc(std::move(prepend));
  std::string out;
  for (std::size_t i = 0; i < input.size(); i += step) {
    auto r = enc.feed(std::string_view(input).substr(i, step), out);
    if (!r) return "ERROR: " + r.error().message;
  }
  auto r = enc.finish(out);
  if (!r) return "ERROR: " + r.error().message;
  return out;
}

// No CR without LF and no LF without CR anywhere in the wire bytes.
bool only_crlf(const std::string& s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("stored messages become exact wire bytes under every chunking", "[body]") {
  struct Case {
    std::string name, input, wire;
  };
  const std::vector<Case> cases = {
      {"empty", "", ".\r\n"},
      {"LF", "Subject: x\n\nhello\n", "Subject: x\r\n\r\nhello\r\n.\r\n"},
      {"CRLF", "Subject: x\r\n\r\nhello\r\n", "Subject: x\r\n\r\nhello\r\n.\r\n"},
      {"mixed", "A: 1\r\nB: 2\n\na\rb\r\nc\n", "A: 1\r\nB: 2\r\n\r\na\r\nb\r\nc\r\n.\r\n"},
      {"no final newline", "A: 1\n\nlast", "A: 1\r\n\r\nlast\r\n.\r\n"},
      {"smuggle LF", "A: 1\n\na\n.\nMAIL FROM:<x@evil>\n",
       "A: 1\r\n\r\na\r\n..\r\nMAIL FROM:<x@evil>\r\n.\r\n"},
      {"smuggle lone CR", "A: 1\n\na\r.\r", "A: 1\r\n\r\na\r\n..\r\n.\r\n"},
      {"smuggle CR LF.CR", "A: 1\r\n\r\na\r\n.\rRCPT TO:<y>\r\n",
       "A: 1\r\n\r\na\r\n..\r\nRCPT TO:<y>\r\n.\r\n"},
      {"lone CR only", "x\ry", "x\r\ny\r\n.\r\n"},
      {"CR CR LF is two line ends", "x\r\r\ny", "x\r\n\r\ny\r\n.\r\n"},
      {"LF CR is two line ends", "x\n\ry", "x\r\n\r\ny\r\n.\r\n"},
      {"dot lines", ".\n..\n.x\n", "..\r\n...\r\n..x\r\n.\r\n"},
      {"ends with dot no newline", "a\n.", "a\r\n..\r\n.\r\n"},
      {"only newline", "\n", "\r\n.\r\n"},
      {"bcc dropped", "From: a\nBcc: b@x\nTo: c\n\nbody\n", "From: a\r\nTo: c\r\n\r\nbody\r\n.\r\n"},
      {"folded bcc dropped", "From: a\nBCC: b@x,\n\tc@x,\n  d@x\nTo: c\n\nbody\n",
       "From: a\r\nTo: c\r\n\r\nbody\r\n.\r\n"},
      {"bcc with space before colon", "bcc : b\nSubject: s\n\n", "Subject: s\r\n\r\n.\r\n"},
      {"resent-bcc dropped", "Resent-Bcc: z\nA: 1\n\n", "A: 1\r\n\r\n.\r\n"},
      {"bcc-like names kept", "Bccx: 1\nX-Bcc: 2\n\n", "Bccx: 1\r\nX-Bcc: 2\r\n\r\n.\r\n"},
      {"bcc in body kept", "A: 1\n\nBcc: not a header\n", "A: 1\r\n\r\nBcc: not a header\r\n.\r\n"},
      {"continuation of kept field", "Subject: a\n b\nBcc: x\n y\n\n", "Subject: a\r\n b\r\n\r\n.\r\n"},
      {"bcc last line without newline", "A: 1\nBcc: x", "A: 1\r\n.\r\n"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    std::size_t n = std::max<std::size_t>(c.input.size(), 1);
    for (std::size_t step = 1; step <= n; ++step) {
      INFO("step " << step);
      std::string wire = encode(c.input, step);
      REQUIRE(wire == c.wire);
      CHECK(only_crlf(wire));
    }
  }
}

TEST_CASE("missing Date and Message-ID are inserted at the top", "[body]") {
  Transaction txn;
  txn.missing_date = "Sun, 22 Nov 2026 04:00:00 +0000";
  txn.missing_message_id = "<1@h>\r\nBcc: injected";
  auto prepend = missing_headers(txn);
  REQUIRE(prepend.size() == 2);
  CHECK(encode("Subject: s\n\nb\n", 4, prepend) ==
        "Date: Sun, 22 Nov 2026 04:00:00 +0000\r\nMessage-ID: <1@h>Bcc: injected\r\n"
        "Subject: s\r\n\r\nb\r\n.\r\n");
  CHECK(encode("", 1, {"Date: d"}) == "Date: d\r\n.\r\n");
  Transaction none;
  CHECK(missing_headers(none).empty());
}

TEST_CASE("a line over 998 octets is a permanent error, 998 is fine", "[body]") {
  std::string ok = "A: 1\n\n" + std::string(998, 'x') + "\n";
  CHECK(encode(ok, 100) == "A: 1\r\n\r\n" + std::string(998, 'x') + "\r\n.\r\n");
  std::string ok_crlf = std::string(998, 'x') + "\r\n";
  CHECK(encode(ok_crlf, 999).substr(0, 998) == std::string(998, 'x'));
  std::string dotted = "." + std::string(997, 'x') + "\n";  // stuffing does not count
  CHECK(encode(dotted, 10).size() == 999 + 2 + 3);
  for (std::size_t step : {std::size_t{1}, std::size_t{500}, std::size_t{5000}}) {
    std::string bad = "A: 1\n\n" + std::string(999, 'x') + "\n";
    CHECK(encode(bad, step).find("ERROR: message has a line longer than 998") == 0);
    std::string bad_last = std::string(999, 'x');  // no newline
    CHECK(encode(bad_last, step).find("ERROR") == 0);
  }
}

TEST_CASE("the scanner finds 8-bit bytes, the longest line and the exact wire size", "[body]") {
  struct Case {
    std::string input;
    bool eight_bit;
    std::size_t longest;
  };
  const std::vector<Case> cases = {
      {"", false, 0},
      {"abc\r\nde\n", false, 3},
      {"ab\rcdef", false, 4},
      {"a\xc3\xa9\n", true, 3},
      {std::string(1200, 'y') + "\r\n", false, 1200},
      {".\n..x\r\n\r.", false, 3},
      {"A: 1\n\na\n.\nMAIL FROM:<x>", false, 13},
  };
  for (const auto& c : cases) {
    INFO(c.input.substr(0, 40));
    // The size is what the encoder emits, without the final ".\r\n" and the stuffed dots.
    std::string wire;
    BodyEncoder enc;
    bool legal = enc.feed(c.input, wire).ok() && enc.finish(wire).ok();
    std::size_t stuffed = 0;  // RFC 1870 does not count the doubled dots
    for (std::size_t at = 0; legal && at + 3 < wire.size(); at = wire.find("\r\n", at) + 2)
      if (wire[at] == '.') ++stuffed;
    for (std::size_t step : {std::size_t{1}, std::size_t{2}, std::size_t{4096}}) {
      BodyScanner s;
      for (std::size_t i = 0; i < c.input.size(); i += step)
        s.feed(std::string_view(c.input).substr(i, step));
      CHECK(s.result().eight_bit == c.eight_bit);
      CHECK(s.result().longest_line == c.longest);
      CHECK(legal == (c.longest <= BodyEncoder::kMaxLine));
      if (legal) CHECK(s.result().wire_size == wire.size() - 3 - stuffed);
    }
  }
}
