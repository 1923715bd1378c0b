// common/header_fields.h — a header section's fields, unfolded, by the line rule of
// common/header_lines.h: the one unfolding shared by the drop parser (spool/, streaming, bounded)
// and `sendmail -t` (ctl/, a whole message in memory), so both take a bare message's envelope from
// the same fields with the same values.
// Unfolding (RFC 5322 §2.2.3) only takes the line breaks out: a continuation line is appended to
// the field's value as it is read, its leading white space kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ascii.h"
#include "common/header_lines.h"

namespace spoold {

struct HeaderField {
  std::string name;   // lower-cased (ASCII)
  std::string value;  // everything after the colon, the continuation lines appended
};

// The fields a bare message's envelope comes from (as for `sendmail -t`), by lower-case name:
// the recipients from To:, Cc: and Bcc:, the sender from Sender:, else From:.
constexpr bool is_recipient_field(std::string_view name) {
  return name == "to" || name == "cc" || name == "bcc";
}
constexpr bool is_sender_field(std::string_view name) {
  return name == "sender" || name == "from";
}

// Unfolds a header section fed one logical line at a time (header_line()), reading each line with a
// HeaderWalker. A field is complete when a line that does not continue it comes (another field, the
// empty line, the body's first line), or at finish(); completed() then holds it until the next call.
// Only the values of the fields `keep` wants (all without one) are held, each at most max_value
// octets, so a streaming reader stays within its limits whatever the input holds.
class HeaderUnfolder {
 public:
  using Keep = bool (*)(std::string_view name);  // name lower-cased

  explicit HeaderUnfolder(Keep keep = nullptr, std::size_t max_value = SIZE_MAX)
      : keep_(keep), max_value_(max_value) {}

  // What `line` is (HeaderWalker::next). A continuation that would make the held value longer than
  // max_value is not added; over_limit() then says so.
  HeaderLineKind next(std::string_view line) {
    done_ = false;
    over_limit_ = false;
    HeaderLineKind kind = walker_.next(line);
    if (kind == HeaderLineKind::continuation) {
      if (!keeping_) return kind;
      if (field_.value.size() + line.size() > max_value_) {
        over_limit_ = true;
      } else {
        field_.value.append(line);
      }
      return kind;
    }
    complete();
    if (kind == HeaderLineKind::field) {
      field_.name.assign(line.substr(0, header_name_length(line)));
      for (char& c : field_.name) c = ascii_lower(c);
      keeping_ = keep_ == nullptr || keep_(field_.name);
      if (keeping_) field_.value.assign(header_value(line));
      open_ = true;
    }
    return kind;
  }

  // The input ended: completes the field being read, if any.
  void finish() {
    done_ = false;
    over_limit_ = false;
    complete();
  }

  // The field the last next() or finish() completed, if it is one to keep; else nullptr. It may be
  // moved from.
  HeaderField* completed() { return done_ ? &completed_ : nullptr; }
  // The lower-case name of the field being read ("" when none is).
  std::string_view name() const { return open_ ? std::string_view(field_.name) : std::string_view(); }
  // That field is Bcc: or Resent-Bcc:.
  bool blind() const { return open_ && walker_.blind(); }
  // The last next() left out a continuation: the value would have passed max_value.
  bool over_limit() const { return over_limit_; }

 private:
  void complete() {
    if (!open_) return;
    open_ = false;
    if (keeping_) {
      completed_.name.swap(field_.name);
      completed_.value.swap(field_.value);
      done_ = true;
    }
    keeping_ = false;
    field_.value.clear();
  }

  Keep keep_;
  std::size_t max_value_;
  HeaderWalker walker_;
  HeaderField field_;      // the field being read (its value only when kept)
  HeaderField completed_;  // the last kept field completed
  bool open_ = false, keeping_ = false, done_ = false, over_limit_ = false;
};

// The fields of the header section `message` starts with (it ends at the empty line or before the
// first line that is no header line), names lower-cased, values unfolded.
inline std::vector<HeaderField> header_fields(std::string_view message) {
  std::vector<HeaderField> out;
  HeaderUnfolder unfolder;
  std::size_t pos = 0;
  while (pos < message.size()) {
    std::size_t eol = message.find('\n', pos);
    std::string line =
        header_line(message.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos));
    HeaderLineKind kind = unfolder.next(line);
    if (HeaderField* f = unfolder.completed()) out.push_back(std::move(*f));
    if (kind != HeaderLineKind::field && kind != HeaderLineKind::continuation) return out;
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  unfolder.finish();
  if (HeaderField* f = unfolder.completed()) out.push_back(std::move(*f));
  return out;
}

}  // namespace spoold
