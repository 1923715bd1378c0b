// smtp/reply.h — SMTP reply parsing (RFC 5321 §4.2, enhanced codes RFC 3463) and text sanitising.
// Rule: the parser reads untrusted bytes; it never reads out of bounds, never grows without limit
// (a line's first 512 bytes are kept, 64 KiB per reply), and any malformed input is a sticky
// error, never a guess.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace spoold::smtp {

// RFC 3463 "class.subject.detail"; absent when klass == 0.
struct EnhancedCode {
  int klass = 0;
  int subject = 0;
  int detail = 0;
  bool present() const { return klass != 0; }
  std::string to_string() const;  // "5.1.1", or "" when absent
  bool operator==(const EnhancedCode&) const = default;
};

struct Reply {
  int code = 0;                    // 200..599
  EnhancedCode enhanced;           // from the first line, when present and of the same class
  std::vector<std::string> lines;  // raw text of each line after "NNN-"/"NNN ", unsanitised
  int klass() const { return code / 100; }
  bool positive() const { return code >= 200 && code < 400; }
  // All lines joined by a space, the enhanced code removed from each line that repeats it,
  // sanitised for logs (see sanitize()).
  std::string text() const;
};

// Makes untrusted text safe for a log line, a spool file or a bounce: every byte that is not
// printable ASCII (CR, LF, NUL, other controls, DEL, 8-bit) becomes '?'; at most max_len bytes
// are kept (a "..." marks the cut).
std::string sanitize(std::string_view text, std::size_t max_len = 1024);

// Incremental parser: feed() whatever the socket delivered, then call next() until it returns
// nullopt (needs more bytes). An Error is sticky: the stream cannot be trusted any more.
class ReplyParser {
 public:
  // RFC 5321 §4.5.3.1.5, CRLF included. Longer lines are accepted: their first kMaxLine - 2 bytes
  // are kept, the rest (to the line end) is skipped unread.
  static constexpr std::size_t kMaxLine = 512;
  static constexpr std::size_t kMaxReply = 64 * 1024;  // all lines of one reply together

  void feed(std::string_view bytes);
  std::optional<Result<Reply>> next();
  // Bytes received but not yet consumed by a complete reply (used to detect and discard
  // responses injected after a STARTTLS 220). Clears them.
  std::string take_unparsed();
  std::size_t buffered() const { return buf_.size() - pos_; }
  bool failed() const { return failed_; }

 private:
  Result<Reply> fail(std::string why);
  // Parses one line (without its line ending; `wire` bytes on the wire) into the reply under
  // construction. Returns an error message, or "" when the line was fine.
  std::string add_line(std::string_view line, std::size_t wire, bool& last);
  std::optional<Result<Reply>> end_line(std::string_view head, std::size_t wire, bool cut);

  std::string buf_;
  std::size_t pos_ = 0;  // start of unconsumed bytes in buf_
  Reply cur_;
  std::size_t cur_bytes_ = 0;
  bool in_reply_ = false;
  bool in_long_ = false;   // inside a line longer than kMaxLine: its head is kept, the rest skipped
  std::string long_head_;  // the first kMaxLine - 2 bytes of that line
  std::size_t long_wire_ = 0;
  bool failed_ = false;
  std::string failure_;
};

// Parses "X.Y.Z" at the start of text (followed by space or end); class must be 2, 4 or 5.
std::optional<EnhancedCode> parse_enhanced_code(std::string_view text, std::size_t* consumed = nullptr);

}  // namespace spoold::smtp
