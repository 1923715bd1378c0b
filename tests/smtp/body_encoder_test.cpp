// tests/smtp/body_encoder_test.cpp — exact wire bytes for stored messages, whatever the chunking,
// including smuggling attempts (a bare "." line behind LF or lone CR), Bcc removal, the header
// line rule (only LF ends a header line; see common/header_lines.h), the wrapping of lines over 998
// octets and the quoted-printable conversion.
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

// Encodes `input` cut into `step`-byte chunks; returns the wire bytes.
std::string encode(const std::string& input, std::size_t step, std::vector<std::string> prepend = {},
                   std::vector<std::string> qp = {}, std::size_t* wrapped = nullptr) {
  BodyEncoder enc(std::move(prepend), std::move(qp));
  std::string out;
  for (std::size_t i = 0; i < input.size(); i += step) enc.feed(std::string_view(input).substr(i, step), out);
  enc.finish(out);
  if (wrapped) *wrapped = enc.wrapped_lines();
  return out;
}

// No wire line longer than 998 octets (dot-stuffing aside, RFC 5321 §4.5.2 counts it not).
bool short_lines(const std::string& wire) {
  for (std::size_t at = 0; at < wire.size();) {
    std::size_t eol = wire.find("\r\n", at);
    if (eol == std::string::npos) return false;
    std::size_t len = eol - at - (wire[at] == '.' && eol - at > 1 ? 1 : 0);
    if (len > BodyEncoder::kMaxLine) return false;
    at = eol + 2;
  }
  return true;
}

// Where a line over 998 octets is cut without a fold point: after 998, or before the UTF-8
// sequence that octet 999 continues (looked for 3 octets back at most).
std::size_t ref_cut(const std::string& l) {
  auto cont = [&](std::size_t i) { return (static_cast<unsigned char>(l[i]) & 0xC0) == 0x80; };
  for (std::size_t b = 998; b >= 995; --b)
    if (!cont(b)) return b;
  return 998;
}

// A body line (or the header's first non-field line) as wire lines.
std::vector<std::string> ref_wrap_body(std::string l) {
  std::vector<std::string> out;
  while (l.size() > 998) {
    std::size_t b = ref_cut(l);
    out.push_back(l.substr(0, b));
    l.erase(0, b);
  }
  out.push_back(l);
  return out;
}

