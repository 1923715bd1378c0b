// smtp/body_encoder.cpp — see body_encoder.h. The encoder works line by line with at most one
// line (998 octets) buffered, so a chunk boundary anywhere — inside a CRLF, right after a CR,
// inside "Bcc:" — changes nothing on the wire.
#include "smtp/body_encoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "common/line_ends.h"

namespace spoold::smtp {

namespace {

// "Bcc:" or "Resent-Bcc:" (RFC 5322 §3.6.3/§3.6.6: both are blind), case-insensitive, with the
// obsolete optional white space before the colon.
bool is_blind_field(std::string_view line) {
  auto starts = [&](std::string_view name) {
    if (line.size() < name.size()) return false;
    for (std::size_t i = 0; i < name.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
    std::size_t i = name.size();
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    return i < line.size() && line[i] == ':';
  };
  return starts("bcc") || starts("resent-bcc");
}

bool is_continuation(std::string_view line) {
  return !line.empty() && (line[0] == ' ' || line[0] == '\t');
}

std::string strip_crlf(std::string_view v) {
  std::string out;
  for (char c : v)
    if (c != '\r' && c != '\n') out += c;
  return out;
}

}  // namespace

BodyEncoder::BodyEncoder(std::vector<std::string> prepend_headers) : prepend_(std::move(prepend_headers)) {
  line_.reserve(kMaxLine + 1);
}

void BodyEncoder::emit_line(std::string_view line, std::string& out) {
  if (!line.empty() && line[0] == '.') out += '.';  // RFC 5321 §4.5.2 transparency
  out.append(line);
  out += "\r\n";
}

void BodyEncoder::end_line(std::string_view line, std::string& out) {
  if (!in_header_) return emit_line(line, out);
  if (line.empty()) {
    in_header_ = false;
    dropping_ = false;
    emit_line(line, out);
  } else if (dropping_ && is_continuation(line)) {
    // folded continuation of a dropped Bcc: field
  } else if (is_blind_field(line)) {
    dropping_ = true;
  } else {
    dropping_ = false;
    emit_line(line, out);
  }
}

// Lines that lie whole inside the chunk go from the chunk straight to `out`; only a line cut by the
// chunk's end is kept in line_. The next CR and the next LF are each searched once (memchr) and
// remembered until passed, so a chunk is scanned in linear time whatever its line endings are
// (a run of lone-CR lines must not rescan the chunk for an LF per line).
Result<void> BodyEncoder::feed(std::string_view chunk, std::string& out) {
  if (failed_) return make_error("message has a line longer than 998 octets");
  if (!started_) {
    started_ = true;
    for (const auto& h : prepend_) emit_line(strip_crlf(h), out);
  }
  const char* p = chunk.data();
  const char* const end = p + chunk.size();
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
    if (line_.size() + len > kMaxLine) {
      failed_ = true;
      return make_error(fmt::format("message has a line longer than {} octets", kMaxLine));
    }
    if (stop == end) {  // no line ending left in this chunk: the line continues in the next one
      line_.append(p, len);
      break;
    }
    if (line_.empty()) {
      end_line(std::string_view(p, len), out);
    } else {
      line_.append(p, len);
      end_line(line_, out);
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
  if (!line_.empty()) {  // no final line ending: add one
    end_line(line_, out);
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
  for (char ch : chunk) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) info_.eight_bit = true;
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
  r.longest_line = std::max(r.longest_line, cur_);
  if (cur_ > 0) r.wire_size += 2;  // the CRLF the encoder adds to an unterminated last line
  return r;
}

}  // namespace spoold::smtp
