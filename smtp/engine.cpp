// smtp/engine.cpp — see engine.h. Reading guide: the state table (name + timeout per state) comes
// first, then enter() (the only place the state changes, and where each state's command is sent),
// then one on_<state>() reply handler per state, then the transaction bookkeeping.
// Rules kept here: replies are matched to commands strictly in order (RFC 2920); any 421,
// malformed reply, timeout or EOF fails the session and turns every recipient that is not yet
// final into a temporary outcome ("possible duplicate" after the final dot).
#include "smtp/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <iterator>

#include "common/ascii.h"
#include "common/xtext.h"
#include "idna/idna.h"
#include "smtp/auth.h"
#include "smtp/base64.h"

namespace spoold::smtp {

namespace {

struct StateRow {
  State state;
  std::string_view name;
  milliseconds Timeouts::*timeout;  // nullptr: no timer in this state
};

// RFC 5321 §4.5.3.2 timeouts per state (defaults in types.h); Postfix xfer_timeouts[] style.
constexpr StateRow kStates[] = {
    {State::init, "init", nullptr},
    {State::tls_handshake, "tls-handshake", &Timeouts::starttls},
    {State::greeting, "greeting", &Timeouts::greeting},
    {State::ehlo, "ehlo", &Timeouts::ehlo},
    {State::helo, "helo", &Timeouts::ehlo},
    {State::starttls, "starttls", &Timeouts::starttls},
    {State::auth, "auth", &Timeouts::auth},
    {State::ready, "ready", nullptr},
    {State::mail, "mail", &Timeouts::mail},
    {State::rcpt, "rcpt", &Timeouts::rcpt},
    {State::data, "data", &Timeouts::data},
    {State::body, "body", &Timeouts::block},
    {State::dot, "dot", &Timeouts::dot},
    {State::rset, "rset", &Timeouts::rset},
    {State::quit, "quit", &Timeouts::quit},
    {State::closed, "closed", nullptr},
    {State::failed, "failed", nullptr},
};

const StateRow& row(State s) {
  return kStates[static_cast<std::size_t>(s)];
}

Outcome local(Status s, std::string enhanced, std::string text) {
  return Outcome{s, 0, std::move(enhanced), std::move(text), false};
}

// A reply of the class its command can have (RFC 5321 §4.2.1, §4.3.2): 4xx temporary, 5xx
// permanent, the class the command succeeds with (`success`, 2 or 3) sent. Any other class is not
// an answer that command can get — a broken or hostile server — and is a temporary failure with
// no code of its own, so it is never mistaken for a success nor for the server's verdict.
bool answers(const Reply& r, int success = 2) {
  return r.klass() == 4 || r.klass() == 5 || r.klass() == success;
}

Outcome outcome_of(const Reply& r, State state, int success = 2) {
  if (answers(r, success)) {
    Outcome o;
    o.status = r.klass() == 5 ? Status::permanent : r.klass() == 4 ? Status::temporary : Status::sent;
    o.code = r.code;
    o.enhanced = r.enhanced.to_string();
    o.text = r.text();
    return o;
  }
  return local(Status::temporary, "4.5.0",
               fmt::format("protocol error: reply {} {} in state {}", r.code, r.text(), to_string(state)));
}

// RET, NOTIFY and addr-type values as the spool stores them are letters, digits, '-' and ','; a
// Transaction from elsewhere may not be, and nothing else may reach a command line.
bool dsn_value_ok(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == ',';
  });
}

bool non_ascii(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// An address must not be able to end the command line or the <...> around it.
bool address_safe(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f || c == '<' || c == '>';
  });
}

// Octets the prepended Date/Message-ID lines add, with the empty line they may call for (a
// message without a header of its own).
std::uint64_t prepended_size(const Transaction& t) {
  std::uint64_t n = 0;
  for (const auto& h : missing_headers(t)) n += h.size() + 2;
  return n > 0 ? n + 2 : 0;
}

}  // namespace

// RFC 1870 SIZE=: the octets after 354, CRLFs counted, without the stuffed dots. Exact when the
// scan knew the wire size (as converted, under quoted-printable). Otherwise (the daemon's spool
// facts) an estimate from the stored size: plus the wrapping's CRLF (SP) per piece, at most 3
// octets per ~500 stored octets of the lines over 998 (two pieces hold at least 995 of them),
// bounded here by 1 %. What LF → CRLF adds is not known without reading the file: RFC 1870 §4
// lets the client declare an estimate, and a stored CRLF message is exact.
std::uint64_t declared_size(const Transaction& t, BodyPlan plan) {
  std::uint64_t body = t.size;
  if (t.body_info && plan == BodyPlan::quoted_printable && t.body_info->qp_wire_size > 0)
    body = t.body_info->qp_wire_size;
  else if (t.body_info && t.body_info->wire_size > 0)
    body = t.body_info->wire_size;
  else if (t.body_info && t.body_info->longest_line > BodyEncoder::kMaxLine)
    body += t.size / 100 + 3;
  return body + prepended_size(t);
}

