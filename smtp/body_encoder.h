// smtp/body_encoder.h — turns a stored RFC 5322 message, fed in arbitrary chunks, into DATA wire
// bytes; and a scanner that learns the facts (8-bit, longest line) before anything is sent.
// Rule: no bare CR or LF ever reaches the wire; every line ends CRLF, a leading '.' is doubled, the
// message ends in exactly one CRLF.CRLF; memory is one line (<= 998 octets), never the message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/header_lines.h"
#include "common/result.h"
#include "smtp/types.h"

namespace spoold::smtp {

// Line endings in stored messages. In the header section the rule all header readers share
// (common/header_lines.h): only LF ends a line, the CRs right before it are dropped, any other CR
// is sent as a space; the header ends at an empty line, or before a line that is no header field
// (then, if a header line went out before it, an empty line is sent first, so that no receiver
// reads a Bcc: behind it as a field). In the body LF, CRLF, or a lone CR each end one line.
class BodyEncoder {
 public:
  static constexpr std::size_t kMaxLine = 998;  // RFC 5322 §2.1.1, line ending excluded

  // Header lines to insert at the very top ("Date: ...", without line ending); the caller passes
  // only the ones the message lacks. Bcc:/Resent-Bcc: fields (with their folded continuation
  // lines) in the header section are dropped (the 998-octet limit holds for them too).
  explicit BodyEncoder(std::vector<std::string> prepend_headers = {});

  // Appends wire bytes for this chunk to out. An error (line over 998 octets) is sticky: the
  // transaction must be aborted without sending the final dot.
  Result<void> feed(std::string_view chunk, std::string& out);
  // Appends the final CRLF if the message lacked one, then ".\r\n".
  Result<void> finish(std::string& out);

 private:
  const char* feed_header(const char* p, const char* end, std::string& out);  // returns where it stopped
  Result<void> feed_body(const char* p, const char* end, std::string& out);
  void end_header_line(std::string& out);  // header rules (Bcc, end of header), then emit_line
  void emit_line(std::string_view line, std::string& out);
  Result<void> too_long();

  std::vector<std::string> prepend_;
  bool started_ = false;
  bool in_header_ = true;
  bool header_sent_ = false;  // a header line (prepended or the message's) went out
  bool pending_cr_ = false;   // the previous chunk ended in CR: a following LF belongs to it
  bool failed_ = false;
  HeaderLineBuilder header_line_{kMaxLine + 1};  // the header line being read
  HeaderWalker walker_;
  std::string line_;  // only a body line cut by a chunk boundary, never more than kMaxLine
};

// Builds the header lines the encoder should prepend for the transaction's missing values.
std::vector<std::string> missing_headers(const Transaction& txn);

// Learns BodyInfo from the stored bytes, fed in chunks: the lines the encoder will send, by the
// same header and body rules.
class BodyScanner {
 public:
  void feed(std::string_view chunk);
  BodyInfo result() const;

 private:
  BodyInfo info_;
  bool in_header_ = true;
  bool header_sent_ = false;                                  // of the message's own lines
  HeaderLineBuilder header_line_{BodyEncoder::kMaxLine + 1};  // enough to tell what the line is
  HeaderWalker walker_;
  std::size_t cur_ = 0;  // length of the body line being scanned
  bool pending_cr_ = false;
};

}  // namespace spoold::smtp
