// smtp/body_encoder.h — turns a stored RFC 5322 message, fed in arbitrary chunks, into DATA wire
// bytes; and a scanner that learns the facts (8-bit, longest line, MIME structure, exact wire
// size) before anything is sent.
// Rule: no bare CR or LF ever reaches the wire; every line ends CRLF and is at most 998 octets
// (longer ones are wrapped, never refused), a leading '.' is doubled, the message ends in exactly
// one CRLF.CRLF; memory is one line, never the message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/header_lines.h"
#include "smtp/mime_convert.h"
#include "smtp/types.h"

namespace spoold::smtp {

// Line endings in stored messages. In the header section the rule all header readers share
// (common/header_lines.h): only LF ends a line, the CRs right before it are dropped, any other CR
// is sent as a space; the header ends at an empty line, or before a line that is no header field
// (then, if a header line went out before it, an empty line is sent first, so that no receiver
// reads a Bcc: behind it as a field). In the body LF, CRLF, or a lone CR each end one line.
//
// Lines over 998 octets (RFC 5322 §2.1.1), as Postfix's smtp_line_length_limit does:
//   * a header line is folded (RFC 5322 §2.2.3) before its last SP/HT that still leaves the piece
//     at most 998 octets and something other than white space (after the colon, on a field's
//     first line); that SP/HT starts the continuation, so the field is the same once unfolded. Without one,
//     CRLF SP is inserted after 998 octets (the unfolded value gains that one space);
//   * a body line (and a header line that is no field, the body's first) is broken with CRLF after
//     998 octets, nothing added; a piece that then starts with '.' is dot-stuffed like any line.
//   A hard break never falls inside a UTF-8 sequence: it moves back (at most 3 octets) to the
//   sequence's first octet. CR/LF never fall inside a line, so no line ending is split.
class BodyEncoder {
 public:
  static constexpr std::size_t kMaxLine = 998;  // RFC 5322 §2.1.1, line ending excluded

  // prepend_headers: lines to insert at the very top ("Date: ...", without line ending); the
  // caller passes only the ones the message lacks. Bcc:/Resent-Bcc: fields (with their folded
  // continuation lines) in the header section are dropped.
  // qp_lines non-empty converts the message to quoted-printable (mime_convert.h): every
  // Content-Transfer-Encoding field is dropped, these lines are added at the end of the header,
  // and the body is QP-encoded (its lines are then short: nothing to wrap).
  // masquerade non-empty masquerades the addresses of the From: and Sender: fields under these
  // domains (smtp/rewrite.h): such a field is held whole (up to kMaxHeldField octets; a longer
  // one goes out as it is) and sent rewritten, then folded like any other.
  explicit BodyEncoder(std::vector<std::string> prepend_headers = {}, std::vector<std::string> qp_lines = {},
                       std::vector<std::string> masquerade = {});
  static constexpr std::size_t kMaxHeldField = 32 * 1024;

  // Appends wire bytes for this chunk to out.
  void feed(std::string_view chunk, std::string& out);
  // Appends the final CRLF if the message lacked one, then ".\r\n".
  void finish(std::string& out);

  // Source lines sent as more than one wire line (each counted once, however many pieces).
  std::size_t wrapped_lines() const { return wrapped_; }
  // Facts learnt so far; complete after finish().
  std::size_t longest_line() const { return longest_; }  // octets as stored (before wrapping)
  bool eight_bit() const { return eight_bit_; }          // a byte >= 0x80 anywhere
  MimeFacts mime_facts() const;
  std::uint64_t stuffed_dots() const { return stuffed_; }  // RFC 1870 does not count them

 private:
  enum class Sink { undecided, drop, fold, hold, plain, qp };

  void start(std::string& out);
  const char* feed_header(const char* p, const char* end, std::string& out);  // returns where it stopped
  void header_text(std::string_view bytes, std::string& out);                 // CRs per the header rule
  void logical(std::string_view bytes, std::string& out);  // octets of the header line as read
  void decide(HeaderLineKind kind, std::string& out);
  void route(std::string_view bytes, std::string& out);
  void end_header_line(std::string& out);
  void header_end(bool empty_line, std::string& out);  // added lines, then the empty line
  void feed_body(const char* p, const char* end, std::string& out);
  void release_held(bool rewrite, std::string& out);  // the held field goes out

  void put_fold(std::string_view bytes, std::string& out);
  void put_plain(std::string_view bytes, bool line_ends, std::string& out);
  void end_fold_line(std::string& out);
  void emit_piece(std::string_view piece, std::string& out);
  void line_done() { line_wrapped_ = false; }
  void note_wrap();

  std::vector<std::string> prepend_;
  std::vector<std::string> added_;  // quoted-printable conversion: lines added to the header
  bool qp_ = false;
  bool started_ = false;
  bool in_header_ = true;
  bool header_sent_ = false;   // a header line (prepended or the message's) went out
  bool pending_cr_ = false;    // the previous chunk ended in CR: a following LF belongs to it
  bool line_started_ = false;  // the header line being read: some byte (if only a CR) since the last LF

  // The header line being read.
  std::uint64_t held_crs_ = 0;  // a run of CRs: spaces if text follows, the line ending if LF does
  std::uint64_t line_len_ = 0;  // its octets as read
  std::string pending_;         // its start while what it is is still open (normally a few octets)
  int cls_ = 0;                 // how far pending_ has gone: 0 nothing, 1 in the name, 2 in SP/HT after it
  Sink sink_ = Sink::undecided;
  bool dropping_ = false;  // the current field is not sent (Bcc, or the old CTE under conversion)
  bool holding_ = false;   // the current field is From:/Sender: under masquerading
  std::vector<std::string> masquerade_;
  std::string held_;            // its logical lines so far, each complete one ended by '\n'
  std::size_t held_floor_ = 0;  // its colon + 1
  HeaderWalker walker_;

  // MIME facts: the first Content-Type / Content-Transfer-Encoding line (capped), how many there are.
  enum class Watch { none, type, encoding };
  Watch watch_ = Watch::none;
  std::string type_line_, encoding_line_;
  int type_fields_ = 0, encoding_fields_ = 0;
  bool mime_version_ = false, header_8bit_ = false, body_8bit_ = false;
  bool line_wrapped_ = false;  // the current output line was wrapped (counted once in wrapped_)
  bool eight_bit_ = false;

  std::string seg_;             // the unsent start of the current output line (at most kMaxLine + 1 octets)
  std::size_t fold_floor_ = 0;  // no fold point before this octet of seg_ (a field's colon)
  std::size_t wrapped_ = 0;
  QpEncoder qpenc_;
  std::uint64_t body_line_ = 0;  // length of the body line being read
  std::size_t longest_ = 0;
  std::uint64_t stuffed_ = 0;
};

// Builds the header lines the encoder should prepend for the transaction's missing values.
std::vector<std::string> missing_headers(const Transaction& txn);

// Learns BodyInfo from the stored bytes, fed in chunks, by encoding them (into a scratch buffer)
// exactly as they will be sent, so the sizes are the wire's. with_qp also encodes them as the
// quoted-printable conversion would (for a server without 8BITMIME), for BodyInfo::qp_wire_size.
class BodyScanner {
 public:
  explicit BodyScanner(bool with_qp = false);
  void feed(std::string_view chunk);
  BodyInfo result() const;

 private:
  BodyEncoder plain_;
  std::optional<BodyEncoder> qp_;
  std::string scratch_;
  std::uint64_t plain_octets_ = 0, qp_octets_ = 0;
};

}  // namespace spoold::smtp