namespace {

Capabilities parse_ehlo(const Reply& r) {
  Capabilities caps;
  caps.esmtp = true;
  for (std::size_t i = 1; i < r.lines.size(); ++i) {  // line 0 is the server's name
    // Keywords are ASCII: A-Z folded, every other byte (8-bit ones too) kept, whatever the locale.
    std::string line = ascii_upper(r.lines[i]);
    std::string_view v = line;
    std::size_t sp = v.find_first_of(" =");
    std::string_view key = v.substr(0, sp);
    std::string_view args = sp == std::string_view::npos ? std::string_view{} : v.substr(sp + 1);
    if (key == "PIPELINING")
      caps.pipelining = true;
    else if (key == "STARTTLS")
      caps.starttls = true;
    else if (key == "8BITMIME")
      caps.eight_bit_mime = true;
    else if (key == "SMTPUTF8")
      caps.smtputf8 = true;
    else if (key == "ENHANCEDSTATUSCODES")
      caps.enhanced_status_codes = true;
    else if (key == "DSN")
      caps.dsn = true;
    else if (key == "CHUNKING")
      caps.chunking = true;
    else if (key == "SIZE") {
      caps.size_announced = true;
      std::uint64_t n = 0;
      for (char c : args) {
        if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) break;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
      }
      caps.size = n;
    } else if (key == "AUTH") {
      std::size_t p = 0;
      while (p < args.size()) {
        std::size_t e = args.find(' ', p);
        if (e == std::string_view::npos) e = args.size();
        if (e > p && std::find(caps.auth.begin(), caps.auth.end(), args.substr(p, e - p)) == caps.auth.end())
          caps.auth.emplace_back(args.substr(p, e - p));
        p = e + 1;
      }
    }
  }
  return caps;
}

}  // namespace

std::string_view to_string(State s) {
  return row(s).name;
}

// Per-recipient progress inside one submitted transaction.
enum class Rcpt { queued, pending, accepted, deferred, final };

struct Engine::Txn {
  Transaction t;
  std::vector<RecipientOutcome> results;
  std::vector<Rcpt> st;
  std::deque<std::size_t> queue;   // recipients waiting for a batch, in submission order
  std::vector<std::size_t> batch;  // the recipients of the SMTP transaction in progress
  std::size_t next = 0;            // next RCPT reply expected (index into batch)
  std::size_t accepted = 0;
  bool mail_ok = false;
  bool pipelined = false;
  bool empty_dot = false;         // pipelined, no recipient accepted, yet DATA got 354: "." sent to end it
  bool batch_ok = false;          // the last batch ended with a 2xx after the dot (no RSET needed)
  bool utf8 = false;              // SMTPUTF8 on MAIL: a local part on the wire is not ASCII
  std::string wire_sender;        // the sender as sent: its domain in A-label form (idna.h)
  std::vector<std::string> wire;  // each recipient as sent, likewise
  bool sent_ahead = false;        // its first batch's commands went out behind the previous final dot
  BodyDecision body;              // what its 8-bit data needs (precheck)
  std::size_t wrapped = 0;        // lines the encoder wrapped (the same in every batch)
  bool body_sent = false;         // a batch sent the body to its end

  void set(std::size_t i, Outcome o) {
    results[i].outcome = std::move(o);
    st[i] = Rcpt::final;
  }
};

Engine::Engine(EngineOptions options, EngineHooks hooks)
    : opt_(std::move(options)), hooks_(std::move(hooks)) {
  opt_.ehlo_name = line_safe_name(std::move(opt_.ehlo_name));  // from configuration
}
Engine::~Engine() = default;

std::optional<milliseconds> Engine::timeout() const {
  auto field = row(state_).timeout;
  if (!field) return std::nullopt;
  return opt_.timeouts.*field;
}

std::string Engine::take_output(std::string spare) {
  replies_due_ += replies_unsent_;  // from now on the server may answer them
  replies_unsent_ = 0;
  spare.clear();
  return std::exchange(out_, std::move(spare));
}
std::vector<Event> Engine::take_events() {
  return std::exchange(events_, {});
}

