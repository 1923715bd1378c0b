// tests/smtp/body_encoder_test.cpp — exact wire bytes for stored messages, whatever the chunking,
// including smuggling attempts (a bare "." line behind LF or lone CR), Bcc removal and the header
// line rule (only LF ends a header line; see common/header_lines.h).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "smtp/body_encoder.h"
#include "tests/support/hostile_headers.h"

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

// Body lines the slow, obvious way: split at CRLF, lone CR or LF.
std::vector<std::string> body_lines(std::string_view in) {
  std::vector<std::string> lines;
  std::string cur;
  bool open = false;  // cur holds a line that has not ended yet
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r' || in[i] == '\n') {
      if (in[i] == '\r' && i + 1 < in.size() && in[i + 1] == '\n') ++i;
      lines.push_back(std::exchange(cur, {}));
      open = false;
    } else {
      cur += in[i];
      open = true;
    }
  }
  if (open) lines.push_back(cur);
  return lines;
}

// "Name:" with optional white space before the colon (name: printable ASCII but ':'), lower-cased;
// "" if the line starts no field.
std::string field_name(const std::string& l) {
  std::string name;
  std::size_t i = 0;
  for (; i < l.size() && l[i] != ':'; ++i) {
    auto c = static_cast<unsigned char>(l[i]);
    if (c == ' ' || c == '\t') break;
    if (c < 33 || c > 126) return "";
    name += static_cast<char>(std::tolower(c));
  }
  while (i < l.size() && (l[i] == ' ' || l[i] == '\t')) ++i;
  return i < l.size() && l[i] == ':' ? name : "";
}

// The encoder's contract written the slow, obvious way, on the whole message at once. Header: only
// LF ends a line, the CRs right before it are dropped, any other CR becomes a space; Bcc:/Resent-Bcc:
// fields (and their continuations) are dropped; the header ends at an empty line, or before a line
// that is no field (an empty line is sent first if a header line was). Body: split at CRLF, lone CR
// or LF. Everywhere a
// leading dot is doubled, CRLF ends every line, ".\r\n" ends the message.
std::string reference_encode(std::string_view in) {
  std::vector<std::string> lines;
  bool any_field = false, dropping = false;
  std::size_t pos = 0;
  while (pos < in.size()) {  // the header
    std::size_t lf = in.find('\n', pos);
    std::string l(in.substr(pos, lf == std::string_view::npos ? in.size() - pos : lf - pos));
    pos = lf == std::string_view::npos ? in.size() : lf + 1;
    while (!l.empty() && l.back() == '\r') l.pop_back();
    std::replace(l.begin(), l.end(), '\r', ' ');
    if (l.size() > BodyEncoder::kMaxLine) return "ERROR: long line";  // dropped or not
    bool cont = !l.empty() && (l[0] == ' ' || l[0] == '\t');
    std::string name = cont ? "" : field_name(l);
    if (l.empty()) {
      lines.push_back(l);
      break;
    }
    if (cont && any_field) {
      if (!dropping) lines.push_back(l);
    } else if (!name.empty()) {
      any_field = true;
      dropping = name == "bcc" || name == "resent-bcc";
      if (!dropping) lines.push_back(l);
    } else {
      if (!lines.empty()) lines.push_back("");
      lines.push_back(l);
      break;
    }
  }
  for (auto& l : body_lines(in.substr(pos))) lines.push_back(std::move(l));
  std::string out;
  for (const auto& l : lines) {
    if (l.size() > BodyEncoder::kMaxLine) return "ERROR: long line";
    if (!l.empty() && l[0] == '.') out += '.';
    out += l + "\r\n";
  }
  return out + ".\r\n";
}

// Cuts `input` at the given offsets (sorted, within the input) and encodes the pieces.
std::string encode_cut(const std::string& input, const std::vector<std::size_t>& cuts) {
  BodyEncoder enc;
  std::string out;
  std::size_t from = 0;
  for (std::size_t i = 0; i <= cuts.size(); ++i) {
    std::size_t to = i < cuts.size() ? cuts[i] : input.size();
    auto r = enc.feed(std::string_view(input).substr(from, to - from), out);
    if (!r) return "ERROR: long line";
    from = to;
  }
  if (!enc.finish(out)) return "ERROR: long line";
  return out;
}

}  // namespace

