// smtp/server_engine.cpp — see server.h. Reading guide: the state table (name, whether the
// client's timer runs), enter() (the only place the state changes), process() (one command line
// at a time, only while no answer from the host is owed), then one handler per command, the DATA
// stream, the host's answers, and the ends of a session.
// Replies follow RFC 2034: every 2xx/4xx/5xx reply carries an enhanced code except the banner
// and the replies to HELO/EHLO; 3xx replies (334, 354) have none.
#include <fmt/format.h>

#include <algorithm>

#include "common/ascii.h"
#include "smtp/base64.h"
#include "smtp/reply.h"
#include "smtp/server.h"
#include "smtp/server_commands.h"
#include "smtp/types.h"

namespace spoold::smtp::server {

namespace {

struct StateRow {
  std::string_view name;
  State state;
  bool client_timer;  // the engine waits for the client (false: for the host, or nothing)
};

constexpr StateRow kStates[] = {
    {"init", State::init, false},
    {"connected", State::connected, true},
    {"ready", State::ready, true},
    {"mail", State::mail, true},
    {"rcpt", State::rcpt, true},
    {"rcpt-wait", State::rcpt_wait, false},
    {"auth", State::auth, true},
    {"auth-wait", State::auth_wait, false},
    {"data", State::data, true},
    {"data-discard", State::data_discard, true},
    {"stored-wait", State::stored_wait, false},
    {"tls-wait", State::tls_wait, true},  // the handshake must end within the timeout too
    {"closed", State::closed, false},
};

const StateRow& row(State s) {
  return kStates[static_cast<std::size_t>(s)];
}

std::string_view default_enhanced(int code) {
  switch (code / 100) {
    case 2:
      return "2.0.0";
    case 4:
      return "4.0.0";
    case 5:
      return "5.0.0";
    default:
      return "";
  }
}

// The host's enhanced code when it is "C.S.D" of the reply's class, else one of that class.
std::string enhanced_for(int code, std::string_view given) {
  bool ok =
      given.size() >= 5 && given.size() <= 9 && given[0] == static_cast<char>('0' + code / 100) &&
      given[1] == '.' && std::count(given.begin(), given.end(), '.') == 2 && given.back() != '.' &&
      given.find("..") == std::string_view::npos &&
      std::all_of(given.begin(), given.end(), [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
  return std::string(ok ? given : default_enhanced(code));
}

// "Username:" and "Password:" (RFC 4954 does not define LOGIN; these are what clients expect).
constexpr std::string_view kLoginUser = "VXNlcm5hbWU6";
constexpr std::string_view kLoginPassword = "UGFzc3dvcmQ6";

bool parse_size(std::string_view v, std::uint64_t& out) {
  if (v.empty() || v.size() > 20) return false;
  std::uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    auto d = static_cast<std::uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10) return false;
    n = n * 10 + d;
  }
  out = n;
  return true;
}

// RFC 3461 §4.1 NOTIFY: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY.
bool parse_notify(std::string_view v, Notify& n) {
  n = Notify{};
  n.given = true;
  std::size_t p = 0;
  int count = 0;
  while (p <= v.size()) {
    std::size_t e = v.find(',', p);
    if (e == std::string_view::npos) e = v.size();
    std::string_view w = v.substr(p, e - p);
    ++count;
    if (ascii_iequals(w, "NEVER"))
      n.never = true;
    else if (ascii_iequals(w, "SUCCESS"))
      n.success = true;
    else if (ascii_iequals(w, "FAILURE"))
      n.failure = true;
    else if (ascii_iequals(w, "DELAY"))
      n.delay = true;
    else
      return false;
    p = e + 1;
  }
  return !(n.never && count > 1);
}

}  // namespace

std::string_view to_string(State s) {
  return row(s).name;
}

std::string_view to_string(EndReason r) {
  switch (r) {
    case EndReason::quit:
      return "quit";
    case EndReason::timeout:
      return "timeout";
    case EndReason::too_many_errors:
      return "too many errors";
    case EndReason::client_closed:
      return "client closed";
    case EndReason::input_overflow:
      return "input overflow";
  }
  return "?";
}

std::string with_protocol(const Envelope& e) {
  if (!e.esmtp) return "SMTP";
  std::string p = e.params.smtputf8 ? "UTF8SMTP" : "ESMTP";
  if (e.tls) p += 'S';
  if (!e.auth_user.empty()) p += 'A';
  return p;
}

std::string received_field(const Envelope& e, const ReceivedInfo& info) {
  auto clean = [](std::string_view v) {
    std::string out = sanitize(v, 255);
    std::replace_if(
        out.begin(), out.end(), [](char c) { return c == '(' || c == ')' || c == ';'; }, '?');
    return out;
  };
  std::string f =
      fmt::format("Received: from {} ({} [{}])\r\n", e.helo.empty() ? "unknown" : clean(e.helo),
                  info.client_name.empty() ? "unknown" : clean(info.client_name), clean(info.client_ip));
  if (!info.tls.empty()) {
    // Our own text (TlsServer::received_text()), which has Postfix's "(256/256 bits)": balanced
    // parentheses are kept, anything else is cleaned like the rest.
    std::string t = sanitize(info.tls, 255);
    int depth = 0;
    for (char c : t) {
      depth += c == '(' ? 1 : c == ')' ? -1 : 0;
      if (depth < 0) break;
    }
    if (depth != 0 || t.find(';') != std::string::npos) t = clean(info.tls);
    f += fmt::format("\t(using {})\r\n", t);
  }
  f += fmt::format("\tby {} (spoold) with {} id {}", clean(info.by), with_protocol(e), clean(info.queue_id));
  if (e.recipients.size() == 1)
    f += fmt::format("\r\n\tfor <{}>; {}\r\n", clean(e.recipients[0].address), clean(info.date));
  else
    f += fmt::format(";\r\n\t{}\r\n", clean(info.date));
  return f;
}

ServerEngine::ServerEngine(ServerOptions options, ServerHooks hooks)
    : opt_(std::move(options)), hooks_(std::move(hooks)) {
  opt_.hostname = line_safe_name(std::move(opt_.hostname));  // from configuration
  if (opt_.max_line < 512) opt_.max_line = 512;              // RFC 5321 §4.5.3.1.4: never less
  encrypted_ = opt_.implicit_tls;
}
ServerEngine::~ServerEngine() = default;

std::optional<milliseconds> ServerEngine::timeout() const {
  if (!row(state_).client_timer) return std::nullopt;
  return opt_.timeout;
}

bool ServerEngine::waiting_for_host() const {
  switch (state_) {
    case State::init:
    case State::rcpt_wait:
    case State::auth_wait:
    case State::stored_wait:
    case State::tls_wait:
      return true;
    default:
      return false;
  }
}

bool ServerEngine::input_paused() const {
  return output_held_ || state_ == State::rcpt_wait || state_ == State::auth_wait ||
         state_ == State::stored_wait || state_ == State::closed;
}

std::string ServerEngine::take_output() {
  return std::exchange(out_, {});
}
std::vector<Event> ServerEngine::take_events() {
  return std::exchange(events_, {});
}

void ServerEngine::enter(State s) {
  State from = state_;
  state_ = s;
  ++epoch_;
  since_arm_ = 0;
  if (hooks_.on_transition) hooks_.on_transition(from, s);
}

// ---- replies ----

void ServerEngine::reply(int code, std::string_view enhanced, std::string_view text) {
  std::string line = std::to_string(code);
  line += ' ';
  if (!enhanced.empty()) {
    line += enhanced;
    if (!text.empty()) line += ' ';
  }
  line += sanitize(text, 400);  // no CR, LF or controls can come from the host or the client
  if (hooks_.on_reply) hooks_.on_reply(line);
  out_ += line;
  out_ += "\r\n";
}

void ServerEngine::reply_lines(int code, const std::vector<std::string>& lines) {
  std::string logged;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string line = fmt::format("{}{}{}", code, i + 1 < lines.size() ? '-' : ' ', sanitize(lines[i], 400));
    out_ += line;
    out_ += "\r\n";
    if (!logged.empty()) logged += '\n';
    logged += line;
  }
  if (hooks_.on_reply) hooks_.on_reply(logged);
}