void Engine::send_command(std::string_view cmd, std::string_view logged) {
  out_.append(cmd);
  out_ += "\r\n";
  ++replies_unsent_;
  if (hooks_.on_command) hooks_.on_command(logged.empty() ? cmd : logged);
}

// ---- entering states: the only place state_ changes; sends the state's command ----

void Engine::enter(State s) {
  State from = state_;
  state_ = s;
  ++epoch_;
  if (hooks_.on_transition) hooks_.on_transition(from, s);
  switch (s) {
    case State::tls_handshake:
      emit(StartTls{});
      break;
    case State::greeting:
      replies_due_ = 1;  // the banner comes without a command
      break;
    case State::ehlo:
      send_command("EHLO " + opt_.ehlo_name);
      break;
    case State::helo:
      send_command("HELO " + opt_.ehlo_name);
      break;
    case State::starttls:
      send_command("STARTTLS");
      break;
    case State::auth:
      send_auth_initial();
      break;
    case State::mail:
      if (!std::exchange(txn_->sent_ahead, false)) send_mail(*txn_);
      break;
    case State::rcpt:
      if (!txn_->pipelined) send_command(rcpt_command(*txn_, txn_->batch[txn_->next]));
      break;
    case State::data:
      if (!txn_->pipelined) send_command("DATA");
      break;
    case State::body:
      encoder_.emplace(missing_headers(txn_->t),
                       txn_->body.plan == BodyPlan::quoted_printable
                           ? qp_header_lines(*txn_->t.body_info->mime)
                           : std::vector<std::string>{},
                       txn_->t.masquerade);
      emit(BodyWanted{});
      break;
    case State::dot:
      ++replies_unsent_;  // for the "." the body encoder (or on_data) appended
      if (can_submit_next()) emit(NextWelcome{});
      break;
    case State::rset:
      send_command("RSET");
      break;
    case State::quit:
      send_command("QUIT");
      break;
    default:
      break;
  }
}

void Engine::send_mail(Txn& x) {
  send_command(mail_command(x));
  if (!caps_.pipelining) return;
  // RFC 2920: MAIL, every RCPT and DATA go in one write; replies are matched in order.
  x.pipelined = true;
  for (std::size_t i : x.batch) send_command(rcpt_command(x, i));
  send_command("DATA");
}

std::string Engine::mail_command(const Txn& x) const {
  const Transaction& t = x.t;
  std::string cmd = "MAIL FROM:<" + x.wire_sender + ">";
  if (caps_.size_announced) cmd += fmt::format(" SIZE={}", declared_size(t, x.body.plan));
  if (x.body.plan == BodyPlan::eight_bit_mime) cmd += " BODY=8BITMIME";
  if (x.utf8) cmd += " SMTPUTF8";
  if (caps_.dsn) {
    if (dsn_value_ok(t.dsn_ret) && !t.dsn_ret.empty()) cmd += " RET=" + t.dsn_ret;
    if (!t.dsn_envid.empty()) cmd += " ENVID=" + xtext::encode(t.dsn_envid);
  }
  return cmd;
}

std::string Engine::rcpt_command(const Txn& x, std::size_t i) const {
  std::string cmd = "RCPT TO:<" + x.wire[i] + ">";
  if (!caps_.dsn) return cmd;
  const Transaction& t = x.t;
  if (i < t.dsn_notify.size() && !t.dsn_notify[i].empty() && dsn_value_ok(t.dsn_notify[i]))
    cmd += " NOTIFY=" + t.dsn_notify[i];
  if (i < t.dsn_orcpt.size() && !t.dsn_orcpt[i].empty()) {
    // addr-type ";" xtext(address): only the address part is encoded.
    const std::string& o = t.dsn_orcpt[i];
    auto semi = o.find(';');
    if (semi != std::string::npos && semi > 0 && dsn_value_ok(o.substr(0, semi)))
      cmd += " ORCPT=" + o.substr(0, semi + 1) + xtext::encode(o.substr(semi + 1));
  }
  return cmd;
}

void Engine::send_auth_initial() {
  const auto& a = opt_.auth;
  switch (auth_mech_) {
    case AuthMechanism::plain:
      send_command("AUTH PLAIN " + auth::plain_response(a.user, a.secret), "AUTH PLAIN <secret>");
      break;
    case AuthMechanism::xoauth2:
      send_command("AUTH XOAUTH2 " + auth::xoauth2_response(a.user, a.secret), "AUTH XOAUTH2 <secret>");
      break;
    default:
      send_command(fmt::format("AUTH {}", sasl_name(auth_mech_)));
      break;
  }
}