TEST_CASE("random messages: the encoder matches the reference under random chunk boundaries", "[body]") {
  // Pieces that make the interesting boundaries frequent: CR, LF, CRLF, dots at line starts, Bcc
  // fields with continuations, long runs of text (some lines near the 998-octet limit).
  const std::vector<std::string> pieces = {"\r",
                                           "\n",
                                           "\r\n",
                                           ".",
                                           "..",
                                           "Bcc: x@y",
                                           "Resent-bcc : z",
                                           "\tfold",
                                           " cont",
                                           "To: a@b",
                                           "abcdefghijklmnopqrstuvwxyz0123456789",
                                           std::string(300, 'q'),
                                           std::string(990, 'w'),
                                           "\xc3\xa9",
                                           "\r\r"};
  std::mt19937 rng(8);  // fixed seed: a failure is reproducible
  for (int round = 0; round < 400; ++round) {
    std::string input;
    std::size_t n = std::uniform_int_distribution<std::size_t>(0, round < 300 ? 40 : 400)(rng);
    for (std::size_t i = 0; i < n; ++i) input += pieces[rng() % pieces.size()];
    std::vector<std::size_t> cuts;
    std::size_t ncuts = input.empty() ? 0 : rng() % 12;
    for (std::size_t i = 0; i < ncuts; ++i) cuts.push_back(rng() % (input.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    INFO("round " << round << ", " << input.size() << " bytes, " << cuts.size() << " cuts");
    std::string want = reference_encode(input);
    REQUIRE(encode_cut(input, cuts) == want);
    REQUIRE(encode_cut(input, {}) == want);
    if (want.rfind("ERROR", 0) != 0) CHECK(only_crlf(want));
  }
}

TEST_CASE("a 300 KiB message is identical whether fed whole, in 64 KiB chunks or in odd ones", "[body]") {
  std::string input = "From: a@b\nBcc: hidden@x\n  more@x\nSubject: big\n\n";
  for (int i = 0; input.size() < 300 * 1024; ++i) {
    input += i % 7 == 0 ? ".dot line\n" : i % 11 == 0 ? "crlf line\r\n" : i % 13 == 0 ? "cr line\r" : "";
    input += "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopq\n";
  }
  std::string whole = encode(input, input.size());
  REQUIRE(whole == reference_encode(input));
  for (std::size_t step : {std::size_t{65536}, std::size_t{65535}, std::size_t{4093}, std::size_t{81}})
    CHECK(encode(input, step) == whole);
}

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
      {"lone CR only", "A: 1\n\nx\ry", "A: 1\r\n\r\nx\r\ny\r\n.\r\n"},
      {"CR CR LF is two line ends", "A: 1\n\nx\r\r\ny", "A: 1\r\n\r\nx\r\n\r\ny\r\n.\r\n"},
      {"LF CR is two line ends", "A: 1\n\nx\n\ry", "A: 1\r\n\r\nx\r\n\r\ny\r\n.\r\n"},
      {"dot lines", "\n.\n..\n.x\n", "\r\n..\r\n...\r\n..x\r\n.\r\n"},
      {"ends with dot no newline", "\na\n.", "\r\na\r\n..\r\n.\r\n"},
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
      {"header: lone CR is a space", "A: 1\rB: 2\n\n", "A: 1 B: 2\r\n\r\n.\r\n"},
      {"header: CR CR LF is one line end", "A: 1\r\r\nB: 2\n\n", "A: 1\r\nB: 2\r\n\r\n.\r\n"},
      {"header: no field, no header", "x\ry", "x y\r\n.\r\n"},
      {"header: a dot line is no field", ".\n..\n", "..\r\n...\r\n.\r\n"},
      {"header: continuation before any field is no header", " a\nBcc: x\n", " a\r\nBcc: x\r\n.\r\n"},
      {"header: no field after a field, an empty line first", "A: 1\nx\nBcc: y\n",
       "A: 1\r\n\r\nx\r\nBcc: y\r\n.\r\n"},
      {"header: after dropped fields only no empty line", "Bcc: 1\n 2\nx\rBcc: y\n", "x Bcc: y\r\n.\r\n"},
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
  std::string ok_crlf = "\n" + std::string(998, 'x') + "\r\n";
  CHECK(encode(ok_crlf, 999).substr(2, 998) == std::string(998, 'x'));
  std::string dotted = "\n." + std::string(997, 'x') + "\n";  // stuffing does not count
  CHECK(encode(dotted, 10).size() == 2 + 999 + 2 + 3);
  std::string dotted_header = "." + std::string(997, 'x') + "\n";  // no field: no header
  CHECK(encode(dotted_header, 10).size() == 999 + 2 + 3);
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
      {"\nabc\r\nde\n", false, 3},
      {"\nab\rcdef", false, 4},
      {"ab\rcdef", false, 7},
      {"A: 1\r\r\r\nB: 22\r\n\r\r\nxyz\r", false, 5},
      {"x\nBcc: 1\n", false, 6},
      {"Bcc: 1\n 2\nA: 1\n\n", false, 6},
      {"a\xc3\xa9\n", true, 3},
      {std::string(1200, 'y') + "\r\n", false, 1200},
      {"\n.\n..x\r\n\r.", false, 3},
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

// Where LF-only and CR-splitting readers of a header disagree (tests/support/hostile_headers.h):
// the encoder must send the header the drop parser and `sendmail -t` read, never a Bcc: field in
// it, never a bare CR or LF, whatever the chunking.
TEST_CASE("a header with stray CRs goes out as the parser read it, without Bcc", "[body]") {
  for (const auto& c : spoold::test::hostile_headers()) {
    INFO(c.name);
    CHECK_FALSE(spoold::test::wire_header_has_blind_field(c.wire));
    CHECK(reference_encode(c.message) == c.wire);
    for (std::size_t step = 1; step <= c.message.size(); ++step) {
      INFO("step " << step);
      std::string wire = encode(c.message, step);
      REQUIRE(wire == c.wire);
      CHECK(only_crlf(wire));
      BodyScanner scan;
      for (std::size_t i = 0; i < c.message.size(); i += step)
        scan.feed(std::string_view(c.message).substr(i, step));
      CHECK(scan.result().longest_line == c.longest);
    }
  }
}

TEST_CASE("a header line is limited to 998 octets as sent, CRs before its LF not counted", "[body]") {
  std::string ok = "A: " + std::string(995, 'x') + std::string(2000, '\r') + "\n\nb\n";
  CHECK(encode(ok, 7) == "A: " + std::string(995, 'x') + "\r\n\r\nb\r\n.\r\n");
  std::string bad = "A: " + std::string(994, 'x') + "\r\r" + "y\n\n";  // two CRs become spaces
  CHECK(encode(bad, 7).find("ERROR") == 0);
  CHECK(encode(bad, bad.size()).find("ERROR") == 0);
}