void ServerEngine::error(int code, std::string_view enhanced, std::string_view text) {
  reply(code, enhanced, text);
  count_error();
}

void ServerEngine::count_error() {
  if (opt_.max_errors > 0 && ++errors_ >= opt_.max_errors) {
    reply(421, "4.7.0", opt_.hostname + " Error: too many errors");
    end_session(EndReason::too_many_errors, "too many errors");
  }
}

// A client may idle with NOOPs (or RSET, VRFY, HELP) for a while, as Postfix allows: each one
// re-arms the timeout, so without a budget it could hold its session for ever.
void ServerEngine::junk() {
  if (!ended() && opt_.max_junk > 0 && ++junk_ > opt_.max_junk) count_error();
}

// ---- transport → engine ----

void ServerEngine::start() {
  if (state_ != State::init) return;
  reply(220, "", opt_.hostname + " ESMTP spoold");
  enter(State::connected);
  process();  // a client that spoke before the banner: its commands are read now, in order
}

void ServerEngine::feed(std::string_view bytes) {
  if (ended() || bytes.empty()) return;
  if (state_ == State::tls_wait) {  // plaintext where only the TLS handshake may follow
    discarded_ += bytes.size();
    return;
  }
  if (buffered() + bytes.size() > kMaxBuffered && (waiting_for_host() || output_held_)) {
    in_.clear();
    pos_ = 0;
    reply(421, "4.7.0", opt_.hostname + " Error: too much pipelined input");
    end_session(EndReason::input_overflow, "too much pipelined input");
    return;
  }
  in_.append(bytes);
  process();
}