// ---- transport → engine ----

void Engine::start() {
  if (state_ != State::init) return;
  enter(opt_.implicit_tls ? State::tls_handshake : State::greeting);
}

void Engine::receive(std::string_view bytes) {
  if (ended() || state_ == State::init) return;
  if (state_ == State::tls_handshake) {  // plaintext where only TLS may follow
    emit(ResponseInjected{bytes.size()});
    return;
  }
  parser_.feed(bytes);
  for (int guard = 0; guard < 100000 && !ended() && state_ != State::tls_handshake; ++guard) {
    auto r = parser_.next();
    if (!r) break;
    if (!r->ok()) {
      fail_session(local(Status::temporary, "4.5.0", "malformed reply from server: " + r->error().message));
      break;
    }
    on_reply(r->value());
  }
}

void Engine::tls_done(bool ok, std::string_view detail) {
  if (state_ != State::tls_handshake) return;
  if (!ok) {
    starttls_failed_ = !opt_.implicit_tls;
    fail_session(
        local(Status::temporary, "4.7.5", fmt::format("TLS handshake failed: {}", sanitize(detail))));
    return;
  }
  encrypted_ = true;
  caps_ = Capabilities{};  // RFC 3207 §4.2: forget everything learnt before TLS
  parser_ = ReplyParser{};
  replies_due_ = 0;
  replies_unsent_ = 0;
  enter(opt_.implicit_tls ? State::greeting : State::ehlo);
}

void Engine::timed_out() {
  if (!timeout()) return;
  if (state_ == State::quit) {  // everything is done; the server was just slow to say goodbye
    close_cleanly(local(Status::sent, "", "no reply to QUIT"));
    return;
  }
  fail_session(local(Status::temporary, "4.4.2", fmt::format("timeout in state {}", to_string(state_))));
}

void Engine::connection_closed(std::string_view why) {
  if (ended()) return;
  if (state_ == State::quit) {  // EOF (even without TLS close_notify) after QUIT is normal
    close_cleanly(local(Status::sent, "", "closed after QUIT"));
    return;
  }
  // A server that hangs up in the handshake may not speak TLS at all (RFC 7435 fallback); a timeout
  // or our own abort there is no sign of that.
  if (state_ == State::tls_handshake && !opt_.implicit_tls) starttls_failed_ = true;
  fail_session(local(Status::temporary, "4.4.2",
                     fmt::format("connection lost in state {}: {}", to_string(state_), sanitize(why))));
}

void Engine::abort(std::string_view why) {
  if (ended()) return;
  fail_session(local(Status::temporary, "4.3.0", sanitize(why)));
}

// ---- replies ----

void Engine::on_reply(const Reply& r) {
  if (hooks_.on_reply) hooks_.on_reply(r);
  if (r.code == 421 && state_ != State::quit) {  // service closing: the connection is over
    fail_session(outcome_of(r, state_));
    return;
  }
  // A reply to a command we have not sent yet (lock-step) or never sent: the server is out of
  // step, or someone is injecting replies; matching it to a command would be a guess.
  if (replies_due_ == 0) {
    fail_session(local(Status::temporary, "4.5.0",
                       fmt::format("reply {} {} arrived before its command was sent (state {})", r.code,
                                   r.text(), to_string(state_))));
    return;
  }
  --replies_due_;
  switch (state_) {
    case State::greeting:
      on_greeting(r);
      break;
    case State::ehlo:
      on_ehlo(r);
      break;
    case State::helo:
      on_helo(r);
      break;
    case State::starttls:
      on_starttls(r);
      break;
    case State::auth:
      on_auth(r);
      break;
    case State::mail:
      on_mail(r);
      break;
    case State::rcpt:
      on_rcpt(r);
      break;
    case State::data:
      on_data(r);
      break;
    case State::dot:
      on_dot(r);
      break;
    case State::rset:
      on_rset(r);
      break;
    case State::quit:
      close_cleanly(outcome_of(r, state_));
      break;
    default:  // ready or body: nothing was asked
      fail_session(outcome_of(r, state_, 0));
  }
}

void Engine::on_greeting(const Reply& r) {
  if (r.code == 220) return enter(State::ehlo);
  fail_session(outcome_of(r, state_, 0));  // 2xx other than 220 is no greeting either
}

