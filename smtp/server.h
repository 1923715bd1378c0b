// smtp/server.h — the sans-IO SMTP server engine (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
// SMTPUTF8, ENHANCEDSTATUSCODES, DSN, STARTTLS and AUTH PLAIN/LOGIN), used by the SMTP listener
// and by `sendmail -bs`. Bytes from the client in, replies and a message stream out; it never
// touches a socket, a timer, a file or a password database. What needs the host (recipient policy,
// checking credentials, storing the message, the TLS handshake) is an event the host answers with
// a call, possibly much later; until then the engine reads nothing more.
// Rules: one command line is parsed at a time and only once every earlier command has its reply,
// so pipelined commands are answered in order and bytes after DATA are never read as commands;
// only CRLF "." CRLF ends the data; a 250 to the final dot is sent only by message_stored(ok);
// every transition goes through enter() and is reported to the trace hook.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/mailbox.h"
#include "common/xtext.h"
#include "smtp/data_reader.h"

namespace spoold::smtp::server {

using std::chrono::milliseconds;

struct ServerOptions {
  std::string hostname = "localhost";  // banner, EHLO reply, 221/421 texts
  bool starttls = false;               // a certificate is configured: offer STARTTLS
  bool implicit_tls = false;           // the connection is TLS from its first byte (port 465)
  bool auth = false;                   // a users_file is configured: offer AUTH PLAIN LOGIN
  bool loopback = false;               // the client is on loopback: AUTH allowed without TLS
  std::uint64_t max_message_size = 50ull * 1024 * 1024;  // SIZE; 0 = no limit
  std::size_t max_recipients = 1000;
  // A command line, CRLF included. RFC 5321 §4.5.3.1.4 says 512; clients with long parameter
  // lists (ORCPT, ENVID, AUTH=) exceed that, so the default allows slack as Postfix does.
  std::size_t max_line = 2048;
  int max_errors = 20;  // protocol errors, then 421 4.7.0 and the session ends
  // NOOP, RSET, VRFY and HELP answered before each further one counts as an error (Postfix's
  // smtpd_junk_command_limit); a stored message starts the count again. 0 = no limit.
  int max_junk = 100;
  milliseconds timeout{300'000};  // RFC 5321 §4.5.3.2.7: awaiting each command / data block
};

enum class State {
  init,          // start() not called yet
  connected,     // banner sent, no HELO/EHLO yet (again after STARTTLS)
  ready,         // greeted, no transaction
  mail,          // MAIL accepted, no recipient accepted yet
  rcpt,          // at least one recipient accepted
  rcpt_wait,     // RcptRequest out: waiting for rcpt_verdict()
  auth,          // a 334 challenge is out: the next line is the client's answer
  auth_wait,     // AuthRequest out: waiting for auth_verdict()
  data,          // after 354: reading the message
  data_discard,  // the message outgrew max_message_size: reading to its end, storing nothing
  stored_wait,   // MessageEnd out: waiting for message_stored() / message_refused()
  tls_wait,      // 220 to STARTTLS out: waiting for tls_started()
  closed,        // the session is over: flush take_output(), then close
};
std::string_view to_string(State s);

enum class Body { unspecified, seven_bit, eight_bit_mime };  // RFC 6152 BODY=
enum class Ret { unspecified, full, hdrs };                  // RFC 3461 RET=

struct MailParams {
  std::optional<std::uint64_t> size;  // RFC 1870 SIZE=, as declared
  Body body = Body::unspecified;
  bool smtputf8 = false;  // RFC 6531
  Ret ret = Ret::unspecified;
  std::string envid;  // RFC 3461 ENVID, xtext-decoded (printable ASCII); "" = none
};

// RFC 3461 NOTIFY=: none set = not given; never excludes the others.
struct Notify {
  bool given = false;
  bool never = false, success = false, failure = false, delay = false;
};

struct RcptParams {
  Notify notify;
  std::string orcpt_type;  // ORCPT addr-type, e.g. "rfc822" (as given); "" = no ORCPT
  std::string orcpt;       // ORCPT address, xtext-decoded
};

struct Recipient {
  std::string address;  // as given, source route removed; "postmaster" for <Postmaster>
  RcptParams params;
};

// The DSN parameters in the spool's canonical text (spool/dsn.h): "" when not given.
std::string_view ret_text(Ret r);             // "FULL", "HDRS"
std::string notify_text(const Notify& n);     // "NEVER" or "SUCCESS,FAILURE,DELAY" (a subset)
std::string orcpt_text(const RcptParams& p);  // "rfc822;user@example.com"

struct Envelope {
  std::string sender;  // "" for the null sender <>
  MailParams params;
  std::vector<Recipient> recipients;  // accepted ones, in order
  std::string helo;                   // the HELO/EHLO argument
  bool esmtp = false;                 // EHLO (not HELO)
  bool tls = false;                   // the transaction ran over TLS
  std::string auth_user;              // "" when not authenticated
};

// A reply the host decides; the engine formats it ("CODE ENH text") and sanitises the text.
struct Verdict {
  int code = 250;
  std::string enhanced;  // "2.1.5"; "" = the engine picks one of the code's class
  std::string text;
};

enum class EndReason { quit, timeout, too_many_errors, client_closed, input_overflow };
std::string_view to_string(EndReason r);

// Events, drained with take_events() after each call into the engine.
struct RcptRequest {  // answer with rcpt_verdict()
  std::string address;
  RcptParams params;
  const Envelope* envelope = nullptr;  // the transaction so far; valid until the verdict
};
struct AuthRequest {      // answer with auth_verdict(); check the password off the loop (crypt(3))
  std::string mechanism;  // "PLAIN" or "LOGIN"
  std::string authzid;    // PLAIN's authorization identity ("" = same as user)
  std::string user;
  std::string password;
};
struct MessageBegin {  // 354 sent: open a temporary file
  Envelope envelope;
};
struct MessageData {  // dot-unstuffed, bare LF made CRLF; chunks of at most kDataChunk octets
  std::string bytes;
};
struct MessageEnd {        // the final dot came: make it durable, then message_stored() / message_refused()
  std::uint64_t size = 0;  // octets given in MessageData, CRLFs counted (RFC 1870)
  std::uint64_t bare_lf_fixed = 0;  // bare LFs that were made CRLF
};
struct MessageAborted {  // the message will not end well (too big, timeout, client gone): drop it
  std::string reason;
};
struct StartTls {};  // 220 is in take_output(): flush it, run the handshake, then tls_started()
struct InputDiscarded {
  std::size_t bytes = 0;
};  // plaintext that came before TLS started (RFC 3207 §5, CVE-2011-0411)
struct SessionEnded {
  EndReason reason;
  std::string text;  // the last reply, or what happened
};
using Event = std::variant<RcptRequest, AuthRequest, MessageBegin, MessageData, MessageEnd, MessageAborted,
                           StartTls, InputDiscarded, SessionEnded>;

// Observers for tracing and transcripts. Commands without CRLF; AUTH secrets as "<secret>";
// replies as sent (each line without CRLF, joined by "\n"); message data is never given.
struct ServerHooks {
  std::function<void(State from, State to)> on_transition;
  std::function<void(std::string_view command)> on_command;
  std::function<void(std::string_view reply)> on_reply;
};

class ServerEngine {
 public:
  static constexpr std::size_t kDataChunk = 64 * 1024;
  // Input held while the engine waits for the host; beyond this the session ends (421). A client
  // may pipeline this much; the transport should stop reading while input_paused().
  static constexpr std::size_t kMaxBuffered = 1024 * 1024;
  // Replies waiting for the transport: past this the engine reads no further command until
  // resume(), so a client that pipelines without reading (EHLO × 8,000 in 64 KiB is ~1.6 MB of
  // replies) costs at most this much more than the transport's own write queue.
  static constexpr std::size_t kMaxOutput = 16 * 1024;
  // In DATA the timer is re-armed only after this much further data, so a client trickling a
  // byte at a time is still cut at its timeout.
  static constexpr std::size_t kDataProgress = 8 * 1024;