// A header field line as wire lines: folded before the last SP/HT at index <= 998 that has a
// non-white octet before it (after the colon on a field's first line), else CRLF SP inserted at
// the cut.
std::vector<std::string> ref_fold(std::string l, bool first_line) {
  std::vector<std::string> out;
  std::size_t floor = first_line ? l.find(':') + 1 : 0;
  while (l.size() > 998) {
    std::size_t b = 0;
    for (std::size_t i = 1; i <= 998; ++i)
      if ((l[i] == ' ' || l[i] == '\t') && l.find_first_not_of(" \t", floor) < i) b = i;
    floor = 0;
    if (b > 0) {
      out.push_back(l.substr(0, b));
      l.erase(0, b);
    } else {
      b = ref_cut(l);
      out.push_back(l.substr(0, b));
      l = " " + l.substr(b);
    }
  }
  out.push_back(l);
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
  std::vector<std::string> lines;  // wire lines
  auto field = [&](const std::string& l) {
    bool first = l[0] != ' ' && l[0] != '\t';
    for (auto& piece : ref_fold(l, first)) lines.push_back(std::move(piece));
  };
  auto body = [&](const std::string& l) {
    for (auto& piece : ref_wrap_body(l)) lines.push_back(std::move(piece));
  };
  bool any_field = false, dropping = false;
  std::size_t pos = 0;
  while (pos < in.size()) {  // the header
    std::size_t lf = in.find('\n', pos);
    std::string l(in.substr(pos, lf == std::string_view::npos ? in.size() - pos : lf - pos));
    pos = lf == std::string_view::npos ? in.size() : lf + 1;
    while (!l.empty() && l.back() == '\r') l.pop_back();
    std::replace(l.begin(), l.end(), '\r', ' ');
    bool cont = !l.empty() && (l[0] == ' ' || l[0] == '\t');
    std::string name = cont ? "" : field_name(l);
    if (l.empty()) {
      lines.push_back(l);
      break;
    }
    if (cont && any_field) {
      if (!dropping) field(l);
    } else if (!name.empty()) {
      any_field = true;
      dropping = name == "bcc" || name == "resent-bcc";
      if (!dropping) field(l);
    } else {
      if (!lines.empty()) lines.push_back("");
      body(l);
      break;
    }
  }
  for (auto& l : body_lines(in.substr(pos))) body(l);
  std::string out;
  for (const auto& l : lines) {
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
    enc.feed(std::string_view(input).substr(from, to - from), out);
    from = to;
  }
  enc.finish(out);
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
                                           std::string(1500, 'v'),
                                           std::string(700, 'u') + " " + std::string(700, 'u'),
                                           "\xe2\x82\xac\xe2\x82\xac",
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
    CHECK(only_crlf(want));
    CHECK(short_lines(want));
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

TEST_CASE("lines over 998 octets are wrapped, never refused; 998 is left alone", "[body]") {
  const std::string x998(998, 'x'), x999(999, 'x');
  struct Case {
    std::string name, input, wire;
    std::size_t wrapped;
  };
  const std::vector<Case> cases = {
      {"998 in the body", "A: 1\n\n" + x998 + "\n", "A: 1\r\n\r\n" + x998 + "\r\n.\r\n", 0},
      {"998 before CRLF", "\n" + x998 + "\r\n", "\r\n" + x998 + "\r\n.\r\n", 0},
      {"999 in the body: CRLF after 998, nothing added", "A: 1\n\n" + x999 + "\n",
       "A: 1\r\n\r\n" + x998 + "\r\nx\r\n.\r\n", 1},
      {"2500 without final newline", "\n" + std::string(2500, 'y'),
       "\r\n" + std::string(998, 'y') + "\r\n" + std::string(998, 'y') + "\r\n" + std::string(504, 'y') +
           "\r\n.\r\n",
       1},
      {"a piece that starts with a dot is stuffed", "\n" + x998 + ".x\n", "\r\n" + x998 + "\r\n..x\r\n.\r\n",
       1},
      {"a piece that is a lone dot is stuffed", "\n" + x998 + ".\n", "\r\n" + x998 + "\r\n..\r\n.\r\n", 1},
      {"no UTF-8 sequence is split", "\n" + std::string(997, 'a') + "\xe2\x82\xac" + "b\n",
       "\r\n" + std::string(997, 'a') + "\r\n\xe2\x82\xac" + "b\r\n.\r\n", 1},
      {"Latin-1 octets are cut at 998", "\n" + std::string(997, 'a') + "\xe9\xe9\n",
       "\r\n" + std::string(997, 'a') + "\xe9\r\n\xe9\r\n.\r\n", 1},
      {"a header field folds at its last space",
       "Subject: " + std::string(600, 's') + " " + std::string(600, 't') + "\n\nb\n",
       "Subject: " + std::string(600, 's') + "\r\n " + std::string(600, 't') + "\r\n\r\nb\r\n.\r\n", 1},
      {"a header field folds at a tab", "X: " + std::string(500, 'a') + "\t" + std::string(600, 'b') + "\n\n",
       "X: " + std::string(500, 'a') + "\r\n\t" + std::string(600, 'b') + "\r\n\r\n.\r\n", 1},
      {"a space at octet 999 is a fold point", "X: " + std::string(995, 'a') + " b\n\n",
       "X: " + std::string(995, 'a') + "\r\n b\r\n\r\n.\r\n", 1},
      {"no white space: CRLF SP after 998", "X: " + std::string(1200, 'z') + "\n\n",
       "X: " + std::string(995, 'z') + "\r\n " + std::string(205, 'z') + "\r\n\r\n.\r\n", 1},
      {"white space only at the start is no fold point",
       "X:" + std::string(1, ' ') + std::string(1000, 'q') + "\n\n",
       "X: " + std::string(995, 'q') + "\r\n " + std::string(5, 'q') + "\r\n\r\n.\r\n", 1},
      {"a long continuation folds too", "X: a\n " + std::string(1100, 'c') + "\n\n",
       "X: a\r\n " + std::string(997, 'c') + "\r\n " + std::string(103, 'c') + "\r\n\r\n.\r\n", 1},
      {"a long Bcc is dropped, not wrapped", "Bcc: " + std::string(3000, 'h') + "\nA: 1\n\n",
       "A: 1\r\n\r\n.\r\n", 0},
      {"a long non-field header line is the body's first", "A: 1\n" + std::string(1000, 'n') + "\n",
       "A: 1\r\n\r\n" + std::string(998, 'n') + "\r\nnn\r\n.\r\n", 1},
      {"a field name longer than a line is still a field", std::string(1200, 'N') + ": v\nBcc: s\n\nb\n",
       std::string(998, 'N') + "\r\n " + std::string(202, 'N') + ": v\r\n\r\nb\r\n.\r\n", 1},
      {"two long lines count two", "\n" + x999 + "\n" + x999 + "\n",
       "\r\n" + x998 + "\r\nx\r\n" + x998 + "\r\nx\r\n.\r\n", 2},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    CHECK(reference_encode(c.input) == c.wire);
    for (std::size_t step :
         {std::size_t{1}, std::size_t{7}, std::size_t{500}, std::size_t{999}, c.input.size()}) {
      INFO("step " << step);
      std::size_t wrapped = 0;
      std::string wire = encode(c.input, step, {}, {}, &wrapped);
      REQUIRE(wire == c.wire);
      CHECK(wrapped == c.wrapped);
      CHECK(only_crlf(wire));
      CHECK(short_lines(wire));
    }
  }
}

TEST_CASE("quoted-printable conversion rewrites the transfer encoding and encodes the body", "[body]") {
  const std::vector<std::string> add = {"Content-Transfer-Encoding: quoted-printable", "MIME-Version: 1.0"};
  struct Case {
    std::string name, input, wire;
  };
  const std::vector<Case> cases = {
      {"8bit text",
       "Subject: s\nContent-Transfer-Encoding: 8bit\nContent-Type: text/plain; "
       "charset=utf-8\n\nd\xc3\xa9j\xc3\xa0 = vu \n",
       "Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
       "quoted-printable\r\n"
       "MIME-Version: 1.0\r\n\r\nd=C3=A9j=C3=A0 =3D vu=20\r\n.\r\n"},
      {"folded CTE dropped whole", "Content-Transfer-Encoding:\n 8bit\nA: 1\n\n\xff\n",
       "A: 1\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n=FF\r\n.\r\n"},
      {"no header at all", "\xe9t\xe9\n",
       "Content-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n=E9t=E9\r\n.\r\n"},
      {"header ends at a non-field line", "A: 1\nplain \xe9\n",
       "A: 1\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\nplain =E9\r\n.\r\n"},
      {"dots, tabs, CR line ends", "A: 1\n\n.\r\n.x\t\ry\t",
       "A: 1\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: "
       "1.0\r\n\r\n=2E\r\n=2Ex=09\r\ny=09\r\n.\r\n"},
      {"soft breaks keep lines at 76", "A: 1\n\n" + std::string(80, 'a') + "\n",
       "A: 1\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n" +
           std::string(75, 'a') + "=\r\naaaaa\r\n.\r\n"},
      {"an encoded octet is not split by a soft break", "A: 1\n\n" + std::string(74, 'a') + "\xe9\n",
       "A: 1\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n" +
           std::string(74, 'a') + "=\r\n=E9\r\n.\r\n"},
      {"a long 8-bit line needs no wrapping", "A: 1\n\n" + std::string(2000, '\xe9') + "\n", ""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    std::string whole = encode(c.input, c.input.size(), {}, add);
    if (!c.wire.empty()) CHECK(whole == c.wire);
    CHECK(only_crlf(whole));
    for (std::size_t at = 0; at < whole.size(); at = whole.find("\r\n", at) + 2)
      REQUIRE(whole.find("\r\n", at) - at <= 76);
    for (std::size_t step = 1; step <= std::min<std::size_t>(c.input.size(), 40); ++step) {
      INFO("step " << step);
      REQUIRE(encode(c.input, step, {}, add) == whole);
    }
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
      {"A: " + std::string(1200, 'y') + "\n\n" + std::string(3000, 'z'), false, 3000},
      {"Content-Type: text/plain\n\n\xe9\n", true, 24},
      {"\n.\n..x\r\n\r.", false, 3},
      {"A: 1\n\na\n.\nMAIL FROM:<x>", false, 13},
  };
  for (const auto& c : cases) {
    INFO(c.input.substr(0, 40));
    // The size is what the encoder emits, without the final ".\r\n" and the stuffed dots.
    std::string wire;
    BodyEncoder enc;
    enc.feed(c.input, wire);
    enc.finish(wire);
    std::size_t stuffed = 0;  // RFC 1870 does not count the doubled dots
    for (std::size_t at = 0; at + 3 < wire.size(); at = wire.find("\r\n", at) + 2)
      if (wire[at] == '.') ++stuffed;
    for (std::size_t step : {std::size_t{1}, std::size_t{2}, std::size_t{4096}}) {
      BodyScanner s;
      for (std::size_t i = 0; i < c.input.size(); i += step)
        s.feed(std::string_view(c.input).substr(i, step));
      CHECK(s.result().eight_bit == c.eight_bit);
      CHECK(s.result().longest_line == c.longest);
      CHECK(s.result().wire_size == wire.size() - 3 - stuffed);
      BodyScanner q(true);
      for (std::size_t i = 0; i < c.input.size(); i += step)
        q.feed(std::string_view(c.input).substr(i, step));
      BodyInfo qi = q.result();
      CHECK(qi.wire_size == wire.size() - 3 - stuffed);
      CHECK(qi.qp_wire_size == encode(c.input, step, {}, qp_header_lines(*qi.mime)).size() - 3);
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

TEST_CASE("a header line is measured as sent, CRs before its LF not counted", "[body]") {
  std::string ok = "A: " + std::string(995, 'x') + std::string(2000, '\r') + "\n\nb\n";
  CHECK(encode(ok, 7) == "A: " + std::string(995, 'x') + "\r\n\r\nb\r\n.\r\n");
  std::string two = "A: " + std::string(994, 'x') + "\r\r" + "y\n\n";         // two CRs become spaces
  std::string want = "A: " + std::string(994, 'x') + " \r\n y\r\n\r\n.\r\n";  // folded at the second
  CHECK(encode(two, 7) == want);
  CHECK(encode(two, two.size()) == want);
}

TEST_CASE("the scanner learns the MIME facts of the header as sent", "[body]") {
  struct Case {
    std::string input;
    MimeFacts facts;
  };
  using T = MimeType;
  using E = MimeEncoding;
  const std::vector<Case> cases = {
      {"", {false, T::absent, E::absent, false, false}},
      {"Subject: x\n\n\xe9\n", {false, T::absent, E::absent, false, true}},
      {"MIME-Version: 1.0\nContent-Type: Text/Plain;\n charset=utf-8\nContent-Transfer-Encoding: 8BIT\n\nx\n",
       {true, T::text, E::eight_bit, false, false}},
      {"Content-Type:\n multipart/mixed; boundary=b\n\n", {false, T::multipart, E::absent, false, false}},
      {"Content-Type: (c) message/rfc822\n\n", {false, T::message, E::absent, false, false}},
      {"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n",
       {false, T::other, E::base64, false, false}},
      {"Content-Type: text/plain\ncontent-type: text/html\n\n",
       {false, T::ambiguous, E::absent, false, false}},
      {"Content-Transfer-Encoding: 7bit\nContent-Transfer-Encoding: 8bit\n\n",
       {false, T::absent, E::ambiguous, false, false}},
      {"Subject: \xc3\xa9\n\nx", {false, T::absent, E::absent, true, false}},
      {"Bcc: \xc3\xa9\n\nx", {false, T::absent, E::absent, false, false}},  // not sent
      {"A: 1\n\xc3\xa9 first body line\n", {false, T::absent, E::absent, false, true}},
      {"A: 1\n\nContent-Type: multipart/mixed\n", {false, T::absent, E::absent, false, false}},  // body
  };
  for (const auto& c : cases) {
    INFO(c.input);
    for (std::size_t step : {std::size_t{1}, std::size_t{3}, std::size_t{4096}}) {
      BodyScanner s;
      for (std::size_t i = 0; i < c.input.size(); i += step)
        s.feed(std::string_view(c.input).substr(i, step));
      REQUIRE(s.result().mime.has_value());
      CHECK(*s.result().mime == c.facts);
    }
  }
}