void Engine::on_ehlo(const Reply& r) {
  if (r.klass() == 2) {
    caps_ = parse_ehlo(r);
    return after_hello();
  }
  if (r.klass() == 5) return enter(State::helo);  // RFC 5321 §3.2: fall back to HELO
  fail_session(outcome_of(r, state_));
}

void Engine::on_helo(const Reply& r) {
  if (r.klass() != 2) return fail_session(outcome_of(r, state_));
  caps_ = Capabilities{};
  after_hello();
}

void Engine::after_hello() {
  bool want_tls = opt_.tls != TlsPolicy::none && !opt_.implicit_tls && !encrypted_ && !tls_refused_;
  if (want_tls) {
    if (caps_.starttls) return enter(State::starttls);
    if (opt_.tls != TlsPolicy::opportunistic)
      return fail_session(local(
          Status::temporary, "4.7.4",
          fmt::format("TLS is required (policy {}), but STARTTLS was not offered", to_string(opt_.tls))));
  }
  if (opt_.auth.mechanism != AuthMechanism::none && !authenticated_) return begin_auth();
  become_ready();
}

void Engine::on_starttls(const Reply& r) {
  if (r.code == 220) {
    // RFC 3207 §5 / CVE-2011-0411: anything already received after the 220 was sent before TLS
    // and must not be read as an answer to what we send over TLS.
    std::string injected = parser_.take_unparsed();
    if (!injected.empty()) emit(ResponseInjected{injected.size()});
    return enter(State::tls_handshake);
  }
  if (opt_.tls == TlsPolicy::opportunistic) {  // carry on in plaintext; do not ask again
    tls_refused_ = true;
    return after_hello();
  }
  Outcome o = outcome_of(r, state_);
  o.status = Status::temporary;
  o.text = "STARTTLS refused: " + o.text;
  fail_session(std::move(o));
}

void Engine::begin_auth() {
  if (!encrypted_ && !opt_.auth.allow_plaintext)
    return fail_session(
        local(Status::temporary, "4.7.0", "refusing to send AUTH over an unencrypted connection"));
  auth_mech_ = auth::choose(opt_.auth.mechanism, caps_.auth, encrypted_);
  if (auth_mech_ == AuthMechanism::none)
    return fail_session(local(Status::temporary, "4.7.0",
                              fmt::format("no usable AUTH mechanism (wanted {}, server offers [{}])",
                                          to_string(opt_.auth.mechanism), fmt::join(caps_.auth, " "))));
  auth_step_ = 0;
  enter(State::auth);
}

void Engine::on_auth(const Reply& r) {
  if (r.klass() == 2) {
    authenticated_ = true;
    return become_ready();
  }
  if (r.code == 334 && auth_step_ < 4) return auth_continue(r);
  Outcome o = outcome_of(r, state_);
  // 535 and other 5xx: permanent for this relay (wrong credentials do not heal by retrying soon);
  // 454 and other 4xx: temporary.
  o.text = "authentication failed: " + o.text;
  fail_session(std::move(o));
}

void Engine::auth_continue(const Reply& r) {
  const auto& a = opt_.auth;
  int step = auth_step_++;
  std::string_view challenge = r.lines.empty() ? std::string_view{} : std::string_view(r.lines[0]);
  switch (auth_mech_) {
    case AuthMechanism::login:
      if (step == 0) return send_command(base64::encode(a.user), "<user>");
      if (step == 1) return send_command(base64::encode(a.secret), "<secret>");
      break;
    case AuthMechanism::cram_md5:
      if (step == 0) {
        auto decoded = base64::decode(challenge);
        if (!decoded) break;
        return send_command(auth::cram_md5_response(a.user, a.secret, *decoded), "<secret>");
      }
      break;
    case AuthMechanism::plain:
      if (step == 0) return send_command(auth::plain_response(a.user, a.secret), "<secret>");
      break;
    case AuthMechanism::xoauth2:
      // The server sent a JSON error as a challenge; an empty line makes it send the final 5xx.
      if (step == 0) return send_command("", "");
      break;
    default:
      break;
  }
  send_command("*");  // RFC 4954 §4: cancel an exchange we cannot continue
}

void Engine::become_ready() {
  enter(State::ready);
  if (!ready_announced_) {
    ready_announced_ = true;
    emit(Ready{});
  }
  if (quit_pending_) enter(State::quit);
}

// ---- transactions ----

// Every recipient starts queued and "not attempted"; precheck() decides which may be sent.
std::unique_ptr<Engine::Txn> Engine::make_txn(Transaction t) const {
  auto x = std::make_unique<Txn>();
  for (auto& a : t.recipients) x->results.push_back({a, local(Status::temporary, "4.3.0", "not attempted")});
  x->st.assign(x->results.size(), Rcpt::queued);
  x->t = std::move(t);
  return x;
}