  explicit ServerEngine(ServerOptions options, ServerHooks hooks = {});
  ~ServerEngine();
  ServerEngine(const ServerEngine&) = delete;
  ServerEngine& operator=(const ServerEngine&) = delete;

  // Transport → engine.
  void start();                       // connected (after implicit TLS's handshake): sends the 220 banner
  void feed(std::string_view bytes);  // plaintext bytes from the client
  void tls_started();                 // after StartTls: the handshake succeeded
  void timed_out();                   // the timer armed for timeout() fired: 421 4.4.2
  void closed();                      // EOF or a socket error from the client
  // The transport has room for more replies again: reads on in buffered input (output_held()).
  void resume();

  // Host → engine: answers to the events.
  void rcpt_verdict(const Verdict& v);  // 2xx accepts the recipient; 4xx/5xx refuses it
  void auth_verdict(bool ok, std::string user);
  // ok: the message is durable, 250 2.0.0 Ok: queued as ID. Not ok: 451 4.3.0 with the reason.
  void message_stored(bool ok, std::string_view queue_id_or_reason);
  void message_refused(const Verdict& v);  // e.g. 452 4.3.1 (disk full) or a policy 554

  // Engine → transport.
  std::string take_output();
  std::vector<Event> take_events();
  bool has_output() const { return !out_.empty(); }
  // How long the client may now take, nullopt when the engine waits for the host or has ended.
  // timer_epoch() changes whenever the timer must be re-armed.
  std::optional<milliseconds> timeout() const;
  std::uint64_t timer_epoch() const { return epoch_; }
  // True while the engine waits for the host's answer (RCPT, AUTH, the stored message), holds
  // input for want of room for replies, or has ended: the transport may stop reading the socket
  // until it is false again.
  bool input_paused() const;
  // kMaxOutput of replies were waiting when the next command was due: the engine
  // reads no further command until resume(), called once the transport's own queue has room.
  bool output_held() const { return output_held_; }