void ServerEngine::resume() {
  if (!output_held_ || out_.size() >= kMaxOutput) return;
  output_held_ = false;
  process();
}

void ServerEngine::tls_started() {
  if (state_ != State::tls_wait) return;
  // RFC 3207 §4.2 and §5 (CVE-2011-0411): whatever came before the handshake is discarded, and
  // everything learnt from the client before it is forgotten: back to the state before EHLO.
  std::size_t discarded = std::exchange(discarded_, 0) + buffered();
  in_.clear();
  pos_ = 0;
  skipping_ = false;
  output_held_ = false;
  encrypted_ = true;
  reset_transaction();
  envelope_.helo.clear();
  envelope_.esmtp = false;
  auth_user_.clear();
  if (discarded > 0) emit(InputDiscarded{discarded});
  enter(State::connected);
}

void ServerEngine::timed_out() {
  if (!timeout()) return;
  if (state_ == State::data) abort_message("timeout in DATA");
  // In the handshake nothing plaintext may be written; elsewhere the client is told why.
  if (state_ != State::tls_wait) reply(421, "4.4.2", opt_.hostname + " Error: timeout exceeded");
  end_session(EndReason::timeout, fmt::format("timeout in state {}", to_string(state_)));
}

void ServerEngine::closed() {
  if (ended()) return;
  // After MessageEnd the message is the host's: it finishes storing it (the client, which saw no
  // reply, may send it again: at-least-once).
  if (state_ == State::data) abort_message("client closed the connection in DATA");
  State was = state_;
  out_.clear();
  end_session(EndReason::client_closed,
              fmt::format("client closed the connection in state {}", to_string(was)));
}

void ServerEngine::end_session(EndReason why, std::string text) {
  enter(State::closed);
  emit(SessionEnded{why, std::move(text)});
}

// ---- reading commands ----

void ServerEngine::process() {
  while (!ended() && !waiting_for_host()) {
    if (state_ == State::data || state_ == State::data_discard) {
      if (!on_data()) break;
      continue;
    }
    if (out_.size() >= kMaxOutput) {
      output_held_ = true;
      break;
    }
    std::string_view avail(in_.data() + pos_, in_.size() - pos_);
    std::size_t lf = avail.find('\n');
    if (skipping_) {  // the rest of an overlong line: dropped unread, then answered
      if (lf == std::string_view::npos) {
        pos_ = in_.size();
        break;
      }
      pos_ += lf + 1;
      skipping_ = false;
      line_too_long();
      continue;
    }
    if (lf == std::string_view::npos) {
      if (avail.size() >= opt_.max_line) {  // no LF within the limit: drop it, answer at its end
        skipping_ = true;
        pos_ = in_.size();
      }
      break;
    }
    pos_ += lf + 1;
    if (lf + 1 > opt_.max_line) {
      line_too_long();
      continue;
    }
    // Copied: a handler may end the session, and the buffer with it.
    std::string line(avail.substr(0, lf));
    ++epoch_;  // a whole command came: the timer starts again for the next one
    on_line(line);
  }
  if (ended()) {
    in_.clear();
    pos_ = 0;
  } else if (pos_ > 0) {
    in_.erase(0, pos_);
    pos_ = 0;
  }
}

