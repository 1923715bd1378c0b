// fuzz/header_diff_fuzz.cpp — differential libFuzzer target for the header line rule
// (common/header_lines.h): the drop parser, `sendmail -t` and the SMTP encoder/scanner each read
// the same bytes, and must agree.
// Rule (abort on violation), for any bytes read as a drop file, as a bare message behind an
// envelope, and as `sendmail -t` input:
//   * the encoder's wire header is exactly the header lines the parser read, Bcc:/Resent-Bcc:
//     fields (with their continuations) left out, lines over 998 octets folded (fields) or cut
//     (the body's first line) as written out here, ending where the parser's header ended;
//   * no Bcc:/Resent-Bcc: field is in the wire header (up to the first empty line, when the
//     first line is a field); the wire has no bare CR or LF and exactly one final dot;
//   * the parser's longest line and 8-bit facts are the scanner's; no wire line is over 998
//     octets (the stuffed dot aside); the scanner's size is the wire's;
//   * converted to quoted-printable the wire is as well formed, without Bcc:, and its body lines
//     are at most 76 octets;
//   * masqueraded, the wire header is the same with each From:/Sender: field (its lines joined by
//     LF, when at most kMaxHeldField octets) passed through masquerade_field, and the wire is
//     never longer than without masquerading (SIZE= stays an upper bound);
//   * `sendmail -t` reads the fields (names, unfolded values) the parser reads, and takes the
//     same recipients as a bare drop of the same message.
// The sources are listed (one line, for fuzz/run.sh): ctl/ as a library would bring its main().
// clang-format off
// fuzz-sources: spool/drop.cpp spool/dsn.cpp spool/address.cpp spool/atomic_write.cpp spool/crashpoint.cpp spool/fs_util.cpp smtp/body_encoder.cpp smtp/mime_convert.cpp smtp/rewrite.cpp smtp/types.cpp ctl/submit.cpp
// clang-format on
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/header_lines.h"
#include "ctl/submit.h"
#include "smtp/body_encoder.h"
#include "smtp/rewrite.h"
#include "spool/drop.h"

using namespace spoold;

namespace {

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "header_diff_fuzz: %s\n", what);
  std::abort();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Written out here instead of taken from header_lines.h, so a wrong rule there is caught.
bool names_blind_field(std::string_view line) {
  std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  std::string name = lower(line.substr(0, colon));
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
  return name == "bcc" || name == "resent-bcc";
}

struct Pieces {  // chunk sizes for the streaming readers, taken from the input itself
  std::size_t parser, encoder;
};

struct Parsed {
  Result<spool::DropInfo> info = make_error("not run");
  std::vector<std::pair<HeaderLineKind, std::string>> lines;  // the header as the parser read it
};

Parsed parse(std::string_view drop, std::size_t step) {
  Parsed out;
  spool::DropParser p;
  p.observe_header(
      [&](HeaderLineKind k, std::string_view line) { out.lines.emplace_back(k, std::string(line)); });
  for (std::size_t i = 0; i < drop.size(); i += step) (void)p.feed(drop.substr(i, step));
  out.info = p.finish();
  return out;
}

struct Encoded {
  bool ok = false;
  std::string wire;
};

Encoded encode(std::string_view message, std::size_t step, const std::vector<std::string>& prepend,
               const std::vector<std::string>& qp = {}, const std::vector<std::string>& masquerade = {}) {
  smtp::BodyEncoder enc(prepend, qp, masquerade);
  Encoded out;
  for (std::size_t i = 0; i < message.size(); i += step) enc.feed(message.substr(i, step), out.wire);
  enc.finish(out.wire);
  out.ok = true;
  return out;
}

// Where a line over 998 octets is cut without a fold point: after 998, or before the UTF-8
// sequence octet 999 continues (3 octets back at most).
std::size_t cut_at(std::string_view l) {
  for (std::size_t b = 998; b >= 995; --b)
    if ((static_cast<unsigned char>(l[b]) & 0xC0) != 0x80) return b;
  return 998;
}

