// smtp/engine.h — the sans-IO SMTP client protocol engine: bytes in, bytes to send and events out.
// It never touches a socket, a timer or a file: the transport feeds it what the server sent,
// writes what take_output() returns, arms a timer for timeout() and tells it when that fires.
// Rule: one function enters a state (and sends its command), one handler per state decides on the
// reply; every transition goes through enter() and is reported to the trace hook.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "smtp/body_encoder.h"
#include "smtp/mime_convert.h"
#include "smtp/reply.h"
#include "smtp/types.h"

namespace spoold::smtp {

// RFC 1870 SIZE= for the transaction sent the way `plan` says (exact when the scan knew the wire
// size, else an estimate from the stored size; see engine.cpp).
std::uint64_t declared_size(const Transaction& t, BodyPlan plan);

enum class State {
  init,           // not started
  tls_handshake,  // transport is doing a TLS handshake (implicit TLS or after STARTTLS 220)
  greeting,       // waiting for the 220 banner
  ehlo,
  helo,  // fallback after a 5xx to EHLO
  starttls,
  auth,   // an AUTH exchange, possibly several 334 steps
  ready,  // idle: a transaction may be submitted, or quit()
  mail,
  rcpt,
  data,
  body,  // sending the message; the transport pulls chunks (BodyWanted)
  dot,   // final "." sent, waiting for the reply
  rset,
  quit,
  closed,  // QUIT answered, or the server closed after QUIT: normal end
  failed,  // connection-level failure: the transport must close
};
std::string_view to_string(State s);

// Events, drained with take_events() after each call into the engine.
struct Ready {};       // greeted, TLS and AUTH done, no transaction running: submit() or quit()
struct StartTls {};    // flush take_output(), then start the TLS handshake; answer tls_done()
struct BodyWanted {};  // call body_chunk() repeatedly, then body_end()
struct ResponseInjected {
  std::size_t bytes = 0;
};  // bytes after STARTTLS 220 were discarded
struct RecipientReplied {
  std::size_t index = 0;
  Outcome outcome;
};  // RCPT reply (not final if sent)
struct TransactionDone {
  TransactionResult result;
};  // every recipient has its outcome
struct SessionEnded {
  Outcome reason;
};  // status sent = clean QUIT; otherwise why it failed
// The final dot of the running transaction was just sent and it needs nothing more on this
// connection: a further submit() now goes out at once, behind the dot (see can_submit_next()).
struct NextWelcome {};
using Event = std::variant<Ready, StartTls, BodyWanted, ResponseInjected, RecipientReplied, TransactionDone,
                           SessionEnded, NextWelcome>;

// Observers for tracing and transcripts. Commands are given without CRLF; AUTH secrets are
// replaced by "<secret>"; the body is never given.
struct EngineHooks {
  std::function<void(State from, State to)> on_transition;
  std::function<void(std::string_view command)> on_command;
  std::function<void(const Reply& reply)> on_reply;
};

class Engine {
 public:
  explicit Engine(EngineOptions options, EngineHooks hooks = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Transport → engine.
  void start();                                     // TCP connected (implicit TLS: handshake comes next)
  void receive(std::string_view bytes);             // plaintext bytes from the server
  void tls_done(bool ok, std::string_view detail);  // after StartTls: handshake result
  void timed_out();                                 // the timer armed for timeout() fired
  void connection_closed(std::string_view why);     // EOF or socket error from the server side

  // Daemon → engine (through the session).
  // Precondition: idle() or can_submit_next(). The engine splits recipients by envelope_limit and
  // retries recipients refused with 452/552-too-many in a further transaction on this connection
  // by itself, so one submit() ends in exactly one TransactionDone with every recipient final or
  // temporary; TransactionDone events come in submission order. Otherwise the transaction is
  // refused at once (every recipient temporary, "session not idle").
  void submit(Transaction txn);
  // RFC 2920 §3.1 lets the client send the next MAIL, RCPTs and DATA right behind a message's
  // final dot, so the next transaction does not wait a round trip for the dot's reply. True in
  // State::dot when the server offers PIPELINING, the running transaction needs no further batch
  // (no recipients left, none deferred by 452) and no transaction is queued behind it yet. The
  // server ends a transaction with its reply to the dot whatever that reply is, so no RSET is
  // needed between the two; a session failure before that reply fails both transactions.
  bool can_submit_next() const;
  void quit();                       // QUIT when idle; the session ends with SessionEnded{sent}
  void abort(std::string_view why);  // local abort: fail the session now, no further I/O

  // Body streaming, only in State::body after BodyWanted. Chunks are raw stored bytes from the
  // start of the message each time BodyWanted is emitted (one body per SMTP transaction).
  void body_chunk(std::string_view chunk);
  void body_end();

  // Engine → transport. `spare` (its contents are dropped) becomes the buffer the engine writes
  // into next: passing back a buffer already written keeps body chunks free of allocations.
  std::string take_output(std::string spare = {});
  std::vector<Event> take_events();
  bool has_output() const { return !out_.empty(); }
  bool has_events() const { return !events_.empty(); }
  // The timer to arm now, nullopt for none (idle/ended). timer_epoch() changes whenever the
  // timer must be re-armed (state change or body progress).
  std::optional<milliseconds> timeout() const;
  std::uint64_t timer_epoch() const { return epoch_; }

  State state() const { return state_; }
  bool idle() const { return state_ == State::ready; }
  bool ended() const { return state_ == State::closed || state_ == State::failed; }
  // Replies are owed for commands already handed to the transport.
  bool awaiting_replies() const { return replies_due_ > 0; }
  bool encrypted() const { return encrypted_; }
  // The TLS handshake after an accepted STARTTLS failed or the server hung up in it (RFC 7435:
  // under an opportunistic policy the caller may try the same server again without STARTTLS).
  // Not set by a timeout or a local abort.
  bool starttls_failed() const { return starttls_failed_; }
  const Capabilities& capabilities() const { return caps_; }

 private:
  struct Txn;

  void enter(State s);
  void send_command(std::string_view cmd, std::string_view logged = {});
  void send_mail(Txn& x);
  void send_auth_initial();
  std::string mail_command(const Txn& x) const;
  std::string rcpt_command(const Txn& x, std::size_t i) const;  // with NOTIFY/ORCPT when DSN is offered

  void on_reply(const Reply& r);
  void on_greeting(const Reply& r);
  void on_ehlo(const Reply& r);
  void on_helo(const Reply& r);
  void on_starttls(const Reply& r);
  void on_auth(const Reply& r);
  void on_mail(const Reply& r);
  void on_rcpt(const Reply& r);
  void on_data(const Reply& r);
  void on_dot(const Reply& r);
  void on_rset(const Reply& r);

  void after_hello();
  void begin_auth();
  void auth_continue(const Reply& r);
  void become_ready();
  std::unique_ptr<Txn> make_txn(Transaction t) const;
  void precheck(Txn& x);
  void take_batch(Txn& x);
  void start_batch();
  void queue_next(std::unique_ptr<Txn> x);
  void adopt_next();
  void finish_batch();
  void settle_deferred();
  void finish_transaction();
  static std::vector<std::string> notes(const Txn& x);
  void close_cleanly(Outcome reason);
  void fail_session(Outcome reason);
  void fail_transaction(std::unique_ptr<Txn> x, const Outcome& reason, bool after_dot);
  void emit(Event e) { events_.push_back(std::move(e)); }

  EngineOptions opt_;
  EngineHooks hooks_;
  State state_ = State::init;
  ReplyParser parser_;
  Capabilities caps_;
  bool encrypted_ = false;
  bool tls_refused_ = false;  // opportunistic STARTTLS got a non-220: carry on in plaintext
  bool starttls_failed_ = false;
  bool authenticated_ = false;
  bool ready_announced_ = false;
  bool quit_pending_ = false;
  std::string out_;
  std::vector<Event> events_;
  std::uint64_t epoch_ = 0;
  // Replies the server owes us for commands the transport has taken (may arrive now), and for
  // commands still in out_ (may not arrive yet).
  std::size_t replies_due_ = 0;
  std::size_t replies_unsent_ = 0;

  AuthMechanism auth_mech_ = AuthMechanism::none;
  int auth_step_ = 0;

  std::unique_ptr<Txn> txn_;
  std::unique_ptr<Txn> next_;  // submitted behind txn_'s final dot (can_submit_next())
  std::optional<BodyEncoder> encoder_;
};

}  // namespace spoold::smtp
