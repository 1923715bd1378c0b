// common/header_lines.h — the one rule for reading an RFC 5322 header section, shared by every
// reader of a stored message's header: the drop parser (spool/), `sendmail -t` (ctl/) and the SMTP
// encoder and scanner (smtp/). They must agree on where each line, each field and the header end,
// or a Bcc: field one of them never saw as a field reaches the wire (or is delivered to nobody).
//
// The rule, within the header section only:
//   * only LF ends a line; the CRs right before that LF (or before the end of the input) belong to
//     the line ending; any other CR is read as a space. So a lone CR can never start a field or end
//     the header (no header injection through CR), and CR CR LF (a CRLF file converted once more)
//     ends one line, not two;
//   * a line starting with SP or HT continues the field before it; before any field it is no
//     header line;
//   * a field starts with a name (printable ASCII except ':', at least one), optional SP/HT (the
//     obsolete "Name :" form), then ':';
//   * the header ends at an empty line, or before the first line that is neither a field nor a
//     continuation (that line is the body's first; the encoder sends an empty line before it).
// The body keeps its own rule (LF, CRLF or a lone CR each end a line; see common/line_ends.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/ascii.h"

namespace spoold {

// Builds one logical header line from the bytes of a physical line (its LF excluded), fed in any
// number of pieces. A run of CRs is held back until a later byte shows it is not at the line's end
// (then each CR is a space). Keeps at most `cap` octets of the line but counts them all, so a
// reader with a length limit needs no more memory than the limit, whatever the input holds.
class HeaderLineBuilder {
 public:
  explicit HeaderLineBuilder(std::size_t cap = SIZE_MAX) : cap_(cap) {}

  void append(std::string_view bytes) {
    while (!bytes.empty()) {
      std::size_t cr = bytes.find('\r');
      std::string_view text = bytes.substr(0, cr);
      if (!text.empty()) {
        put(' ', held_crs_);  // CRs followed by text were not the line's ending
        held_crs_ = 0;
        put(text);
      }
      if (cr == std::string_view::npos) return;
      std::size_t run = bytes.find_first_not_of('\r', cr);
      if (run == std::string_view::npos) run = bytes.size();
      held_crs_ += run - cr;
      bytes.remove_prefix(run);
    }
  }

  // The line so far (at most cap octets), without the CRs that may still turn out to end it.
  std::string_view line() const { return line_; }
  // Its whole length, those CRs not counted.
  std::uint64_t size() const { return size_; }
  // Some byte (if only a CR) was appended since the last clear(): there is a line, if empty.
  bool started() const { return size_ > 0 || held_crs_ > 0; }
  void clear() {
    line_.clear();
    size_ = 0;
    held_crs_ = 0;
  }

 private:
  void put(char c, std::uint64_t n) {
    std::size_t room = cap_ - line_.size();
    line_.append(static_cast<std::size_t>(n < room ? n : room), c);
    size_ += n;
  }
  void put(std::string_view s) {
    std::size_t room = cap_ - line_.size();
    line_.append(s.substr(0, s.size() < room ? s.size() : room));
    size_ += s.size();
  }

  std::size_t cap_;
  std::string line_;
  std::uint64_t size_ = 0;
  std::uint64_t held_crs_ = 0;
};

// The logical line for a whole physical line (LF excluded), by the rule above.
inline std::string header_line(std::string_view raw) {
  HeaderLineBuilder b;
  b.append(raw);
  return std::string(b.line());
}

// Length of the name of the field `line` starts ("Name: v" and "Name : v" → 4), 0 if none.
inline std::size_t header_name_length(std::string_view line) {
  std::size_t n = 0;
  while (n < line.size() && line[n] > 32 && line[n] < 127 && line[n] != ':') ++n;
  std::size_t colon = n;
  while (colon < line.size() && (line[colon] == ' ' || line[colon] == '\t')) ++colon;
  return n > 0 && colon < line.size() && line[colon] == ':' ? n : 0;
}

// The value of the field `line` starts: everything after its colon.
inline std::string_view header_value(std::string_view line) {
  std::size_t colon = line.find(':');
  return colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
}

// Bcc: and Resent-Bcc: (RFC 5322 §3.6.3, §3.6.6) are blind: never transmitted.
constexpr bool is_blind_field(std::string_view name) {
  return ascii_iequals(name, "bcc") || ascii_iequals(name, "resent-bcc");
}

enum class HeaderLineKind {
  field,         // starts a field
  continuation,  // continues the field before it
  end,           // the empty line: the header ended, the body follows
  body,          // no header line: the header ended before it, it is the body's first line
};

// Walks a header section one logical line at a time and says what each line is; remembers
// whether a field has started and whether the current one is blind.
class HeaderWalker {
 public:
  HeaderLineKind next(std::string_view line) {
    if (line.empty()) return HeaderLineKind::end;
    if (line[0] == ' ' || line[0] == '\t')
      return in_field_ ? HeaderLineKind::continuation : HeaderLineKind::body;
    std::size_t n = header_name_length(line);
    if (n == 0) return HeaderLineKind::body;
    in_field_ = true;
    blind_ = is_blind_field(line.substr(0, n));
    return HeaderLineKind::field;
  }
  // The field of the last field line (and so of its continuations) is Bcc: or Resent-Bcc:.
  bool blind() const { return blind_; }

 private:
  bool in_field_ = false;
  bool blind_ = false;
};

}  // namespace spoold
