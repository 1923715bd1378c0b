// smtp/session.h — one SMTP client connection on a libuv loop: TCP connect (optional bind
// address), TLS over OpenSSL memory BIOs (STARTTLS or implicit), the Engine, one timer, an
// optional transcript. This is the API the daemon's connection pool uses.
// Rule: destroying the Session (even inside one of its callbacks) is always safe, and no callback
// runs after it: the connection state goes with it, and only the libuv handles' memory waits for
// the loop to close them (common/uv_handle.h).
// The process must ignore SIGPIPE (libuv writes with plain writev): a peer that resets the
// connection must become a write error, not the end of the daemon.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "smtp/body_reader.h"  // BodySource
#include "smtp/types.h"

namespace spoold::smtp {

struct SessionOptions {
  std::string ip;  // numeric IPv4 or IPv6 address of the next hop
  int port = 25;
  std::string bind_address;     // numeric local address, "" = any
  EngineOptions engine;         // ehlo name, tls policy, implicit TLS, auth, timeouts, envelope_limit
  std::string tls_host;         // SNI and the name verified under TlsPolicy::verify; "" = no SNI
  std::string ca_file;          // "" = the system CA store
  std::string transcript_path;  // "" = no transcript; else ">"/"<" lines, no secrets, no bodies
};

struct SessionCallbacks {
  // Once, when the session first becomes idle (greeted, TLS and AUTH done). May destroy the Session.
  std::function<void()> on_ready;
  // Once, when the session is over: reason.status == sent for a clean QUIT, else why it failed
  // (temporary or permanent for this hop). Any running transaction's callback runs first.
  // May destroy the Session.
  std::function<void(const Outcome& reason)> on_closed;
  // Warnings worth a log line (response injection after STARTTLS, TLS not verified, ...).
  std::function<void(std::string_view message)> on_warning;
  // The running transaction's final dot was just sent and it needs nothing more: a transaction
  // submitted now goes out behind the dot, without waiting a round trip for its reply (RFC 2920
  // §3.1; see can_submit_next()). Optional; may submit(), must not destroy the Session.
  std::function<void()> on_next_welcome;
  // Optional debug trace: every engine state transition ("ehlo -> ready"). Must not destroy the Session.
  std::function<void(std::string_view transition)> on_trace;
};

using TransactionCallback = std::function<void(const TransactionResult& result)>;

class Session {
 public:
  // Starts connecting at once. Every callback runs on the loop thread.
  Session(uv_loop_t* loop, SessionOptions options, SessionCallbacks callbacks);
  ~Session();  // aborts the connection if still open (no QUIT); no callback runs afterwards
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // True when a transaction may be submitted now.
  bool idle() const;
  // True while the connection is usable (not closed or failing); idle() or busy.
  bool alive() const;
  // True when a transaction may be submitted behind the running one's final dot (the server
  // offers PIPELINING, the dot was sent, nothing else is queued). Such a submit needs
  // Transaction::body_info (or an in-memory body); otherwise it is refused like a busy one.
  bool can_submit_next() const;
  // Carries one message to this hop: all its recipients, split into SMTP transactions of at most
  // envelope_limit (452/552-refused ones retried in a further transaction) by the engine.
  // `done` runs once with one outcome per recipient, in order; it may submit the next message,
  // quit() or destroy the Session. Callbacks run in submission order. Destroying the Session in
  // the first one drops the callback of a transaction submitted behind its dot too: the caller
  // must then count that one as not delivered (its dot was never sent). Neither idle() nor
  // can_submit_next(): `done` runs at once, every recipient temporary.
  void submit(Transaction txn, BodySource body, TransactionCallback done);
  // QUIT when idle (after the running transaction otherwise), then close; on_closed follows.
  void quit();
  // Close now, without QUIT and without waiting for the running transaction: its callback reports
  // every recipient without a final reply temporary, then on_closed. May destroy the Session.
  void abort(std::string_view why);
  // The TCP connection was made (a failure after this is the server's, not the network's).
  bool connected() const;

  const Capabilities& capabilities() const;
  bool encrypted() const;
  bool verified() const;  // the peer certificate verified for tls_host
  // The TLS handshake after an accepted STARTTLS failed (the session then ended temporary 4.7.5).
  bool starttls_failed() const;
  // The running transaction's final dot was sent and its reply has not come yet: aborting now
  // could lose the server's verdict on a message it may have taken (a possible duplicate).
  bool after_final_dot() const;
  std::string peer() const;  // "ip:port" / "[ip]:port"

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace spoold::smtp
