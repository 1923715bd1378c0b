// smtp/types.h — the vocabulary shared by the SMTP engine, the session adapter and the daemon:
// outcomes, options, transactions. Plain structs only; the daemon maps its Config into them.
// Rule: an outcome is three-valued and always carries the reply (code, enhanced code, sanitised
// text) or a local reason — never a bool.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/delivery_policy.h"
#include "smtp/mime_convert.h"

namespace spoold::smtp {

using std::chrono::milliseconds;

enum class Status { sent, temporary, permanent };
std::string_view to_string(Status s);

struct Outcome {
  Status status = Status::temporary;
  int code = 0;          // SMTP reply code; 0 when no reply was involved (local or connection reason)
  std::string enhanced;  // RFC 3463 "X.Y.Z" from the server, or chosen by us for local reasons; may be ""
  std::string text;      // sanitised server text, or a local reason ("connection timed out in DATA")
  // A timeout or EOF after the final "." was sent: the server may have accepted the message.
  // status is temporary (at-least-once), but the daemon may want to log it.
  bool possible_duplicate = false;
  // Sent to a server that offers DSN (RFC 3461): NOTIFY went with the RCPT, so success and later
  // failures are that server's to report, not ours.
  bool dsn_passed = false;
};

// The RFC 3463 code to log or put in a DSN: the outcome's own, else one derived from the status
// ("2.0.0", "4.0.0", "5.0.0"), for servers that do not send enhanced codes.
std::string dsn_code(const Outcome& o);

// A host name from configuration, made safe for a command or reply line (EHLO, the banner): no
// space, control or 8-bit byte can end or split the line; "localhost" when nothing is left.
std::string line_safe_name(std::string name);

struct RecipientOutcome {
  std::string address;
  Outcome outcome;
};

// Result of one submitted Transaction, one entry per recipient in submission order.
struct TransactionResult {
  std::vector<RecipientOutcome> recipients;
  // What was changed on the way, once per message, for one log line each ("wrapped 2 lines over
  // 998 octets", "converted to quoted-printable ...").
  std::vector<std::string> notes = {};
};

// RFC 5321 §4.5.3.2 defaults. connect, starttls/tls handshake, auth, rset and quit are not in the RFC
// table; they use the EHLO value (5 min) except connect (30 s, docs/configuration.md
// delivery.timeouts.connect).
struct Timeouts {
  milliseconds connect{30'000};
  milliseconds greeting{300'000};
  milliseconds ehlo{300'000};
  milliseconds starttls{300'000};  // STARTTLS reply and TLS handshake
  milliseconds auth{300'000};
  milliseconds mail{300'000};
  milliseconds rcpt{300'000};
  milliseconds data{120'000};
  milliseconds block{180'000};  // each body write must complete within this
  milliseconds dot{600'000};
  milliseconds rset{300'000};
  milliseconds quit{300'000};
};

// The TLS policy (verify checks the certificate for tls_host) and the AUTH mechanism, with their
// to_string and sasl_name: the shared types of common/delivery_policy.h, which config/ reads.
using spoold::AuthMechanism;
using spoold::TlsPolicy;

struct AuthOptions {
  AuthMechanism mechanism = AuthMechanism::none;
  std::string user;
  std::string secret;  // the password, or the OAuth2 bearer token for xoauth2
  // AUTH is never sent over an unencrypted connection unless this is true (relay `tls: none`).
  bool allow_plaintext = false;
};

// What the protocol engine needs; the session adds the addresses and files (see session.h).
struct EngineOptions {
  std::string ehlo_name = "localhost";
  TlsPolicy tls = TlsPolicy::opportunistic;
  bool implicit_tls = false;  // smtps: TLS from the first byte, no STARTTLS
  AuthOptions auth;
  Timeouts timeouts;
  std::size_t envelope_limit = 100;  // most RCPTs per SMTP transaction
};

// Facts about the body that decide MAIL parameters and catch illegal lines before anything is
// sent. Computed by scan (BodyScanner in body_encoder.h) when the caller does not know them.
struct BodyInfo {
  bool eight_bit = false;        // a byte >= 0x80 somewhere
  std::size_t longest_line = 0;  // octets as stored, line ending excluded (longer than 998: wrapped)
  // RFC 1870 message size as sent (CRLF line ends, wrapped lines; not counting dot-stuffing nor
  // the prepended Date/Message-ID, which the engine adds); 0 = unknown, then an estimate from
  // Transaction::size is declared instead.
  std::uint64_t wire_size = 0;
  // The same once converted to quoted-printable (mime_convert.h), when the scan was asked for it.
  std::uint64_t qp_wire_size = 0;
  // The header's MIME facts; nullopt when the header was not read (the daemon's spool facts):
  // needed only for 8-bit data to a server without 8BITMIME, and then the session scans.
  std::optional<MimeFacts> mime = std::nullopt;
};

// One message to carry to one next hop.
struct Transaction {
  std::string sender;                   // "" is the null sender <>
  std::vector<std::string> recipients;  // any number; the engine splits by envelope_limit
  std::uint64_t size = 0;               // message size in octets as stored (for SIZE checks and SIZE=)
  std::optional<BodyInfo> body_info;    // nullopt: the session scans the body first
  // Header values to insert at the top of the header because the message lacks them; "" = not
  // missing. The caller knows (it parsed the message); e.g. "Sun, 22 Nov 2026 04:00:00 +0000",
  // "<id@host>". CR/LF in them are dropped.
  std::string missing_date;
  std::string missing_message_id;
  // Masquerade the From: and Sender: addresses under these domains (smtp/rewrite.h); the caller
  // has already rewritten `sender`.
  std::vector<std::string> masquerade;
  // RFC 3461 requests, passed on when the server offers DSN: RET ("FULL" or "HDRS") and ENVID
  // (decoded) for MAIL; per recipient, parallel to `recipients` (shorter or "" = none), NOTIFY
  // (canonical) and ORCPT ("addr-type;address", decoded). CR, LF and NUL never get on the wire.
  std::string dsn_ret, dsn_envid;
  std::vector<std::string> dsn_notify, dsn_orcpt;
};

// What the server announced in its last EHLO reply (forgotten after STARTTLS).
struct Capabilities {
  bool esmtp = false;  // EHLO accepted (false after HELO fallback)
  bool pipelining = false;
  bool starttls = false;
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  bool enhanced_status_codes = false;
  bool dsn = false;
  bool chunking = false;
  bool size_announced = false;
  std::uint64_t size = 0;         // 0 with size_announced = no limit
  std::vector<std::string> auth;  // mechanisms, upper-case
};

}  // namespace spoold::smtp