void Engine::submit(Transaction t) {
  auto x = make_txn(std::move(t));
  if (can_submit_next()) return queue_next(std::move(x));
  if (!idle()) {
    for (auto& r : x->results) r.outcome.text = fmt::format("session not idle (state {})", to_string(state_));
    emit(TransactionDone{{std::move(x->results), {}}});
    return;
  }
  txn_ = std::move(x);
  precheck(*txn_);
  if (txn_->queue.empty()) return finish_transaction();
  start_batch();
}

bool Engine::can_submit_next() const {
  if (state_ != State::dot || !txn_ || next_ || !caps_.pipelining || quit_pending_) return false;
  const Txn& x = *txn_;
  return !x.empty_dot && x.queue.empty() && std::none_of(x.batch.begin(), x.batch.end(), [&](std::size_t i) {
    return x.st[i] == Rcpt::deferred;
  });
}

// The next transaction's first batch goes out now, behind the dot; on_dot() adopts it.
void Engine::queue_next(std::unique_ptr<Txn> x) {
  precheck(*x);
  if (!x->queue.empty()) {
    take_batch(*x);
    x->sent_ahead = true;
    send_mail(*x);
  }
  next_ = std::move(x);
}

// Refusals decided before anything is sent: SIZE, illegal lines, unsafe or non-ASCII addresses.
// The recipients left go into `queue`.
void Engine::precheck(Txn& x) {
  const Transaction& t = x.t;
  auto fail_all = [&](const Outcome& o) {
    for (std::size_t i = 0; i < x.st.size(); ++i)
      if (x.st[i] == Rcpt::queued) x.set(i, o);
  };
  // Lines over 998 octets are wrapped by the encoder: no refusal for them.
  x.body = decide_body(t.body_info && t.body_info->eight_bit, caps_.eight_bit_mime,
                       t.body_info ? t.body_info->mime : std::nullopt);
  // The session scans first when the facts are missing; an engine driven without them cannot
  // know whether the body may be converted.
  if (x.body.plan == BodyPlan::needs_facts)
    x.body = {BodyPlan::defer, "the server does not offer 8BITMIME and the message's header was not read"};
  // A temporary failure without a reply code: the daemon tries the next address (which may offer
  // 8BITMIME), then defers (RFC 3463 4.6.3: conversion required but not supported).
  if (x.body.plan == BodyPlan::defer) return fail_all(local(Status::temporary, "4.6.3", x.body.reason));
  std::uint64_t size = declared_size(t, x.body.plan);
  if (caps_.size_announced && caps_.size > 0 && size > caps_.size)
    return fail_all(local(Status::permanent, "5.3.4",
                          fmt::format("message size {} exceeds the server's limit of {}", size, caps_.size)));
  if (!address_safe(t.sender))
    return fail_all(local(Status::permanent, "5.1.7", "sender address contains forbidden characters"));
  // A non-ASCII domain goes out as its A-label, which every server understands; only a non-ASCII
  // local part needs SMTPUTF8 (RFC 6531 §3.2: without it the address cannot be delivered).
  x.wire_sender = idna::ascii_domain(t.sender);
  if (!address_safe(x.wire_sender))
    return fail_all(local(Status::permanent, "5.1.7", "sender address contains forbidden characters"));
  bool utf8 = non_ascii(x.wire_sender);
  if (utf8 && !caps_.smtputf8)
    return fail_all(local(Status::permanent, "5.6.7",
                          "sender address is not ASCII and the server does not offer SMTPUTF8"));
  x.wire.resize(x.st.size());
  for (std::size_t i = 0; i < x.st.size(); ++i) {
    const std::string& a = x.results[i].address;
    x.wire[i] = idna::ascii_domain(a);
    if (!address_safe(a) || !address_safe(x.wire[i]) || a.empty())
      x.set(i,
            local(Status::permanent, "5.1.3", "recipient address is empty or contains forbidden characters"));
    else if (non_ascii(x.wire[i]) && !caps_.smtputf8)
      x.set(i, local(Status::permanent, "5.6.7",
                     "recipient address is not ASCII and the server does not offer SMTPUTF8"));
    else if (non_ascii(x.wire[i]))
      utf8 = true;
  }
  x.utf8 = utf8;
  for (std::size_t i = 0; i < x.st.size(); ++i)
    if (x.st[i] == Rcpt::queued) x.queue.push_back(i);
}

