// smtp/data_reader.h — the SMTP DATA stream reader of the server engine: finds the end of the
// message, removes dot-stuffing and normalises line ends, streaming (no line is ever held).
// Rule (no SMTP smuggling): only CRLF "." CRLF ends the data — the CRLF of the DATA command line
// counts as the first CRLF, so an empty message is ".\r\n" right after DATA. LF.LF, CR.CR,
// LF.CRLF, CRLF.LF and every other variant are data. A bare LF becomes CRLF (Postfix
// smtpd_forbid_bare_newline = normalize); a lone CR is kept as it is, because the spool's one
// body rule (common/line_ends.h: LF, CRLF or a lone CR each end a body line; in the header a CR
// is read as a space) decides what it means, the same as for a drop file. A line starting with
// "." loses that dot when anything else is on the line (RFC 5321 §4.5.2).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace spoold::smtp::server {

class DataReader {
 public:
  // Appends the message bytes found in `in` to `out` and returns how many bytes of `in` were
  // consumed: all of them, or fewer when the final dot was among them (done() is then true and
  // the rest belongs to the next command). Lines of any length pass through.
  std::size_t feed(std::string_view in, std::string& out);
  bool done() const { return done_; }
  std::uint64_t size() const { return size_; }        // octets appended so far
  std::uint64_t bare_lf() const { return bare_lf_; }  // bare LFs made CRLF so far
  void reset() { *this = DataReader{}; }

 private:
  enum class At { line_start, dot, dot_cr, middle };
  At at_ = At::line_start;
  bool crlf_start_ = true;  // the current line followed a CRLF (or the DATA command line)
  bool prev_cr_ = false;    // in the middle of a line: the last byte was a CR
  bool done_ = false;
  std::uint64_t size_ = 0;
  std::uint64_t bare_lf_ = 0;
};

}  // namespace spoold::smtp::server
