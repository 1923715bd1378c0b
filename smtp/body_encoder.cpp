// smtp/body_encoder.cpp — see body_encoder.h. The encoder works line by line with at most one
// line (998 octets) buffered, so a chunk boundary anywhere — inside a CRLF, right after a CR,
// inside a run of CRs, inside "Bcc:" — changes nothing on the wire. Header lines are read by the
// rule every header reader shares (common/header_lines.h), so the drop parser and `sendmail -t`
// take recipients from exactly the fields sent (Bcc: aside, which is never sent).
#include "smtp/body_encoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "common/line_ends.h"

namespace spoold::smtp {

namespace {

std::string strip_crlf(std::string_view v) {
  std::string out;
  for (char c : v)
    if (c != '\r' && c != '\n') out += c;
  return out;
}

const char* find_lf(const char* p, const char* end) {
  const void* hit = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
  return hit ? static_cast<const char*>(hit) : end;
}

// What one header line adds to the wire, as BodyEncoder::end_header_line sends it: its own
// CRLF-ended octets unless dropped, and the empty line sent before a line that is no header.
// Returns false once the header has ended.
bool account_header_line(BodyInfo& info, HeaderWalker& walker, bool& sent, std::string_view line,
                         std::uint64_t size) {
  info.longest_line = std::max<std::size_t>(info.longest_line, static_cast<std::size_t>(size));
  switch (walker.next(line)) {
    case HeaderLineKind::field:
    case HeaderLineKind::continuation:
      if (walker.blind()) return true;
      info.wire_size += size + 2;
      sent = true;
      return true;
    case HeaderLineKind::end:
      info.wire_size += 2;
      return false;
    case HeaderLineKind::body:
      info.wire_size += (sent ? 2 : 0) + size + 2;
      return false;
  }
  return false;
}

}  // namespace

BodyEncoder::BodyEncoder(std::vector<std::string> prepend_headers) : prepend_(std::move(prepend_headers)) {
  line_.reserve(kMaxLine + 1);
}

Result<void> BodyEncoder::too_long() {
  failed_ = true;
  return make_error(fmt::format("message has a line longer than {} octets", kMaxLine));
}

void BodyEncoder::emit_line(std::string_view line, std::string& out) {
  if (!line.empty() && line[0] == '.') out += '.';  // RFC 5321 §4.5.2 transparency
  out.append(line);
  out += "\r\n";
}

void BodyEncoder::end_header_line(std::string& out) {
  std::string_view line = header_line_.line();
  switch (walker_.next(line)) {
    case HeaderLineKind::field:
    case HeaderLineKind::continuation:
      if (walker_.blind()) break;  // a Bcc: field goes with its continuations
      emit_line(line, out);
      header_sent_ = true;
      break;
    case HeaderLineKind::end:
      in_header_ = false;
      emit_line({}, out);
      break;
    case HeaderLineKind::body:
      // The header ended before this line. A receiver that reads on past such a line must not
      // take a Bcc: after it for a field: an empty line says where the header ends. Without any
      // header line sent there is nothing to end (a message of plain text stays as it is).
      in_header_ = false;
      if (header_sent_) emit_line({}, out);
      emit_line(line, out);
      break;
  }
  header_line_.clear();
}

// Header lines are cut at LF only; the builder turns the CRs into what the rule says and keeps at
// most one line. Returns where the body starts in the chunk (end if it does not).
const char* BodyEncoder::feed_header(const char* p, const char* end, std::string& out) {
  while (p < end && in_header_) {
    const char* lf = find_lf(p, end);
    header_line_.append(std::string_view(p, static_cast<std::size_t>(lf - p)));
    if (header_line_.size() > kMaxLine) {
      (void)too_long();
      return end;
    }
    if (lf == end) return end;  // the line continues in the next chunk
    p = lf + 1;
    end_header_line(out);
  }
  return p;
}

Result<void> BodyEncoder::feed(std::string_view chunk, std::string& out) {
  if (failed_) return make_error("message has a line longer than 998 octets");
  if (!started_) {
    started_ = true;
    for (const auto& h : prepend_) emit_line(strip_crlf(h), out);
    header_sent_ = !prepend_.empty();
  }
  const char* p = chunk.data();
  const char* const end = p + chunk.size();
  if (in_header_) p = feed_header(p, end, out);
  if (failed_) return too_long();
  return feed_body(p, end, out);
}

// Lines that lie whole inside the chunk go from the chunk straight to `out`; only a line cut by the
// chunk's end is kept in line_. The next CR and the next LF are each searched once (memchr) and
// remembered until passed, so a chunk is scanned in linear time whatever its line endings are
// (a run of lone-CR lines must not rescan the chunk for an LF per line).
Result<void> BodyEncoder::feed_body(const char* p, const char* end, std::string& out) {
  if (pending_cr_ && p < end) {
    pending_cr_ = false;
    if (*p == '\n') ++p;  // the LF of a CRLF whose CR already ended the line
  }
  // Stuffing and CRLF add a little; reserving once keeps a 64 KiB chunk to one allocation.
  out.reserve(out.size() + static_cast<std::size_t>(end - p) + static_cast<std::size_t>(end - p) / 16 + 8);
  LineEnds ends(p, end);
  while (p < end) {
    const char* stop = ends.next(p);
    auto len = static_cast<std::size_t>(stop - p);
    if (line_.size() + len > kMaxLine) return too_long();
    if (stop == end) {  // no line ending left in this chunk: the line continues in the next one
      line_.append(p, len);
      break;
    }
    if (line_.empty()) {
      emit_line(std::string_view(p, len), out);
    } else {
      line_.append(p, len);
      emit_line(line_, out);
      line_.clear();
    }
    p = stop + 1;
    if (*stop == '\r') {
      if (p == end) {
        pending_cr_ = true;
      } else if (*p == '\n') {
        ++p;
      }
    }
  }
  return {};
}

Result<void> BodyEncoder::finish(std::string& out) {
  if (failed_) return make_error("message has a line longer than 998 octets");
  if (!started_) {
    auto r = feed({}, out);
    if (!r) return r;
  }
  if (in_header_ && header_line_.started()) {  // no final line ending: add one
    end_header_line(out);
  } else if (!line_.empty()) {
    emit_line(line_, out);
    line_.clear();
  }
  out += ".\r\n";
  return {};
}

std::vector<std::string> missing_headers(const Transaction& txn) {
  std::vector<std::string> h;
  if (!txn.missing_date.empty()) h.push_back("Date: " + strip_crlf(txn.missing_date));
  if (!txn.missing_message_id.empty()) h.push_back("Message-ID: " + strip_crlf(txn.missing_message_id));
  return h;
}

void BodyScanner::feed(std::string_view chunk) {
  for (char ch : chunk)
    if (static_cast<unsigned char>(ch) >= 0x80) info_.eight_bit = true;
  const char* p = chunk.data();
  const char* const end = p + chunk.size();
  while (p < end && in_header_) {  // header lines by the encoder's header rule
    const char* lf = find_lf(p, end);
    header_line_.append(std::string_view(p, static_cast<std::size_t>(lf - p)));
    if (lf == end) return;
    p = lf + 1;
    in_header_ = account_header_line(info_, walker_, header_sent_, header_line_.line(), header_line_.size());
    header_line_.clear();
  }
  for (; p < end; ++p) {  // body lines: LF, CRLF or a lone CR ends one
    char c = *p;
    if (pending_cr_) {
      pending_cr_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      info_.longest_line = std::max(info_.longest_line, cur_);
      info_.wire_size += 2;
      cur_ = 0;
      pending_cr_ = c == '\r';
    } else {
      ++cur_;
      ++info_.wire_size;
    }
  }
}

BodyInfo BodyScanner::result() const {
  BodyInfo r = info_;
  if (in_header_ && header_line_.started()) {  // the encoder ends an unterminated last line
    HeaderWalker w = walker_;
    bool sent = header_sent_;
    account_header_line(r, w, sent, header_line_.line(), header_line_.size());
    return r;
  }
  r.longest_line = std::max(r.longest_line, cur_);
  if (cur_ > 0) r.wire_size += 2;  // the CRLF the encoder adds to an unterminated last line
  return r;
}

}  // namespace spoold::smtp