void Engine::start_batch() {
  take_batch(*txn_);
  enter(State::mail);
}

void Engine::take_batch(Txn& x) {
  x.batch.clear();
  std::size_t limit = opt_.envelope_limit == 0 ? SIZE_MAX : opt_.envelope_limit;
  while (!x.queue.empty() && x.batch.size() < limit) {
    x.batch.push_back(x.queue.front());
    x.st[x.queue.front()] = Rcpt::pending;
    x.queue.pop_front();
  }
  x.next = 0;
  x.accepted = 0;
  x.mail_ok = false;
  x.pipelined = false;
  x.empty_dot = false;
  x.batch_ok = false;
  x.sent_ahead = false;
}

void Engine::on_mail(const Reply& r) {
  Txn& x = *txn_;
  if (!answers(r)) return fail_session(outcome_of(r, state_));  // e.g. 350: out of step
  Outcome o = outcome_of(r, state_);
  if (r.klass() == 2) {
    x.mail_ok = true;
  } else {
    // The sender was refused: that answers every recipient of this message, not only this batch.
    o.text = "sender refused: " + o.text;
    for (std::size_t i : x.batch) x.set(i, o);
    for (std::size_t i : x.queue) x.set(i, o);
    x.queue.clear();
    if (!x.pipelined) return enter(State::rset);
  }
  enter(State::rcpt);  // pipelined: the RCPT replies follow anyway and are read (and ignored)
}

void Engine::on_rcpt(const Reply& r) {
  Txn& x = *txn_;
  std::size_t i = x.batch[x.next];
  // e.g. 354 to RCPT: the server is out of step (or answers DATA early); matching it is a guess.
  if (!answers(r)) return fail_session(outcome_of(r, state_));
  Outcome o = outcome_of(r, state_);
  if (x.mail_ok) {
    if (r.klass() == 2) {
      x.st[i] = Rcpt::accepted;
      ++x.accepted;
    } else if (r.code == 452 || r.code == 552) {
      // Too many recipients (RFC 5321 §4.5.3.1.10: 552 here means the same): try again in the
      // next transaction if this one made progress (decided in finish_batch).
      x.st[i] = Rcpt::deferred;
      o.status = Status::temporary;
      x.results[i].outcome = o;
    } else {
      x.set(i, o);
    }
    emit(RecipientReplied{i, std::move(o)});
  }
  if (++x.next < x.batch.size()) return enter(State::rcpt);
  if (x.pipelined || (x.mail_ok && x.accepted > 0)) return enter(State::data);
  enter(State::rset);
}

void Engine::on_data(const Reply& r) {
  Txn& x = *txn_;
  if (r.code == 354) {
    if (x.mail_ok && x.accepted > 0) return enter(State::body);
    // RFC 2920 §3.1: DATA was accepted although no recipient was; end it with an empty message.
    x.empty_dot = true;
    out_ += ".\r\n";
    return enter(State::dot);
  }
  if (!answers(r, 0)) return fail_session(outcome_of(r, state_, 0));  // a 2xx to DATA: out of step
  Outcome o = outcome_of(r, state_);
  if (x.mail_ok && x.accepted > 0) {
    for (std::size_t i : x.batch)
      if (x.st[i] == Rcpt::accepted) x.set(i, o);
  }
  enter(State::rset);
}

void Engine::body_chunk(std::string_view chunk) {
  if (state_ != State::body) return;
  encoder_->feed(chunk, out_);
  ++epoch_;  // progress: the transport re-arms the block timer
}

void Engine::body_end() {
  if (state_ != State::body) return;
  encoder_->finish(out_);
  txn_->wrapped = encoder_->wrapped_lines();
  txn_->body_sent = true;
  encoder_.reset();
  enter(State::dot);
}

// What the body's way to this server changed, for the daemon's log: once per message.
std::vector<std::string> Engine::notes(const Txn& x) {
  std::vector<std::string> n;
  if (x.wrapped > 0)
    n.push_back(fmt::format("wrapped {} line{} over {} octets", x.wrapped, x.wrapped == 1 ? "" : "s",
                            BodyEncoder::kMaxLine));
  if (x.body.plan == BodyPlan::quoted_printable && x.body_sent)
    n.emplace_back("converted to quoted-printable (the server does not offer 8BITMIME)");
  return n;
}

