// spool/drop.h — the drop-file parser: what a file in incoming/ says about its envelope.
// Rule: streaming. Only the envelope lines and the address-bearing header fields are kept in
// memory (each bounded by DropLimits); the body is scanned once for 8-bit bytes and never copied.
// The bytes are not changed: line endings are fixed by the SMTP encoder on the wire. Header lines
// are read as the encoder reads them, by the rule of common/header_lines.h (only LF ends one, the
// CRs right before it belong to the ending, any other CR is a space).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/header_fields.h"
#include "common/header_lines.h"
#include "common/result.h"
#include "spool/dsn.h"

namespace spoold::spool {

enum class DropFormat {
  envelope_first,  // "MAIL FROM:<a>", "RCPT TO:<b>"…, empty line, then the RFC 5322 message
  rfc5322,         // bare message; envelope from Sender/From and To/Cc/Bcc like `sendmail -t`
};
std::string_view to_string(DropFormat f);

struct DropInfo {
  DropFormat format = DropFormat::rfc5322;
  std::string sender;                   // "" is the null sender <>
  std::vector<std::string> recipients;  // RFC 5321 mailboxes, duplicates removed, in order
  uint64_t body_offset = 0;             // where the RFC 5322 message starts in the file
  uint64_t size = 0;                    // bytes in the whole file
  bool missing_date = true;             // no Date: header — add one at send time
  bool missing_message_id = true;       // no Message-ID: header — add one at send time
  bool eight_bit = false;               // a byte >= 0x80 somewhere in the message
  bool has_bcc = false;                 // a Bcc:/Resent-Bcc: header is present — never transmitted
  bool crlf = false;                    // some line ended in CRLF
  bool bare_lf = false;                 // some line ended in a bare LF
  uint64_t longest_line = 0;            // octets of the message's longest line as sent (header:
                                        // LF ends one, body: LF, CRLF or CR)
  MessageDsn dsn;                       // RET= / ENVID= of the MAIL FROM line
  // NOTIFY= / ORCPT= of the RCPT TO lines, by recipient index; shorter than recipients (or empty)
  // when the last ones carry none.
  std::vector<RecipientDsn> recipient_dsn;
  uint64_t message_size() const { return size - body_offset; }
};

struct DropLimits {
  size_t max_line = 64 * 1024;            // one physical line of the envelope or header section
  size_t max_field = 256 * 1024;          // one unfolded address header (long To: lists)
  size_t max_header_bytes = 1024 * 1024;  // the whole envelope + header section
  size_t max_recipients = 10000;
};

// Feed the file in chunks of any size, then finish(). After an error every call returns it again.
class DropParser {
 public:
  explicit DropParser(DropLimits limits = {}) : limits_(limits) {}
  Result<void> feed(std::string_view chunk);
  Result<DropInfo> finish();

  // For tests and fuzz targets: called with every line of the message's header section as read
  // (common/header_lines.h), up to the line that ends it, with what that line is.
  using HeaderObserver = std::function<void(HeaderLineKind, std::string_view line)>;
  void observe_header(HeaderObserver f) { observer_ = std::move(f); }

 private:
  enum class State { start, envelope, headers, body, failed };
  Result<void> fail(std::string message);
  Result<void> on_line(std::string_view raw, uint64_t end_offset);  // raw: one line, its LF excluded
  Result<void> on_envelope_line(std::string_view raw, uint64_t end_offset);
  Result<void> on_header_line(std::string_view line);  // line: as read by the header rule
  Result<void> end_field(const HeaderField& field);    // a completed address field
  Result<void> add_recipient(std::string addr, RecipientDsn dsn = {});
  void scan_body(std::string_view bytes);

  DropLimits limits_;
  State state_ = State::start;
  DropInfo info_;
  std::unordered_set<std::string> seen_;  // info_.recipients, for O(1) de-duplication
  std::string error_;
  std::string line_;       // the current, incomplete physical line (header section only)
  HeaderUnfolder fields_;  // what each header line is; the address fields' unfolded values
  HeaderObserver observer_;
  bool have_sender_hdr_ = false, have_from_ = false, saw_mail_from_ = false;
  std::string from_addr_;
  uint64_t offset_ = 0;  // bytes consumed so far
  uint64_t header_bytes_ = 0;
  uint64_t body_line_ = 0;  // length of the body line being scanned
  size_t line_no_ = 0;
};

// The envelope lines of an envelope-first drop file, with the empty line that ends them. The
// addresses must be valid mailboxes (the parser refuses the file otherwise); "" is the null sender.
std::string drop_envelope(std::string_view sender, const std::vector<std::string>& recipients);
// The same with DSN parameters on the MAIL FROM line and (by index) on the RCPT TO lines.
std::string drop_envelope(std::string_view sender, const std::vector<std::string>& recipients,
                          const MessageDsn& dsn, const std::vector<RecipientDsn>& recipient_dsn);

Result<DropInfo> parse_drop(std::string_view bytes, DropLimits limits = {});
// Reads fd from its current position to EOF in fixed-size chunks.
Result<DropInfo> parse_drop_fd(int fd, DropLimits limits = {});

// RFC 5321 §4.1.2 Mailbox (Local-part "@" Domain) with its length limits; valid UTF-8 in the local
// part and domain is allowed (RFC 6531), as an SMTPUTF8 session would send it.
bool valid_mailbox(std::string_view addr);

// One mailbox or group from an RFC 5322 address-list header value (already unfolded), with
// comments, display names, quoted local parts, obsolete routes and groups handled.
// Returns the addr-specs in canonical form; "<>" yields an empty string.
Result<std::vector<std::string>> parse_address_list(std::string_view value);

}  // namespace spoold::spool