// A line as wire lines: a field (or its continuation) folded before its last SP/HT within 998
// octets that has a non-white octet before it (after the colon on the field's first line), else
// CRLF SP inserted; any other line cut with nothing added.
std::vector<std::string> wrap(std::string l, bool field, bool first_line) {
  std::vector<std::string> out;
  std::size_t floor = field && first_line ? l.find(':') + 1 : 0;
  while (l.size() > 998) {
    std::size_t b = 0;
    if (field) {
      for (std::size_t i = 1; i <= 998; ++i)
        if ((l[i] == ' ' || l[i] == '\t') && l.find_first_not_of(" \t", floor) < i) b = i;
    }
    floor = 0;
    if (b > 0) {
      out.push_back(l.substr(0, b));
      l.erase(0, b);
      continue;
    }
    b = cut_at(l);
    out.push_back(l.substr(0, b));
    l = (field ? " " : "") + l.substr(b);
  }
  out.push_back(l);
  return out;
}

void check_line_lengths(const std::string& wire, std::size_t limit, std::size_t from = 0) {
  for (std::size_t at = from; at < wire.size();) {
    std::size_t eol = wire.find("\r\n", at);
    if (eol == std::string::npos) return;
    std::size_t len = eol - at - (wire[at] == '.' && eol - at > 1 ? 1 : 0);
    require(len <= limit, "a wire line is too long");
    at = eol + 2;
  }
}

void check_wire(const std::string& wire) {
  for (std::size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\r') require(i + 1 < wire.size() && wire[i + 1] == '\n', "bare CR on the wire");
    if (wire[i] == '\n') require(i > 0 && wire[i - 1] == '\r', "bare LF on the wire");
  }
  // Exactly one line holding only ".": the last.
  if (wire != ".\r\n") {
    require(wire.rfind(".\r\n", 0) != 0, "a dot line before the end");
    require(wire.size() >= 5 && wire.find("\r\n.\r\n") == wire.size() - 5, "not one final dot");
  }
  // The header a receiver sees: when the first line is a field, everything to the first empty line.
  std::size_t eol = wire.find("\r\n");
  if (header_name_length(std::string_view(wire).substr(0, eol)) == 0) return;
  for (std::size_t at = 0; at < wire.size();) {
    eol = wire.find("\r\n", at);
    std::string_view line = std::string_view(wire).substr(at, eol - at);
    if (line.empty()) break;
    require(!names_blind_field(line), "Bcc: field in the wire header");
    at = eol + 2;
  }
}

// The wire header the parser's reading calls for, and whether the parser saw the header end.
const std::vector<std::string> kMasquerade = {"example.com", "b.example.org"};

bool names_masqueraded_field(std::string_view line) {
  std::string name = lower(line.substr(0, header_name_length(line)));
  return name == "from" || name == "sender";
}

// The parser's header lines with each From:/Sender: field masqueraded as a whole.
std::vector<std::pair<HeaderLineKind, std::string>> masqueraded_lines(const Parsed& p) {
  std::vector<std::pair<HeaderLineKind, std::string>> out;
  const auto& in = p.lines;
  for (std::size_t i = 0; i < in.size();) {
    if (in[i].first != HeaderLineKind::field || !names_masqueraded_field(in[i].second)) {
      out.push_back(in[i++]);
      continue;
    }
    std::string joined = in[i].second;
    std::size_t j = i + 1;
    for (; j < in.size() && in[j].first == HeaderLineKind::continuation; ++j) joined += "\n" + in[j].second;
    if (joined.size() <= smtp::BodyEncoder::kMaxHeldField)
      if (auto r = smtp::masquerade_field(joined, kMasquerade)) joined = *r;
    HeaderLineKind kind = HeaderLineKind::field;
    for (std::size_t at = 0;;) {
      std::size_t nl = joined.find('\n', at);
      out.emplace_back(kind, joined.substr(at, nl - at));
      kind = HeaderLineKind::continuation;
      if (nl == std::string::npos) break;
      at = nl + 1;
    }
    i = j;
  }
  return out;
}

