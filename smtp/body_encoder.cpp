// smtp/body_encoder.cpp — see body_encoder.h. The encoder works line by line with at most one
// output line (999 octets) buffered, so a chunk boundary anywhere — inside a CRLF, right after a
// CR, inside a run of CRs, inside "Bcc:" — changes nothing on the wire. Header lines are read by
// the rule every header reader shares (common/header_lines.h), so the drop parser and
// `sendmail -t` take recipients from exactly the fields sent (Bcc: aside, which is never sent).
// What a header line is (field, continuation, the body's first line) is decided by its first
// octets: the name, the white space after it, the colon. Only those are held until the decision
// (a name longer than a wire line is held whole: the drop parser reads such a field as a field,
// and so must the encoder, or a Bcc: after it would be sent in the body); everything else streams.
#include "smtp/body_encoder.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/ascii.h"
#include "common/line_ends.h"
#include "smtp/rewrite.h"

namespace spoold::smtp {

namespace {

constexpr std::size_t kFactLine = 512;  // of a Content-Type / CTE line: enough for the type

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

bool has_8bit(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

bool wsp(char c) {
  return c == ' ' || c == '\t';
}
bool name_char(char c) {
  return c > 32 && c < 127 && c != ':';
}

// Where to break a line that has an octet beyond kMaxLine (s.size() > kMaxLine): after kMaxLine
// octets, or up to 3 earlier so a UTF-8 sequence stays whole (not when the octets before are no
// sequence, e.g. Latin-1: then exactly kMaxLine).
std::size_t hard_break(std::string_view s) {
  auto cont = [&](std::size_t i) { return (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80; };
  std::size_t b = BodyEncoder::kMaxLine;
  while (b > BodyEncoder::kMaxLine - 3 && cont(b)) --b;
  return cont(b) ? BodyEncoder::kMaxLine : b;
}

void append_capped(std::string& to, std::string_view bytes) {
  if (to.size() < kFactLine) to.append(bytes.substr(0, kFactLine - to.size()));
}

}  // namespace

BodyEncoder::BodyEncoder(std::vector<std::string> prepend_headers, std::vector<std::string> qp_lines,
                         std::vector<std::string> masquerade)
    : prepend_(std::move(prepend_headers)),
      added_(std::move(qp_lines)),
      qp_(!added_.empty()),
      masquerade_(std::move(masquerade)) {
  seg_.reserve(kMaxLine + 2);
}

MimeFacts BodyEncoder::mime_facts() const {
  MimeFacts f;
  f.mime_version = mime_version_;
  f.type = type_fields_ == 0  ? MimeType::absent
           : type_fields_ > 1 ? MimeType::ambiguous
                              : classify_content_type(header_value(type_line_));
  f.encoding = encoding_fields_ == 0  ? MimeEncoding::absent
               : encoding_fields_ > 1 ? MimeEncoding::ambiguous
                                      : classify_transfer_encoding(header_value(encoding_line_));
  f.header_8bit = header_8bit_;
  f.body_8bit = body_8bit_;
  return f;
}

void BodyEncoder::note_wrap() {
  if (!std::exchange(line_wrapped_, true)) ++wrapped_;
}

void BodyEncoder::emit_piece(std::string_view piece, std::string& out) {
  if (!piece.empty() && piece[0] == '.') {  // RFC 5321 §4.5.2 transparency
    out += '.';
    ++stuffed_;
  }
  out.append(piece);
  out += "\r\n";
}

// A header field's octets: folded when the line outgrows kMaxLine (see body_encoder.h).
void BodyEncoder::put_fold(std::string_view bytes, std::string& out) {
  while (!bytes.empty()) {
    std::size_t take = std::min(bytes.size(), kMaxLine + 1 - seg_.size());
    seg_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    if (seg_.size() <= kMaxLine) continue;
    // The last SP/HT with something other than white space before it (after the colon, on a
    // field's first line): a piece of only white space would look like an empty line to some
    // readers, and a field name alone on its line like a field without a value.
    std::size_t first = seg_.find_first_not_of(" \t", fold_floor_);
    fold_floor_ = 0;
    std::size_t b = 0;
    for (std::size_t i = kMaxLine; first != std::string::npos && i > first; --i)
      if (wsp(seg_[i])) {
        b = i;
        break;
      }
    note_wrap();
    if (b > 0) {
      emit_piece(std::string_view(seg_).substr(0, b), out);
      seg_.erase(0, b);
    } else {
      b = hard_break(seg_);
      emit_piece(std::string_view(seg_).substr(0, b), out);
      seg_.erase(0, b);
      seg_.insert(seg_.begin(), ' ');  // a continuation line, so the field goes on
    }
  }
}

void BodyEncoder::end_fold_line(std::string& out) {
  emit_piece(seg_, out);
  seg_.clear();
  fold_floor_ = 0;
  line_done();
}

// A body line's octets: broken after kMaxLine when it goes on. A line that lies whole in the chunk
// goes from the chunk to `out` without passing through seg_.
void BodyEncoder::put_plain(std::string_view bytes, bool line_ends, std::string& out) {
  while (seg_.empty() && bytes.size() > kMaxLine) {
    std::size_t b = hard_break(bytes);
    note_wrap();
    emit_piece(bytes.substr(0, b), out);
    bytes.remove_prefix(b);
  }
  if (seg_.empty() && line_ends) {
    emit_piece(bytes, out);
    return line_done();
  }
  while (seg_.size() + bytes.size() > kMaxLine) {
    std::size_t take = kMaxLine + 1 - seg_.size();
    seg_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    std::size_t b = hard_break(seg_);
    note_wrap();
    emit_piece(std::string_view(seg_).substr(0, b), out);
    seg_.erase(0, b);
  }
  seg_.append(bytes);
  if (!line_ends) return;
  emit_piece(seg_, out);
  seg_.clear();
  line_done();
}

void BodyEncoder::start(std::string& out) {
  started_ = true;
  for (const auto& h : prepend_) {
    put_fold(strip_crlf(h), out);
    end_fold_line(out);
  }
  header_sent_ = !prepend_.empty();
}

void BodyEncoder::header_end(bool empty_line, std::string& out) {
  for (const auto& h : added_) {
    put_fold(strip_crlf(h), out);
    end_fold_line(out);
    header_sent_ = true;
  }
  if (empty_line) emit_piece({}, out);
  watch_ = Watch::none;
}

// The held From:/Sender: field goes out through the folding sink, masqueraded when `rewrite`;
// rewrite is false when it outgrew kMaxHeldField mid-line (that line then goes on unheld).
void BodyEncoder::release_held(bool rewrite, std::string& out) {
  holding_ = false;
  std::string text = std::move(held_);
  held_.clear();
  if (rewrite)
    if (auto r = masquerade_field(text, masquerade_)) text = std::move(*r);
  std::string_view rest = text;
  fold_floor_ = held_floor_;
  for (std::size_t nl; (nl = rest.find('\n')) != std::string_view::npos;) {
    put_fold(rest.substr(0, nl), out);
    end_fold_line(out);
    rest.remove_prefix(nl + 1);
  }
  if (!rest.empty()) put_fold(rest, out);
}

// What the line is, known from pending_ (which holds its decisive octet, or all of it).
void BodyEncoder::decide(HeaderLineKind kind, std::string& out) {
  if (holding_ && kind != HeaderLineKind::continuation) release_held(true, out);
  switch (kind) {
    case HeaderLineKind::field: {
      std::string_view name = std::string_view(pending_).substr(0, header_name_length(pending_));
      bool cte = ascii_iequals(name, "content-transfer-encoding");
      dropping_ = walker_.blind() || (qp_ && cte);
      fold_floor_ = pending_.find(':') + 1;
      holding_ = !dropping_ && !masquerade_.empty() &&
                 (ascii_iequals(name, "from") || ascii_iequals(name, "sender"));
      held_floor_ = fold_floor_;
      watch_ = Watch::none;
      if (walker_.blind()) break;
      if (ascii_iequals(name, "mime-version")) mime_version_ = true;
      if (ascii_iequals(name, "content-type") && ++type_fields_ == 1) watch_ = Watch::type;
      if (cte && ++encoding_fields_ == 1) watch_ = Watch::encoding;
      break;
    }
    case HeaderLineKind::continuation:
      break;
    case HeaderLineKind::end:
      return;
    case HeaderLineKind::body:
      // The header ended before this line. A receiver that reads on past such a line must not
      // take a Bcc: after it for a field: an empty line says where the header ends. Without any
      // header line sent there is nothing to end (a message of plain text stays as it is).
      header_end(false, out);
      if (header_sent_) emit_piece({}, out);
      sink_ = qp_ ? Sink::qp : Sink::plain;
      return;
  }
  sink_ = dropping_ ? Sink::drop : holding_ ? Sink::hold : Sink::fold;
  if (!dropping_) header_sent_ = true;
}

void BodyEncoder::route(std::string_view bytes, std::string& out) {
  switch (sink_) {
    case Sink::undecided:
    case Sink::drop:
      return;
    case Sink::fold:
      if (!header_8bit_ && has_8bit(bytes)) header_8bit_ = true;
      if (watch_ == Watch::type) append_capped(type_line_, bytes);
      if (watch_ == Watch::encoding) append_capped(encoding_line_, bytes);
      return put_fold(bytes, out);
    case Sink::hold:
      if (!header_8bit_ && has_8bit(bytes)) header_8bit_ = true;
      held_.append(bytes);
      if (held_.size() > kMaxHeldField) {
        release_held(false, out);
        sink_ = Sink::fold;
      }
      return;
    case Sink::plain:
      if (!body_8bit_ && has_8bit(bytes)) body_8bit_ = true;
      return put_plain(bytes, false, out);
    case Sink::qp:
      if (!body_8bit_ && has_8bit(bytes)) body_8bit_ = true;
      return qpenc_.put(bytes, out);
  }
}

// Octets of the header line as read. Until the line's kind is known they gather in pending_;
// the decisive octet is the first that is not the name's or the white space after it.
void BodyEncoder::logical(std::string_view bytes, std::string& out) {
  line_len_ += bytes.size();
  std::size_t i = 0;
  for (; sink_ == Sink::undecided && i < bytes.size(); ++i) {
    char c = bytes[i];
    pending_ += c;
    bool decisive = false;
    if (cls_ == 0) {  // SP/HT (a continuation, or no header) or anything but a name decides
      decisive = !name_char(c);
      cls_ = 1;
    } else if (cls_ == 1 && !name_char(c)) {  // the name ended: a colon decides, SP/HT may precede it
      decisive = !wsp(c);
      cls_ = 2;
    } else if (cls_ == 2) {
      decisive = !wsp(c);
    }
    if (!decisive) continue;
    decide(walker_.next(pending_), out);
    route(pending_, out);
    pending_.clear();
  }
  route(bytes.substr(i), out);
}

// A header line's bytes between LFs: a run of CRs is held until a later byte shows it is not the
// line's ending (then each CR is a space), as HeaderLineBuilder does.
void BodyEncoder::header_text(std::string_view bytes, std::string& out) {
  static constexpr std::string_view kSpaces =
      "                                                                ";
  if (!bytes.empty()) line_started_ = true;
  while (!bytes.empty()) {
    std::size_t cr = bytes.find('\r');
    std::string_view text = bytes.substr(0, cr);
    if (!text.empty()) {
      for (; held_crs_ > 0;) {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(held_crs_, kSpaces.size()));
        logical(kSpaces.substr(0, n), out);
        held_crs_ -= n;
      }
      logical(text, out);
    }
    if (cr == std::string_view::npos) return;
    std::size_t run = bytes.find_first_not_of('\r', cr);
    if (run == std::string_view::npos) run = bytes.size();
    held_crs_ += run - cr;
    bytes.remove_prefix(run);
  }
}

void BodyEncoder::end_header_line(std::string& out) {
  held_crs_ = 0;  // they were the line ending
  longest_ = std::max<std::size_t>(longest_, static_cast<std::size_t>(line_len_));
  if (sink_ == Sink::undecided) {
    HeaderLineKind kind = walker_.next(pending_);
    if (kind == HeaderLineKind::end) {
      if (holding_) release_held(true, out);
      in_header_ = false;
      header_end(true, out);
    } else {
      decide(kind, out);
      route(pending_, out);
    }
  }
  switch (sink_) {
    case Sink::undecided:
    case Sink::drop:
      break;
    case Sink::fold:
      end_fold_line(out);
      break;
    case Sink::hold:
      held_ += '\n';
      break;
    case Sink::plain:
      put_plain({}, true, out);
      in_header_ = false;
      break;
    case Sink::qp:
      qpenc_.end_line(out);
      in_header_ = false;
      break;
  }
  pending_.clear();
  cls_ = 0;
  line_len_ = 0;
  line_started_ = false;
  sink_ = Sink::undecided;
  line_done();
}

// Header lines are cut at LF only. Returns where the body starts in the chunk (end if it does not).
const char* BodyEncoder::feed_header(const char* p, const char* end, std::string& out) {
  while (p < end && in_header_) {
    const char* lf = find_lf(p, end);
    header_text(std::string_view(p, static_cast<std::size_t>(lf - p)), out);
    if (lf == end) return end;  // the line continues in the next chunk
    p = lf + 1;
    end_header_line(out);
  }
  return p;
}

void BodyEncoder::feed(std::string_view chunk, std::string& out) {
  if (!eight_bit_ && has_8bit(chunk)) eight_bit_ = true;
  if (!started_) start(out);
  const char* p = chunk.data();
  const char* const end = p + chunk.size();
  if (in_header_) p = feed_header(p, end, out);
  if (p < end) feed_body(p, end, out);
}

// The next CR and the next LF are each searched once (memchr) and remembered until passed, so a
// chunk is scanned in linear time whatever its line endings are (a run of lone-CR lines must not
// rescan the chunk for an LF per line).
void BodyEncoder::feed_body(const char* p, const char* end, std::string& out) {
  if (pending_cr_ && p < end) {
    pending_cr_ = false;
    if (*p == '\n') ++p;  // the LF of a CRLF whose CR already ended the line
  }
  if (!body_8bit_ && has_8bit(std::string_view(p, static_cast<std::size_t>(end - p)))) body_8bit_ = true;
  // Stuffing and CRLF add a little (quoted-printable up to three times); reserving once keeps a
  // 64 KiB chunk to one allocation.
  auto n = static_cast<std::size_t>(end - p);
  out.reserve(out.size() + (qp_ ? 3 * n + n / 24 : n + n / 16) + 8);
  LineEnds ends(p, end);
  while (p < end) {
    const char* stop = ends.next(p);
    std::string_view piece(p, static_cast<std::size_t>(stop - p));
    body_line_ += piece.size();
    longest_ = std::max<std::size_t>(longest_, static_cast<std::size_t>(body_line_));
    bool line_ends = stop != end;
    if (qp_) {
      qpenc_.put(piece, out);
      if (line_ends) qpenc_.end_line(out);
    } else {
      put_plain(piece, line_ends, out);
    }
    if (!line_ends) break;  // the line continues in the next chunk
    body_line_ = 0;
    p = stop + 1;
    if (*stop == '\r') {
      if (p == end) {
        pending_cr_ = true;
      } else if (*p == '\n') {
        ++p;
      }
    }
  }
}

void BodyEncoder::finish(std::string& out) {
  if (!started_) start(out);
  if (in_header_ && (line_started_ || !pending_.empty())) end_header_line(out);  // no final line ending
  if (holding_) release_held(true, out);  // the header's last field, and no body
  if (in_header_) {
    if (qp_) header_end(false, out);  // a header without body: the added fields still go out
  } else if (qp_) {
    if (qpenc_.line_open()) qpenc_.end_line(out);
  } else if (!seg_.empty()) {
    put_plain({}, true, out);
  }
  out += ".\r\n";
}

std::vector<std::string> missing_headers(const Transaction& txn) {
  std::vector<std::string> h;
  if (!txn.missing_date.empty()) h.push_back("Date: " + strip_crlf(txn.missing_date));
  if (!txn.missing_message_id.empty()) h.push_back("Message-ID: " + strip_crlf(txn.missing_message_id));
  return h;
}

BodyScanner::BodyScanner(bool with_qp) {
  if (with_qp)
    qp_.emplace(std::vector<std::string>{}, std::vector<std::string>{std::string(kQpTransferEncoding)});
}

void BodyScanner::feed(std::string_view chunk) {
  scratch_.clear();
  plain_.feed(chunk, scratch_);
  plain_octets_ += scratch_.size();
  if (!qp_) return;
  scratch_.clear();
  qp_->feed(chunk, scratch_);
  qp_octets_ += scratch_.size();
}

// The encoders are finished on copies: result() may be asked before the last chunk, and what is
// learnt then must be what the encoder will send for the bytes seen.
BodyInfo BodyScanner::result() const {
  BodyInfo r;
  BodyEncoder plain = plain_;
  std::string tail;
  plain.finish(tail);
  r.eight_bit = plain.eight_bit();
  r.longest_line = plain.longest_line();
  r.wire_size = plain_octets_ + tail.size() - 3 - plain.stuffed_dots();  // not the final ".\r\n"
  r.mime = plain.mime_facts();
  if (qp_) {
    BodyEncoder qp = *qp_;
    tail.clear();
    qp.finish(tail);
    r.qp_wire_size = qp_octets_ + tail.size() - 3 - qp.stuffed_dots();
    // The scan's encoder added only the Content-Transfer-Encoding line; the others are known now.
    auto lines = qp_header_lines(*r.mime);
    for (std::size_t i = 1; i < lines.size(); ++i) r.qp_wire_size += lines[i].size() + 2;
  }
  return r;
}

}  // namespace spoold::smtp