// RFC 5321 §4.5.3.1.4 allows 512 octets; max_line gives slack. The code is RFC 4954's for an
// overlong AUTH line; RFC 3463 has none for command lines, so it serves for both. An AUTH exchange
// ends with it.
void ServerEngine::line_too_long() {
  if (state_ == State::auth) enter(State::ready);
  error(500, "5.5.6", "Error: line too long");
}

void ServerEngine::on_line(std::string_view raw) {
  if (raw.empty() || raw.back() != '\r') {
    if (hooks_.on_command) hooks_.on_command(state_ == State::auth ? "<secret>" : sanitize(raw, 100));
    if (state_ == State::auth) enter(State::ready);
    return error(500, "5.5.2", "Error: bare <LF> received");
  }
  std::string_view line = raw.substr(0, raw.size() - 1);
  if (line.find('\r') != std::string_view::npos || line.find('\0') != std::string_view::npos) {
    if (hooks_.on_command) hooks_.on_command(state_ == State::auth ? "<secret>" : sanitize(line, 100));
    if (state_ == State::auth) enter(State::ready);
    return error(
        500, "5.5.2",
        line.find('\0') != std::string_view::npos ? "Error: NUL in command" : "Error: bare <CR> received");
  }
  if (state_ == State::auth) return on_auth_line(line);
  on_command(line);
}

void ServerEngine::on_command(std::string_view line) {
  CommandLine c = split_command(line);
  if (hooks_.on_command) {
    if (c.verb == "AUTH" && c.arg.find(' ') != std::string_view::npos)
      hooks_.on_command(fmt::format("AUTH {} <secret>", sanitize(c.arg.substr(0, c.arg.find(' ')), 20)));
    else
      hooks_.on_command(sanitize(line, 600));
  }
  const std::string& v = c.verb;
  if (v == "EHLO") return cmd_ehlo(c.arg, true);
  if (v == "HELO") return cmd_ehlo(c.arg, false);
  if (v == "MAIL") return cmd_mail(c.arg);
  if (v == "RCPT") return cmd_rcpt(c.arg);
  if (v == "DATA") return cmd_data(c.arg);
  if (v == "RSET") {
    // A malformed RSET is one error, not also a junk command.
    if (!c.arg.empty()) return error(501, "5.5.4", "Syntax: RSET");
    cmd_rset();
    return junk();
  }
  if (v == "NOOP") {
    reply(250, "2.0.0", "Ok");
    return junk();
  }
  if (v == "QUIT") {
    if (!c.arg.empty()) return error(501, "5.5.4", "Syntax: QUIT");
    reset_transaction();
    reply(221, "2.0.0", "Bye");
    return end_session(EndReason::quit, "QUIT");
  }
  if (v == "VRFY") {
    if (c.arg.empty()) return error(501, "5.5.4", "Syntax: VRFY address");
    // RFC 5321 §3.5.3: neither confirm nor deny.
    reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
    return junk();
  }
  if (v == "HELP") {
    reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS AUTH");
    return junk();
  }
  if (v == "STARTTLS") return cmd_starttls(c.arg);
  if (v == "AUTH") return cmd_auth(c.arg);
  // Known but not offered. CHUNKING is not announced, so a client must not send BDAT (RFC 3030
  // §2); one that does has its chunk read as command lines, refused one by one until 421.
  if (v == "BDAT" || v == "EXPN" || v == "ETRN" || v == "TURN" || v == "SEND" || v == "SOML" || v == "SAML")
    return error(502, "5.5.1", "Error: command not implemented");
  error(500, "5.5.2", "Error: command not recognized");
}