std::pair<std::string, bool> expected_header(const std::vector<std::pair<HeaderLineKind, std::string>>& lines,
                                             const std::vector<std::string>& prepend) {
  std::string out;
  auto emit_one = [&](std::string_view l) {
    if (!l.empty() && l[0] == '.') out += '.';
    out.append(l);
    out += "\r\n";
  };
  auto emit = [&](std::string_view l, bool field = true) {
    bool first = !l.empty() && l[0] != ' ' && l[0] != '\t';
    for (const auto& piece : wrap(std::string(l), field, first)) emit_one(piece);
  };
  for (const auto& h : prepend) emit(h);
  bool sent = !prepend.empty(), dropping = false;
  for (const auto& [kind, line] : lines) {
    switch (kind) {
      case HeaderLineKind::field:
        dropping = names_blind_field(line);
        [[fallthrough]];
      case HeaderLineKind::continuation:
        if (!dropping) {
          emit(line);
          sent = true;
        }
        break;
      case HeaderLineKind::end:
        emit("");
        return {out, true};
      case HeaderLineKind::body:
        if (sent) emit("");
        emit(line, false);
        return {out, true};
    }
  }
  return {out, false};
}

// Octets of the wire without the final dot, the stuffed dots and the prepended lines: what the
// scanner counts.
std::uint64_t scanned_size(const std::string& wire, const std::vector<std::string>& prepend) {
  std::uint64_t n = wire.size() - 3;
  for (const auto& h : prepend) n -= h.size() + 2;
  for (std::size_t at = 0; at + 3 < wire.size(); at = wire.find("\r\n", at) + 2)
    if (wire[at] == '.') --n;
  return n;
}

void check_message(std::string_view drop, const Pieces& step, bool prepend_date) {
  Parsed p = parse(drop, step.parser);
  std::string_view message = drop.substr(p.info.ok() ? p.info->body_offset : 0);
  std::vector<std::string> prepend;
  if (prepend_date) prepend.push_back("Date: Thu, 1 Jan 2026 00:00:00 +0000");
  Encoded e = encode(message, step.encoder, prepend);
  smtp::BodyScanner scan;
  for (std::size_t i = 0; i < message.size(); i += step.encoder) scan.feed(message.substr(i, step.encoder));
  smtp::BodyInfo facts = scan.result();
  check_line_lengths(e.wire, smtp::BodyEncoder::kMaxLine);
  if (e.ok) {
    check_wire(e.wire);
    // The scanner knows nothing of prepended lines, nor so of the empty line they may call for.
    std::uint64_t size = scanned_size(e.wire, prepend);
    require(facts.wire_size == size || (!prepend.empty() && facts.wire_size + 2 == size),
            "scanner size is not the wire's");
  }
  if (!p.info.ok()) return;
  require(p.info->longest_line == facts.longest_line, "parser and scanner disagree on the longest line");
  require(p.info->eight_bit == facts.eight_bit, "parser and scanner disagree on 8-bit");
  if (!e.ok) return;
  auto [header, ended] = expected_header(p.lines, prepend);
  if (ended)
    require(e.wire.compare(0, header.size(), header) == 0, "wire header is not the parser's");
  else
    require(e.wire == header + ".\r\n", "wire is not the parser's header-only message");
  // Masqueraded: From:/Sender: rewritten, nothing else, never longer.
  Encoded me = encode(message, step.encoder, prepend, {}, kMasquerade);
  check_wire(me.wire);
  check_line_lengths(me.wire, smtp::BodyEncoder::kMaxLine);
  require(me.wire.size() <= e.wire.size(), "masquerading made the message longer");
  auto [mheader, mended] = expected_header(masqueraded_lines(p), prepend);
  require(mended == ended, "masquerading changed where the header ends");
  if (mended)
    require(me.wire.compare(0, mheader.size(), mheader) == 0, "masqueraded header is not the expected one");
  else
    require(me.wire == mheader + ".\r\n", "masqueraded header-only message is not the expected one");
  if (ended)
    require(me.wire.compare(mheader.size(), std::string::npos, e.wire, header.size()) == 0,
            "masquerading changed the body");
  bool blind = false, date = false;
  for (const auto& [kind, line] : p.lines) {
    if (kind != HeaderLineKind::field) continue;
    blind = blind || names_blind_field(line);
    date = date || lower(line.substr(0, header_name_length(line))) == "date";
  }
  require(p.info->has_bcc == blind, "has_bcc is not what the header holds");
  require(p.info->missing_date == !date, "missing_date is not what the header holds");
  // Converted to quoted-printable: as well formed, and the scanner knew its size.
  smtp::BodyScanner qscan(true);
  for (std::size_t i = 0; i < message.size(); i += step.encoder) qscan.feed(message.substr(i, step.encoder));
  smtp::BodyInfo q = qscan.result();
  Encoded qe = encode(message, step.encoder, prepend, smtp::qp_header_lines(*q.mime));
  check_wire(qe.wire);
  check_line_lengths(qe.wire, smtp::BodyEncoder::kMaxLine);
  std::size_t body = qe.wire.find("\r\n\r\n");
  if (body != std::string::npos) check_line_lengths(qe.wire, 76, body + 4);
  std::uint64_t qsize = scanned_size(qe.wire, prepend);
  require(q.qp_wire_size == qsize || (!prepend.empty() && q.qp_wire_size + 2 == qsize),
          "scanner's quoted-printable size is not the wire's");
}

