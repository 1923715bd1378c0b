// common/line_ends.h — finds line ends (CR or LF) in a byte range with memchr. The next CR and the
// next LF are remembered until the scan passes them, so a text with both kinds of endings is still
// scanned once, linearly, at memchr speed. Used where message bodies are measured (spool/) and
// encoded for the wire (smtp/).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace spoold {

class LineEnds {
 public:
  LineEnds(const char* begin, const char* end) : end_(end), cr_(find(begin, '\r')), lf_(find(begin, '\n')) {}

  // The first CR or LF at or after p (p never moves backwards between calls), or end.
  const char* next(const char* p) {
    if (cr_ < p) cr_ = find(p, '\r');
    if (lf_ < p) lf_ = find(p, '\n');
    return std::min(cr_, lf_);
  }

 private:
  const char* find(const char* from, char c) const {
    const void* hit = from < end_ ? std::memchr(from, c, static_cast<std::size_t>(end_ - from)) : nullptr;
    return hit ? static_cast<const char*>(hit) : end_;
  }

  const char* end_;
  const char* cr_;
  const char* lf_;
};

}  // namespace spoold