void Engine::on_dot(const Reply& r) {
  Txn& x = *txn_;
  if (x.empty_dot) return enter(State::rset);
  // A 3xx after the dot: the server may or may not have taken the message (possible duplicate).
  if (!answers(r)) return fail_session(outcome_of(r, state_));
  Outcome o = outcome_of(r, state_);
  o.dsn_passed = caps_.dsn;
  for (std::size_t i : x.batch)
    if (x.st[i] == Rcpt::accepted) x.set(i, o);
  x.batch_ok = r.klass() == 2;
  if (next_) return adopt_next();
  finish_batch();
}

// The reply to the dot ended the server's transaction, whatever it said (RFC 5321 §4.1.1.4), so
// the commands already sent behind it start the next one; can_submit_next() made sure the
// finished transaction needs no further batch.
void Engine::adopt_next() {
  auto done = std::exchange(txn_, std::move(next_));
  emit(TransactionDone{{std::move(done->results), notes(*done)}});
  if (txn_->sent_ahead) return enter(State::mail);  // MAIL/RCPT/DATA are on the wire already
  finish_transaction();                             // every recipient was refused by precheck()
}

void Engine::on_rset(const Reply& r) {
  if (r.klass() != 2) {
    Outcome o = outcome_of(r, state_);
    o.status = Status::temporary;
    o.text = "RSET failed: " + o.text;
    return fail_session(std::move(o));
  }
  if (!txn_) return become_ready();
  // Recipients of a batch that ended before the dot: settle the deferred ones, then go on.
  settle_deferred();
  if (!txn_->queue.empty()) return start_batch();
  finish_transaction();
}

// Deferred (452/552) recipients go into the next transaction if this one delivered to someone;
// otherwise the server is not taking any more now and they stay temporary (no retry loop).
void Engine::settle_deferred() {
  Txn& x = *txn_;
  bool progress = x.accepted > 0 && x.batch_ok;
  std::vector<std::size_t> again;
  for (std::size_t i : x.batch) {
    if (x.st[i] != Rcpt::deferred) continue;
    if (progress) {
      again.push_back(i);
      x.st[i] = Rcpt::queued;
    } else {
      x.st[i] = Rcpt::final;  // its outcome (the temporary 452) is already recorded
    }
  }
  x.queue.insert(x.queue.begin(), again.begin(), again.end());
  x.batch.clear();
}

void Engine::finish_batch() {
  if (!txn_->batch_ok) return enter(State::rset);
  settle_deferred();
  if (!txn_->queue.empty()) return start_batch();
  finish_transaction();
}

void Engine::finish_transaction() {
  auto x = std::move(txn_);
  emit(TransactionDone{{std::move(x->results), notes(*x)}});
  if (state_ != State::ready)
    become_ready();
  else if (quit_pending_)
    enter(State::quit);
}

// ---- ending ----

void Engine::quit() {
  if (ended() || state_ == State::quit) return;
  quit_pending_ = true;
  if (state_ == State::ready) enter(State::quit);
  if (state_ == State::init) close_cleanly(local(Status::sent, "", "closed before start"));
}

// Every recipient without a final reply becomes temporary; accepted ones are flagged as possible
// duplicates when the dot was sent and its reply is what never came.
void Engine::fail_transaction(std::unique_ptr<Txn> x, const Outcome& reason, bool after_dot) {
  for (std::size_t i = 0; i < x->st.size(); ++i) {
    if (x->st[i] == Rcpt::final) continue;
    Outcome o = reason;
    o.status = Status::temporary;
    if (after_dot && x->st[i] == Rcpt::accepted) {
      o.possible_duplicate = true;
      o.text += " (after the final dot: possible duplicate)";
    }
    x->set(i, std::move(o));
  }
  emit(TransactionDone{{std::move(x->results), notes(*x)}});
}

void Engine::close_cleanly(Outcome reason) {
  reason.status = Status::sent;
  enter(State::closed);
  emit(SessionEnded{std::move(reason)});
}

void Engine::fail_session(Outcome reason) {
  // Whatever led here, a failed session delivered nothing more: it never reports success.
  if (reason.status == Status::sent) {
    reason.status = Status::temporary;
    reason.code = 0;
    reason.enhanced = "4.5.0";
  }
  if (txn_) {
    bool after_dot = state_ == State::dot && !txn_->empty_dot;
    fail_transaction(std::move(txn_), reason, after_dot);
  }
  if (next_) fail_transaction(std::move(next_), reason, false);  // its dot was never sent
  out_.clear();
  encoder_.reset();
  enter(State::failed);
  emit(SessionEnded{std::move(reason)});
}

}  // namespace spoold::smtp
