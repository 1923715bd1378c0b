// smtp/mime_convert.h — what to do with 8-bit data for a server that does not offer 8BITMIME
// (RFC 6152), and the pieces of the conversion: the MIME facts of a message's header, the pure
// decision on them, the header lines a quoted-printable conversion adds, and a streaming
// quoted-printable encoder (RFC 2045 §6.7).
// Rule: the decision is a pure function of facts learnt before MAIL, so a message that cannot be
// converted is deferred before anything is sent, never cut off in DATA. Only a body whose MIME
// structure says it is one piece of text is converted; anything else (8-bit header, multipart,
// message/*, non-text, binary, an already encoded body) is deferred, for another server or later.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spoold::smtp {

// Content-Type's top-level type, as far as the conversion cares. ambiguous: more than one field.
enum class MimeType { absent, text, multipart, message, other, ambiguous };
// Content-Transfer-Encoding's mechanism (RFC 2045 §6.1), lower-cased.
enum class MimeEncoding { absent, seven_bit, eight_bit, binary, quoted_printable, base64, other, ambiguous };

// What the header says about the body, learnt by the encoder's header reading (the fields as they
// are sent: Bcc: and friends left out).
struct MimeFacts {
  bool mime_version = false;  // a MIME-Version: field
  MimeType type = MimeType::absent;
  MimeEncoding encoding = MimeEncoding::absent;
  bool header_8bit = false;  // a byte >= 0x80 in a header line that is sent
  bool body_8bit = false;    // a byte >= 0x80 in the body
  bool operator==(const MimeFacts&) const = default;
};

MimeType classify_content_type(std::string_view value);
MimeEncoding classify_transfer_encoding(std::string_view value);

enum class BodyPlan {
  as_is,             // 7-bit data: nothing to declare, nothing to change
  eight_bit_mime,    // MAIL FROM ... BODY=8BITMIME, body unchanged
  quoted_printable,  // body re-encoded (RFC 2045 §6.7), header rewritten (qp_header_lines)
  needs_facts,       // 8-bit, no 8BITMIME, and the header was not read yet: scan first
  defer,             // cannot be sent to this server: temporary failure, `reason` says why
};

struct BodyDecision {
  BodyPlan plan = BodyPlan::as_is;
  std::string reason;  // for defer: the text of the temporary failure
};

// eight_bit: a byte >= 0x80 somewhere in the message (the spool's flag or the scan's);
// facts: nullopt when the header has not been read.
BodyDecision decide_body(bool eight_bit, bool server_8bitmime, const std::optional<MimeFacts>& facts);

// The header lines (without line ending) a quoted-printable conversion adds at the end of the
// header: Content-Transfer-Encoding always (every existing one is dropped), MIME-Version when
// missing, and when there is no Content-Type a text/plain one with charset "unknown-8bit"
// (RFC 1428 §3: 8-bit text of unknown charset), since the default (us-ascii) would be false.
std::vector<std::string> qp_header_lines(const MimeFacts& facts);
// The line every conversion adds (first of qp_header_lines).
inline constexpr std::string_view kQpTransferEncoding = "Content-Transfer-Encoding: quoted-printable";

// Quoted-printable for one body at a time, fed the octets of each line (without its line ending) in
// any number of pieces. Output lines are at most 76 octets (soft breaks "=" CRLF); '=' , control
// and 8-bit octets are "=XX"; SP/HT are literal except at the end of a line; a '.' that would start
// an output line is "=2E", so no line needs dot-stuffing.
class QpEncoder {
 public:
  static constexpr std::size_t kMaxChars = 75;  // before the soft break's "="

  void put(std::string_view bytes, std::string& out);
  void end_line(std::string& out);  // the hard line break (CRLF) of the text line
  bool line_open() const { return col_ > 0 || held_ != 0; }

 private:
  void literal(char c, std::string& out);
  void encoded(unsigned char c, std::string& out);
  void room(std::size_t n, std::string& out);

  std::size_t col_ = 0;  // octets on the current output line
  char held_ = 0;        // SP or HT not yet written: encoded only if the line ends right after it
};

}  // namespace spoold::smtp