// The parser's fields of a message, unfolded, as `sendmail -t` must read them.
std::vector<ctl::HeaderField> parser_fields(const Parsed& p) {
  std::vector<ctl::HeaderField> out;
  for (const auto& [kind, line] : p.lines) {
    if (kind == HeaderLineKind::field)
      out.push_back({lower(line.substr(0, header_name_length(line))), std::string(header_value(line))});
    else if (kind == HeaderLineKind::continuation)
      out.back().value += line;
  }
  return out;
}

void check_submit(std::string_view in, const Pieces& step) {
  static const std::string kEnv = "MAIL FROM:<a@b.test>\nRCPT TO:<c@d.test>\n\n";
  Parsed p = parse(kEnv + std::string(in), step.parser);
  if (p.info.ok()) {
    auto fields = ctl::header_fields(in);
    auto want = parser_fields(p);
    require(fields.size() == want.size(), "sendmail -t and the parser disagree on the fields");
    for (std::size_t i = 0; i < fields.size(); ++i)
      require(fields[i].name == want[i].name && fields[i].value == want[i].value,
              "sendmail -t and the parser disagree on a field");
  }
  ctl::SubmitOptions o;
  o.extract = true;
  o.default_sender = "u@h.test";
  o.qualify_domain = "h.test";
  auto s = ctl::build_submission(std::string(in), o);
  if (!s) return;
  auto drop = parse(s->drop, step.parser);
  require(drop.info.ok(), "sendmail -t wrote a drop the parser refuses");
  check_message(s->drop, step, false);
  auto bare = spool::parse_drop(in);
  if (bare && bare->format == spool::DropFormat::rfc5322)
    require(bare->recipients == s->recipients, "sendmail -t and a bare drop take different recipients");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Pieces step{size == 0 ? 1u : 1u + data[0] % 11u, size < 2 ? 4096u : 1u + data[1] % 17u};
  bool prepend = size > 2 && (data[2] & 1);
  check_message(in, step, prepend);  // a drop file
  check_message("MAIL FROM:<a@b.test>\nRCPT TO:<c@d.test>\n\n" + std::string(in), step,
                prepend);  // a message
  check_submit(in, step);
  return 0;
}
