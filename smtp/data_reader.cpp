// smtp/data_reader.cpp — see data_reader.h. Reading guide: a line start may hold back a "." (and
// a CR after it) until the next byte shows whether it is the end, a stuffed dot or data; inside
// a line bytes are copied in runs up to the next LF (memchr), which decides CRLF or bare LF.
#include "smtp/data_reader.h"

#include <cstring>

namespace spoold::smtp::server {

std::size_t DataReader::feed(std::string_view in, std::string& out) {
  const std::size_t out_start = out.size();
  const std::size_t n = in.size();
  std::size_t i = 0;
  while (i < n && !done_) {
    const char c = in[i];
    switch (at_) {
      case At::line_start:
        if (c == '.') {
          at_ = At::dot;
          ++i;
          continue;
        }
        at_ = At::middle;
        prev_cr_ = false;
        break;  // c is the line's first byte
      case At::dot:
        if (c == '\r') {
          at_ = At::dot_cr;
          ++i;
          continue;
        }
        if (c == '\n') {  // CRLF.LF or LF.LF: the line "." with a bare LF, not the end
          out += ".\r\n";
          ++bare_lf_;
          ++i;
          at_ = At::line_start;
          crlf_start_ = false;
          continue;
        }
        at_ = At::middle;  // ".." or ".x": the first dot was stuffing
        prev_cr_ = false;
        break;
      case At::dot_cr:
        if (c == '\n') {
          ++i;
          if (crlf_start_) {  // CRLF . CRLF
            done_ = true;
            continue;
          }
          out += ".\r\n";  // LF.CRLF: data
          at_ = At::line_start;
          crlf_start_ = true;
          continue;
        }
        // ".", a lone CR, then more on the line: the dot was stuffing, the CR is data.
        out += '\r';
        at_ = At::middle;
        prev_cr_ = true;
        break;
      case At::middle:
        break;
    }
    // Inside a line: copy up to the next LF.
    const char* p = in.data() + i;
    const void* hit = std::memchr(p, '\n', n - i);
    std::size_t run = hit ? static_cast<std::size_t>(static_cast<const char*>(hit) - p) : n - i;
    if (run > 0) {
      out.append(p, run);
      prev_cr_ = p[run - 1] == '\r';
      i += run;
    }
    if (!hit) break;
    if (prev_cr_) {
      out += '\n';
      crlf_start_ = true;
    } else {
      out += "\r\n";
      ++bare_lf_;
      crlf_start_ = false;
    }
    ++i;
    at_ = At::line_start;
  }
  size_ += out.size() - out_start;
  return i;
}

}  // namespace spoold::smtp::server
