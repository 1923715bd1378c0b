// smtp/body_encoder.h — turns a stored RFC 5322 message, fed in arbitrary chunks, into DATA wire
// bytes; and a scanner that learns the facts (8-bit, longest line) before anything is sent.
// Rule: no bare CR or LF ever reaches the wire; every line ends CRLF, a leading '.' is doubled, the
// message ends in exactly one CRLF.CRLF; memory is one line (<= 998 octets), never the message.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "smtp/types.h"

namespace spoold::smtp {

// Line endings in stored messages: LF, CRLF, or a lone CR each end one line.
class BodyEncoder {
 public:
  static constexpr std::size_t kMaxLine = 998;  // RFC 5322 §2.1.1, line ending excluded

  // Header lines to insert at the very top ("Date: ...", without line ending); the caller passes
  // only the ones the message lacks. Bcc:/Resent-Bcc: fields (with their folded continuation
  // lines) in the header section are dropped.
  explicit BodyEncoder(std::vector<std::string> prepend_headers = {});

  // Appends wire bytes for this chunk to out. An error (line over 998 octets) is sticky: the
  // transaction must be aborted without sending the final dot.
  Result<void> feed(std::string_view chunk, std::string& out);
  // Appends the final CRLF if the message lacked one, then ".\r\n".
  Result<void> finish(std::string& out);

 private:
  void end_line(std::string_view line, std::string& out);  // header rules (Bcc), then emit_line
  void emit_line(std::string_view line, std::string& out);

  std::vector<std::string> prepend_;
  bool started_ = false;
  bool in_header_ = true;
  bool dropping_ = false;    // inside a dropped Bcc: field (continuation lines follow)
  bool pending_cr_ = false;  // the previous chunk ended in CR: a following LF belongs to it
  bool failed_ = false;
  std::string line_;  // only a line cut by a chunk boundary, never more than kMaxLine
};

// Builds the header lines the encoder should prepend for the transaction's missing values.
std::vector<std::string> missing_headers(const Transaction& txn);

// Learns BodyInfo from the stored bytes, fed in chunks.
class BodyScanner {
 public:
  void feed(std::string_view chunk);
  BodyInfo result() const;

 private:
  BodyInfo info_;
  std::size_t cur_ = 0;
  bool pending_cr_ = false;
};

}  // namespace spoold::smtp
