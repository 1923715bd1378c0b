// smtp/reply.cpp — see reply.h. Every index is checked against the buffer it reads; a malformed
// line turns the parser into a sticky error rather than being skipped, because a server that
// sends garbage may be out of sync and whatever follows could be misattributed to a command.
#include "smtp/reply.h"

#include <fmt/format.h>

namespace spoold::smtp {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Reads 1..3 digits at text[i...]; returns -1 when there are none or more than three.
int read_number(std::string_view text, std::size_t& i) {
  std::size_t start = i;
  int value = 0;
  while (i < text.size() && is_digit(text[i]) && i - start < 4) {
    value = value * 10 + (text[i] - '0');
    ++i;
  }
  std::size_t n = i - start;
  return (n >= 1 && n <= 3) ? value : -1;
}

}  // namespace

std::string EnhancedCode::to_string() const {
  if (!present()) return "";
  return fmt::format("{}.{}.{}", klass, subject, detail);
}

std::optional<EnhancedCode> parse_enhanced_code(std::string_view text, std::size_t* consumed) {
  if (text.size() < 5) return std::nullopt;
  if (text[0] != '2' && text[0] != '4' && text[0] != '5') return std::nullopt;
  if (text[1] != '.') return std::nullopt;
  std::size_t i = 2;
  int subject = read_number(text, i);
  if (subject < 0 || i >= text.size() || text[i] != '.') return std::nullopt;
  ++i;
  int detail = read_number(text, i);
  if (detail < 0) return std::nullopt;
  if (i < text.size() && text[i] != ' ') return std::nullopt;
  if (consumed) *consumed = i < text.size() ? i + 1 : i;
  return EnhancedCode{text[0] - '0', subject, detail};
}

std::string sanitize(std::string_view text, std::size_t max_len) {
  std::string out;
  out.reserve(std::min(text.size(), max_len + 3));
  for (char ch : text) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(ch);
    out += (c >= 0x20 && c < 0x7f) ? ch : '?';
  }
  return out;
}

std::string Reply::text() const {
  std::string joined;
  for (const auto& line : lines) {
    std::string_view rest = line;
    std::size_t used = 0;
    auto ec = parse_enhanced_code(rest, &used);
    if (ec && *ec == enhanced) rest.remove_prefix(used);
    if (!joined.empty()) joined += ' ';
    joined += rest;
  }
  return sanitize(joined);
}

void ReplyParser::feed(std::string_view bytes) {
  if (failed_) return;
  // Compact before growing so a long session does not keep every byte it ever received.
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 4096) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

std::string ReplyParser::take_unparsed() {
  std::string rest = buf_.substr(pos_);
  buf_.clear();
  pos_ = 0;
  return rest;
}

Result<Reply> ReplyParser::fail(std::string why) {
  failed_ = true;
  failure_ = std::move(why);
  buf_.clear();
  pos_ = 0;
  return make_error(failure_);
}

std::string ReplyParser::add_line(std::string_view line, std::size_t wire, bool& last) {
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
    return fmt::format("malformed reply line \"{}\"", sanitize(line, 80));
  if (line[0] < '2' || line[0] > '5' || line[1] > '5')
    return fmt::format("reply code {} out of range", sanitize(line.substr(0, 3)));
  if (line.size() > 3 && line[3] != ' ' && line[3] != '-')
    return fmt::format("malformed reply line \"{}\"", sanitize(line, 80));
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (in_reply_ && code != cur_.code)
    return fmt::format("reply code changed from {} to {} inside a multi-line reply", cur_.code, code);
  cur_bytes_ += wire;
  if (cur_bytes_ > kMaxReply) return fmt::format("reply longer than {} bytes", kMaxReply);
  if (line.find('\0') != std::string_view::npos) return "NUL byte in reply";
  if (!in_reply_) {
    cur_ = Reply{};
    cur_.code = code;
    in_reply_ = true;
  }
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
  if (cur_.lines.empty()) {
    auto ec = parse_enhanced_code(text);
    if (ec && ec->klass == code / 100) cur_.enhanced = *ec;
  }
  cur_.lines.emplace_back(text);
  last = line.size() == 3 || line[3] == ' ';
  return "";
}

// A complete line (without its LF) whose first kMaxLine bytes are `head` and which took `wire`
// bytes on the wire. Returns the finished reply, an error, or nullopt when the reply goes on.
std::optional<Result<Reply>> ReplyParser::end_line(std::string_view head, std::size_t wire, bool cut) {
  if (!cut && !head.empty() && head.back() == '\r') head.remove_suffix(1);  // bare LF tolerated
  if (head.find('\r') != std::string_view::npos) return fail("bare CR in reply");
  bool last = false;
  std::string err = add_line(head, wire, last);
  if (!err.empty()) return fail(std::move(err));
  if (!last) return std::nullopt;
  in_reply_ = false;
  cur_bytes_ = 0;
  return Result<Reply>(std::move(cur_));
}

std::optional<Result<Reply>> ReplyParser::next() {
  if (failed_) return Result<Reply>(make_error(failure_));
  while (pos_ < buf_.size()) {
    std::string_view avail(buf_.data() + pos_, buf_.size() - pos_);
    std::size_t nl = avail.find('\n');
    if (in_long_) {  // the rest of an overlong line: counted, not kept
      std::size_t n = nl == std::string_view::npos ? avail.size() : nl + 1;
      pos_ += n;
      long_wire_ += n;
      if (cur_bytes_ + long_wire_ > kMaxReply)
        return fail(fmt::format("reply longer than {} bytes", kMaxReply));
      if (nl == std::string_view::npos) return std::nullopt;
      in_long_ = false;
      if (auto r = end_line(long_head_, long_wire_, true)) return r;
      continue;
    }
    if (nl == std::string_view::npos || nl + 1 > kMaxLine) {
      if (nl == std::string_view::npos && avail.size() < kMaxLine) return std::nullopt;
      // Longer than RFC 5321 allows: real servers send such 5xx texts, and the code is what
      // matters, so the line's head is kept and the rest skipped (still bounded by kMaxReply).
      in_long_ = true;
      long_head_.assign(avail.substr(0, kMaxLine - 2));
      long_wire_ = 0;
      continue;
    }
    pos_ += nl + 1;
    if (auto r = end_line(avail.substr(0, nl), nl + 1, false)) return r;
  }
  return std::nullopt;
}

}  // namespace spoold::smtp