void ServerEngine::cmd_ehlo(std::string_view arg, bool esmtp) {
  std::string_view name = arg.substr(0, arg.find(' '));
  if (name.empty() || name.size() > 255)
    return error(501, "5.5.4", esmtp ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
  // RFC 5321 §4.1.4: EHLO/HELO in a transaction ends it, like RSET.
  reset_transaction();
  envelope_.helo = std::string(name);
  envelope_.esmtp = esmtp;
  if (!esmtp) {
    reply(250, "", opt_.hostname);
  } else {
    std::vector<std::string> lines{opt_.hostname, "PIPELINING"};
    lines.push_back(opt_.max_message_size > 0 ? fmt::format("SIZE {}", opt_.max_message_size) : "SIZE");
    lines.insert(lines.end(), {"8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN"});
    if (opt_.starttls && !encrypted_) lines.emplace_back("STARTTLS");
    if (auth_allowed() && auth_user_.empty()) lines.emplace_back("AUTH PLAIN LOGIN");
    reply_lines(250, lines);
  }
  enter(State::ready);
}

namespace {

struct PathAndParams {
  PathArg path;
  std::vector<EsmtpParam> params;
};
struct ParseError {
  int code;
  const char* enhanced;
  std::string text;
};

// MAIL's "FROM:" / RCPT's "TO:" argument: the path and its parameters, each key at most once.
std::variant<PathAndParams, ParseError> path_and_params(std::string_view arg, std::string_view keyword,
                                                        std::string_view usage, const char* bad_path_code,
                                                        std::string_view bad_path, bool esmtp) {
  if (!ascii_istarts_with(arg, keyword)) return ParseError{501, "5.5.4", std::string(usage)};
  auto path = parse_path(arg.substr(keyword.size()));
  if (!path) return ParseError{501, bad_path_code, std::string(bad_path)};
  auto params = parse_params(path->rest);
  if (!params) return ParseError{501, "5.5.4", "Syntax error in parameters"};
  if (!esmtp && !params->empty()) return ParseError{555, "5.5.4", "Error: parameters require EHLO"};
  for (auto it = params->begin(); it != params->end(); ++it)
    if (std::find_if(params->begin(), it, [&](const EsmtpParam& q) { return q.key == it->key; }) != it)
      return ParseError{501, "5.5.4", "Error: duplicate parameter " + it->key};
  return PathAndParams{std::move(*path), std::move(*params)};
}

}  // namespace

void ServerEngine::cmd_mail(std::string_view arg) {
  if (!greeted()) return error(503, "5.5.1", "Error: send HELO/EHLO first");
  if (have_mail_) return error(503, "5.5.1", "Error: nested MAIL command");
  auto parsed = path_and_params(arg, "FROM:", "Syntax: MAIL FROM:<address>", "5.1.7",
                                "Bad sender address syntax", envelope_.esmtp);
  if (const auto* e = std::get_if<ParseError>(&parsed)) return error(e->code, e->enhanced, e->text);
  const auto& [path, params] = std::get<PathAndParams>(parsed);
  MailParams mp;
  for (const EsmtpParam& p : params) {
    if (p.key == "SIZE") {
      std::uint64_t n = 0;
      if (!p.has_value || !parse_size(p.value, n)) return error(501, "5.5.4", "Bad SIZE parameter");
      mp.size = n;
    } else if (p.key == "BODY") {
      if (ascii_iequals(p.value, "7BIT"))
        mp.body = Body::seven_bit;
      else if (ascii_iequals(p.value, "8BITMIME"))
        mp.body = Body::eight_bit_mime;
      else
        return error(555, "5.5.4", "Unsupported BODY parameter");
    } else if (p.key == "SMTPUTF8") {
      if (p.has_value) return error(501, "5.5.4", "Bad SMTPUTF8 parameter");
      mp.smtputf8 = true;
    } else if (p.key == "RET") {
      if (ascii_iequals(p.value, "FULL"))
        mp.ret = Ret::full;
      else if (ascii_iequals(p.value, "HDRS"))
        mp.ret = Ret::hdrs;
      else
        return error(501, "5.5.4", "Bad RET parameter");
    } else if (p.key == "ENVID") {
      auto id = xtext_decode(p.value);  // RFC 3461 §4.4: at most 100 characters, printable ASCII
      if (!p.has_value || !id || id->empty() || id->size() > 100 ||
          std::any_of(id->begin(), id->end(), [](char ch) { return ch < 0x20 || ch > 0x7e; }))
        return error(501, "5.5.4", "Bad ENVID parameter");
      mp.envid = std::move(*id);
    } else if (p.key == "AUTH") {
      // RFC 4954 §5: the identity a relaying client claims; accepted and not trusted.
    } else {
      return error(555, "5.5.4", "Unsupported parameter " + sanitize(p.key, 40));
    }
  }
  const std::string& a = path.address;
  if (!is_ascii(a) && !mp.smtputf8)
    return error(553, "5.6.7", "Error: non-ASCII sender address needs SMTPUTF8");
  if (!a.empty() && !valid_mailbox(a, mp.smtputf8)) return error(501, "5.1.7", "Bad sender address syntax");
  if (opt_.max_message_size > 0 && mp.size && *mp.size > opt_.max_message_size)
    return reply(552, "5.3.4", "Error: message size exceeds fixed limit");  // not a protocol error
  envelope_.sender = a;
  envelope_.params = std::move(mp);
  envelope_.tls = encrypted_;
  envelope_.auth_user = auth_user_;
  have_mail_ = true;
  reply(250, "2.1.0", "Ok");
  enter(State::mail);
}

void ServerEngine::cmd_rcpt(std::string_view arg) {
  if (!have_mail_) return error(503, "5.5.1", "Error: need MAIL command");
  auto parsed = path_and_params(arg, "TO:", "Syntax: RCPT TO:<address>", "5.1.3",
                                "Bad recipient address syntax", envelope_.esmtp);
  if (const auto* e = std::get_if<ParseError>(&parsed)) return error(e->code, e->enhanced, e->text);
  const auto& [path, params] = std::get<PathAndParams>(parsed);
  Recipient r;
  for (const EsmtpParam& p : params) {
    if (p.key == "NOTIFY") {
      if (!p.has_value || !parse_notify(p.value, r.params.notify))
        return error(501, "5.5.4", "Bad NOTIFY parameter");
    } else if (p.key == "ORCPT") {
      // RFC 3461 §4.2: addr-type ";" xtext
      std::size_t semi = p.value.find(';');
      std::optional<std::string> orcpt;
      if (semi != std::string_view::npos && semi > 0) orcpt = xtext_decode(p.value.substr(semi + 1));
      // addr-type is an atom; the spool keeps letters, digits and '-' (rfc822, utf-8, x400), and
      // no CR, LF or NUL in the address, so what is accepted here can always be stored.
      std::string_view type = p.value.substr(0, semi);
      bool type_ok = std::all_of(type.begin(), type.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
      });
      if (!orcpt || !type_ok || orcpt->empty() || p.value.size() > 500 ||  // RFC 3461 §4.2
          orcpt->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
        return error(501, "5.5.4", "Bad ORCPT parameter");
      r.params.orcpt_type = std::string(p.value.substr(0, semi));
      r.params.orcpt = std::move(*orcpt);
    } else {
      return error(555, "5.5.4", "Unsupported parameter " + sanitize(p.key, 40));
    }
  }
  const std::string& a = path.address;
  bool utf8 = envelope_.params.smtputf8;
  if (ascii_iequals(a, "postmaster")) {  // RFC 5321 §4.1.1.3: <Postmaster> without a domain
    r.address = "postmaster";
  } else {
    if (a.empty()) return error(501, "5.1.3", "Bad recipient address syntax");
    if (!is_ascii(a) && !utf8)
      return error(553, "5.6.7", "Error: non-ASCII recipient address needs SMTPUTF8");
    if (!valid_mailbox(a, utf8)) return error(501, "5.1.3", "Bad recipient address syntax");
    r.address = a;
  }
  // RFC 5321 §4.5.3.1.10: 452 (not 552) so the client sends the rest in another transaction.
  if (envelope_.recipients.size() >= opt_.max_recipients)
    return reply(452, "4.5.3", "Error: too many recipients");
  pending_rcpt_ = std::move(r);
  emit(RcptRequest{pending_rcpt_.address, pending_rcpt_.params, &envelope_});
  enter(State::rcpt_wait);
}

void ServerEngine::cmd_data(std::string_view arg) {
  if (!arg.empty()) return error(501, "5.5.4", "Syntax: DATA");
  if (!have_mail_) return error(503, "5.5.1", "Error: need RCPT command");
  // RFC 2920 §3.1: the pipelined DATA of a transaction whose recipients were all refused.
  if (envelope_.recipients.empty()) return error(554, "5.5.1", "Error: no valid recipients");
  reply(354, "", "End data with <CR><LF>.<CR><LF>");
  reader_.reset();
  chunk_.clear();
  emit(MessageBegin{envelope_});
  enter(State::data);
}

void ServerEngine::cmd_rset() {
  reset_transaction();
  reply(250, "2.0.0", "Ok");
  enter(greeted() ? State::ready : State::connected);
}

void ServerEngine::cmd_starttls(std::string_view arg) {
  if (encrypted_) return error(554, "5.5.1", "Error: TLS already active");
  if (!opt_.starttls) return error(502, "5.5.1", "Error: command not implemented");
  if (!arg.empty()) return error(501, "5.5.4", "Syntax: STARTTLS");
  if (have_mail_) return error(503, "5.5.1", "Error: MAIL transaction in progress");
  reply(220, "2.0.0", "Ready to start TLS");
  // RFC 3207 §5: bytes pipelined behind STARTTLS came before TLS; they are never commands.
  discarded_ = buffered();
  pos_ = in_.size();
  emit(StartTls{});
  enter(State::tls_wait);
}

// ---- AUTH (RFC 4954; PLAIN RFC 4616; LOGIN as clients speak it) ----

bool ServerEngine::auth_allowed() const {
  return opt_.auth && (encrypted_ || opt_.loopback);
}

void ServerEngine::cmd_auth(std::string_view arg) {
  if (!opt_.auth) return error(502, "5.5.1", "Error: authentication not enabled");
  if (!greeted() || !envelope_.esmtp) return error(503, "5.5.1", "Error: send EHLO first");
  if (!auth_user_.empty()) return error(503, "5.5.1", "Error: already authenticated");
  if (have_mail_) return error(503, "5.5.1", "Error: MAIL transaction in progress");
  if (!auth_allowed())  // RFC 4954 §6: the password would cross the network in clear
    return error(538, "5.7.11", "Encryption required for requested authentication mechanism");
  std::size_t sp = arg.find(' ');
  std::string mech = ascii_upper(arg.substr(0, sp));
  std::string_view initial = sp == std::string_view::npos ? std::string_view{} : arg.substr(sp + 1);
  if (mech.empty()) return error(501, "5.5.4", "Syntax: AUTH mechanism");
  if (mech != "PLAIN" && mech != "LOGIN") return error(504, "5.5.4", "Unrecognized authentication type");
  auth_mech_ = mech;
  auth_step_ = 0;
  auth_given_user_.clear();
  if (initial.empty()) {
    reply(334, "", mech == "PLAIN" ? "" : kLoginUser);
    return enter(State::auth);
  }
  enter(State::auth);
  // RFC 4954 §4: "=" is an empty initial response. Traced already as "AUTH MECH <secret>".
  on_auth_line(initial == "=" ? std::string_view{} : initial, true);
}

void ServerEngine::on_auth_line(std::string_view line, bool traced) {
  if (hooks_.on_command && !traced) hooks_.on_command("<secret>");
  if (line == "*") {  // RFC 4954 §4: the client cancels
    enter(State::ready);
    return reply(501, "5.7.0", "Authentication cancelled");
  }
  auto decoded = base64::decode(line);
  if (!decoded) {
    enter(State::ready);
    return error(501, "5.5.2", "Error: invalid base64 data");
  }
  if (auth_mech_ == "LOGIN" && auth_step_ == 0) {
    auth_given_user_ = std::move(*decoded);
    auth_step_ = 1;
    reply(334, "", kLoginPassword);
    return enter(State::auth);  // the timer restarts for the next line
  }
  AuthRequest req;
  req.mechanism = auth_mech_;
  if (auth_mech_ == "LOGIN") {
    req.user = std::move(auth_given_user_);
    req.password = std::move(*decoded);
  } else {
    // authzid NUL authcid NUL passwd
    std::string_view d = *decoded;
    std::size_t a = d.find('\0');
    std::size_t b = a == std::string_view::npos ? a : d.find('\0', a + 1);
    if (b == std::string_view::npos || d.find('\0', b + 1) != std::string_view::npos || b == a + 1) {
      enter(State::ready);
      return error(501, "5.5.2", "Error: invalid PLAIN data");
    }
    req.authzid = std::string(d.substr(0, a));
    req.user = std::string(d.substr(a + 1, b - a - 1));
    req.password = std::string(d.substr(b + 1));
  }
  auth_given_user_.clear();
  emit(std::move(req));
  enter(State::auth_wait);
}

void ServerEngine::auth_verdict(bool ok, std::string user) {
  if (state_ != State::auth_wait) return;
  enter(State::ready);
  if (ok) {
    auth_user_ = user.empty() ? std::string("?") : std::move(user);
    reply(235, "2.7.0", "Authentication successful");
  } else {
    error(535, "5.7.8", "Error: authentication failed");  // counted: guessing passwords ends here
  }
  process();
}

// ---- recipients ----

void ServerEngine::rcpt_verdict(const Verdict& v) {
  if (state_ != State::rcpt_wait) return;
  int code = v.code;
  std::string enhanced = v.enhanced;
  std::string text = v.text;
  bool accepted = code == 250 || code == 251 || code == 252;
  if (!accepted && (code < 400 || code > 599)) {  // not an answer RCPT can have
    code = 451;
    enhanced = "4.3.0";
    text = "Error: internal error";
  }
  enhanced = enhanced.empty() && accepted ? std::string("2.1.5") : enhanced_for(code, enhanced);
  if (text.empty()) text = accepted ? "Ok" : "Error";
  reply(code, enhanced, text);
  if (accepted) envelope_.recipients.push_back(std::move(pending_rcpt_));
  pending_rcpt_ = Recipient{};
  enter(envelope_.recipients.empty() ? State::mail : State::rcpt);
  process();
}

// ---- DATA ----

// Returns true when the state changed (the data ended) and process() should go on.
bool ServerEngine::on_data() {
  while (pos_ < in_.size()) {
    // One input byte gives at most three output bytes (a held "." and a bare LF), so with half a
    // chunk of room and a sixth of a chunk of input no MessageData exceeds kDataChunk.
    if (chunk_.size() >= kDataChunk / 2) flush_data();
    std::size_t n = std::min(in_.size() - pos_, kDataChunk / 6);
    std::size_t used = reader_.feed(std::string_view(in_.data() + pos_, n), chunk_);
    pos_ += used;
    since_arm_ += used;
    if (state_ == State::data && opt_.max_message_size > 0 && reader_.size() > opt_.max_message_size) {
      // RFC 1870 §6: read the rest, then 552; the host drops what it has now.
      abort_message("message exceeds the size limit");
      enter(State::data_discard);
    }
    if (state_ == State::data_discard) chunk_.clear();
    if (reader_.done()) {
      end_data();
      return true;
    }
  }
  flush_data();
  if (since_arm_ >= kDataProgress) {  // progress: the transport re-arms the timer
    ++epoch_;
    since_arm_ = 0;
  }
  return false;
}

void ServerEngine::flush_data() {
  if (chunk_.empty()) return;
  emit(MessageData{std::exchange(chunk_, {})});
}

void ServerEngine::end_data() {
  if (state_ == State::data_discard) {
    reset_transaction();
    enter(State::ready);
    return reply(552, "5.3.4", "Error: message file too big");
  }
  flush_data();
  emit(MessageEnd{reader_.size(), reader_.bare_lf()});
  enter(State::stored_wait);
}

void ServerEngine::abort_message(std::string reason) {
  chunk_.clear();
  emit(MessageAborted{std::move(reason)});
}

void ServerEngine::message_stored(bool ok, std::string_view queue_id_or_reason) {
  if (state_ != State::stored_wait) return;
  reset_transaction();
  enter(State::ready);
  if (ok) junk_ = 0;  // a client that sends mail is not idling
  if (ok)
    reply(250, "2.0.0", fmt::format("Ok: queued as {}", queue_id_or_reason));
  else
    reply(451, "4.3.0",
          queue_id_or_reason.empty() ? std::string("Error: local error")
                                     : fmt::format("Error: {}", queue_id_or_reason));
  process();
}

void ServerEngine::message_refused(const Verdict& v) {
  if (state_ != State::stored_wait) return;
  int code = v.code;
  std::string enhanced = v.enhanced;
  if (code < 400 || code > 599) {  // a refusal must be one; never a 250 from here
    code = 451;
    enhanced = "4.3.0";
  }
  enhanced = enhanced_for(code, enhanced);
  reset_transaction();
  enter(State::ready);
  reply(code, enhanced, v.text.empty() ? std::string("Error: message refused") : v.text);
  process();
}

void ServerEngine::reset_transaction() {
  envelope_.sender.clear();
  envelope_.params = MailParams{};
  envelope_.recipients.clear();
  envelope_.tls = false;
  envelope_.auth_user.clear();
  have_mail_ = false;
}

}  // namespace spoold::smtp::server