  State state() const { return state_; }
  bool ended() const { return state_ == State::closed; }
  bool encrypted() const { return encrypted_; }
  const std::string& auth_user() const { return auth_user_; }
  std::size_t buffered() const { return in_.size() - pos_; }
  int errors() const { return errors_; }

 private:
  void enter(State s);
  void reply(int code, std::string_view enhanced, std::string_view text);
  void reply_lines(int code, const std::vector<std::string>& lines);
  void error(int code, std::string_view enhanced, std::string_view text);  // counted
  void junk();  // after a NOOP/RSET/VRFY/HELP reply: past max_junk, an error too
  void count_error();
  bool waiting_for_host() const;
  void process();
  void line_too_long();
  void on_line(std::string_view raw);
  void on_command(std::string_view line);
  void on_auth_line(std::string_view line, bool traced = false);
  bool on_data();
  void end_data();
  void flush_data();

  void cmd_ehlo(std::string_view arg, bool esmtp);
  void cmd_mail(std::string_view arg);
  void cmd_rcpt(std::string_view arg);
  void cmd_data(std::string_view arg);
  void cmd_rset();
  void cmd_starttls(std::string_view arg);
  void cmd_auth(std::string_view arg);

  bool auth_allowed() const;
  bool greeted() const { return !envelope_.helo.empty(); }
  void reset_transaction();
  void abort_message(std::string reason);
  void end_session(EndReason why, std::string text);
  void emit(Event e) { events_.push_back(std::move(e)); }

  ServerOptions opt_;
  ServerHooks hooks_;
  State state_ = State::init;
  std::string in_;
  std::size_t pos_ = 0;
  bool skipping_ = false;     // inside a command line over max_line: dropping it to its LF
  bool output_held_ = false;  // see output_held()
  std::string out_;
  std::vector<Event> events_;
  std::uint64_t epoch_ = 0;
  int errors_ = 0;
  int junk_ = 0;  // junk commands since the session began or a message was stored
  bool encrypted_ = false;
  std::string auth_user_;

  Envelope envelope_;  // helo/esmtp last across transactions; the rest is the transaction
  bool have_mail_ = false;
  Recipient pending_rcpt_;     // the RCPT waiting for its verdict
  std::size_t discarded_ = 0;  // plaintext dropped since STARTTLS was accepted

  // AUTH exchange
  std::string auth_mech_;
  int auth_step_ = 0;
  std::string auth_given_user_;  // LOGIN: the user name, until the password comes

  // DATA
  DataReader reader_;
  std::string chunk_;            // unstuffed data not yet given out as MessageData
  std::uint64_t since_arm_ = 0;  // data bytes since the timer was last re-armed
};

// The RFC 3848 / RFC 6531 "with" keyword for a Received: field: SMTP, ESMTP, ESMTPS, ESMTPA,
// ESMTPSA, UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA.
std::string with_protocol(const Envelope& e);

// What the transport and the spool know for the Received: field (RFC 5321 §4.4).
struct ReceivedInfo {
  std::string by;           // our host name
  std::string client_name;  // the client's verified reverse DNS name; "" = unknown
  std::string client_ip;    // "192.0.2.1" or "IPv6:2001:db8::1"
  std::string tls;          // TlsServer::received_text(), e.g. "TLSv1.3 with cipher
                            // TLS_AES_256_GCM_SHA384 (256/256 bits)"; "" = none
  std::string queue_id;
  std::string date;  // RFC 5322 date-time, e.g. "Fri, 04 Dec 2026 18:53:00 +0000"
};
// The whole field, folded, each line ending in CRLF like the message data, Postfix style:
//   Received: from HELO (NAME [IP])
//   	(using TLS)
//   	by BY (spoold) with PROTO id QID
//   	for <rcpt>; DATE
// "for" only with exactly one recipient (the others are not disclosed). What came from the client
// (HELO) is made printable ASCII without parentheses.
std::string received_field(const Envelope& e, const ReceivedInfo& info);

// ---- parsing pieces (server_commands.cpp), public for tests and fuzzing ----

// RFC 5321 §4.1.2 Mailbox (Local-part "@" Domain) with its length limits; with utf8 (RFC 6531)
// bytes >= 0x80 are allowed in the local part and the domain when they form valid UTF-8.
using mailbox::valid_mailbox;
// RFC 3461 §4 xtext (common/xtext.h); nullopt when malformed.
inline std::optional<std::string> xtext_decode(std::string_view s) {
  return xtext::decode(s);
}

}  // namespace spoold::smtp::server
