// ctl/smtp_stdio.cpp — `sendmail -bs`: the listener's SMTP server engine (smtp/server.h) spoken on
// stdin/stdout, as the calling user. It is what the sendmail transports of PHP frameworks use
// (Symfony Mailer, Drupal): each message becomes an envelope-first drop in incoming/ named with a
// queue id of this spool (spool::new_queue_id), so "250 2.0.0 Ok: queued as ID" names the id the
// daemon keeps at pickup (Spool::reusable_id) and logs.
// Rules: nothing on stderr while all is well (Symfony fails a transport whose stderr speaks at
// start); 250 after the final dot only once the drop is durable (tmp/ → fsync → rename into
// incoming/ → fsync(dir), TempFile::commit as sendmail's write_drop) and parses as pickup will
// parse it; the spool owner's identity only around creating, renaming and removing spool files,
// never while reading stdin; a failed write to stdout ends the run with EX_IOERR.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <variant>

#include <fmt/format.h>

#include "common/ascii.h"
#include "common/mailbox.h"
#include "control/spool_options.h"
#include "ctl/app.h"
#include "ctl/privileges.h"
#include "ctl/submit.h"
#include "smtp/server.h"
#include "spool/spool.h"

namespace spoold::ctl {
namespace {

namespace srv = smtp::server;
using Clock = std::chrono::steady_clock;

constexpr int kExIoErr = 74;     // sysexits.h EX_IOERR: stdout would not take a reply
constexpr int kExProtocol = 76;  // EX_PROTOCOL: the client broke the session (errors, overflow)
constexpr std::size_t kReadChunk = 64 * 1024;

// Printable ASCII without the characters that would end a Received: comment or clause.
std::string clean(std::string_view v) {
  std::string out;
  for (char c : v.substr(0, 255)) {
    auto u = static_cast<unsigned char>(c);
    bool bad = u <= 0x20 || u >= 0x7F || c == '(' || c == ')' || c == ';' || c == '\\';
    out += bad ? '?' : c;
  }
  return out.empty() ? "unknown" : out;
}

std::string rfc5322_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

// Writes all of `bytes` to fd (blocking, or waiting for POLLOUT on a non-blocking one).
bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR) return false;
      continue;
    }
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

class StdioSession {
 public:
  StdioSession(const config::Config& cfg, LocalSubmitter who, int in_fd, int out_fd)
      : cfg_(cfg),
        who_(std::move(who)),
        spool_opts_(control::spool_options(cfg)),
        engine_(options_of(cfg)),
        in_(in_fd),
        out_(out_fd) {}

  ~StdioSession() { discard(); }

  int run() {
    engine_.start();
    std::uint64_t armed = ~0ull;
    Clock::time_point deadline{};
    auto buf = std::make_unique_for_overwrite<char[]>(kReadChunk);
    for (;;) {
      pump();
      if (!write_all(out_, engine_.take_output())) return kExIoErr;
      if (engine_.ended()) break;
      auto t = engine_.timeout();
      int wait_ms = -1;
      if (t) {
        if (engine_.timer_epoch() != armed) {
          armed = engine_.timer_epoch();
          deadline = Clock::now() + *t;
        }
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
        wait_ms = static_cast<int>(std::clamp<long long>(left, 0, 24LL * 3600 * 1000));
      } else {
        armed = ~0ull;
      }
      pollfd p{in_, POLLIN, 0};
      int n = ::poll(&p, 1, wait_ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        close_input();
        continue;
      }
      if (n == 0) {
        if (t && Clock::now() >= deadline) engine_.timed_out();
        continue;
      }
      ssize_t got = ::read(in_, buf.get(), kReadChunk);
      if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (got <= 0)
        close_input();
      else
        engine_.feed(std::string_view(buf.get(), static_cast<std::size_t>(got)));
    }
    switch (end_.value_or(srv::EndReason::quit)) {
      case srv::EndReason::quit:
        return 0;
      case srv::EndReason::client_closed:  // EOF: fine between transactions, a loss within one
        return open_transaction_ ? kExTempFail : 0;
      case srv::EndReason::timeout:
        return kExTempFail;
      case srv::EndReason::too_many_errors:
      case srv::EndReason::input_overflow:
        return kExProtocol;
    }
    return 0;
  }

 private:
  static srv::ServerOptions options_of(const config::Config& cfg) {
    srv::ServerOptions o;
    o.hostname = cfg.hostname;
    o.loopback = true;  // the caller is on this host (AUTH is not offered anyway)
    o.max_message_size = cfg.queue.max_message_size;
    return o;
  }

  void close_input() {
    srv::State s = engine_.state();
    open_transaction_ = s != srv::State::connected && s != srv::State::ready && s != srv::State::init;
    engine_.closed();
  }

  // Every handler answers at once; an answer may release pipelined commands and so new events.
  void pump() {
    for (int round = 0; round < 1'000'000; ++round) {
      auto events = engine_.take_events();
      if (events.empty()) return;
      for (auto& e : events) handle(e);
    }
  }

  void handle(srv::Event& e) {
    if (auto* r = std::get_if<srv::RcptRequest>(&e)) return on_rcpt(*r);
    if (auto* b = std::get_if<srv::MessageBegin>(&e)) return on_begin(*b);
    if (auto* d = std::get_if<srv::MessageData>(&e)) return append(d->bytes);
    if (std::get_if<srv::MessageEnd>(&e)) return on_end();
    if (std::get_if<srv::MessageAborted>(&e)) return discard();
    if (std::get_if<srv::AuthRequest>(&e)) return engine_.auth_verdict(false, "");  // not offered
    if (auto* s = std::get_if<srv::SessionEnded>(&e)) {
      end_ = s->reason;
      discard();
    }
  }

  // A local user may send to anyone (no relay check, as with sendmail's command line). A UTF-8
  // address has already needed SMTPUTF8 on MAIL (the engine checks), and the spool keeps it.
  void on_rcpt(const srv::RcptRequest&) { engine_.rcpt_verdict({250, "2.1.5", "Ok"}); }

  std::string spool_address(std::string_view address) const {
    if (ascii_iequals(address, "postmaster")) return "postmaster@" + cfg_.hostname;
    return std::string(address);
  }

  // RFC 5321 §4.4 for a client that is a local process, not a TCP peer (Postfix's pickup writes
  // "by HOST (Postfix, from userid N)"): no address to name, the caller's login and uid instead.
  std::string received(const srv::Envelope& e) const {
    std::string f = fmt::format(
        "Received: from {} ({}@localhost)\r\n\tby {} (spoold, from userid {}) with {} id {}", clean(e.helo),
        clean(who_.user), clean(cfg_.hostname), who_.uid, srv::with_protocol(e), id_);
    if (e.recipients.size() == 1)
      f += fmt::format("\r\n\tfor <{}>; {}\r\n", clean(e.recipients[0].address), rfc5322_now());
    else
      f += fmt::format(";\r\n\t{}\r\n", rfc5322_now());
    return f;
  }

  void on_begin(const srv::MessageBegin& b) {
    discard();
    id_ = spool::new_queue_id(spool_opts_);
    error_.reset();
    parser_.emplace();
    {
      Elevated priv;
      if (!priv.ok()) {
        error_ = make_error("cannot take up the spool owner's identity");
        return;
      }
      auto tmp = spool::TempFile::create(cfg_.spool_dir + "/tmp");
      if (!tmp) {
        error_ = tmp.error();
        return;
      }
      file_.emplace(std::move(*tmp));
    }
    std::vector<std::string> rcpts;
    std::vector<spool::RecipientDsn> rcpt_dsn;
    rcpts.reserve(b.envelope.recipients.size());
    for (const auto& r : b.envelope.recipients) {
      rcpts.push_back(spool_address(r.address));
      rcpt_dsn.push_back({srv::notify_text(r.params.notify), srv::orcpt_text(r.params)});
    }
    const spool::MessageDsn dsn{std::string(srv::ret_text(b.envelope.params.ret)), b.envelope.params.envid};
    append(spool::drop_envelope(b.envelope.sender, rcpts, dsn, rcpt_dsn));
    append(received(b.envelope));
  }

  void append(std::string_view bytes) {
    if (!file_ || error_) return;
    if (auto r = parser_->feed(bytes); !r) parse_error_ = r.error().message;
    if (auto r = file_->write(bytes); !r) error_ = r.error();
  }

  void on_end() {
    if (!error_ && !file_) error_ = make_error("no message file");
    if (error_) return store_failed(*error_);
    auto info = parser_->finish();
    if (!info) {
      std::string why = parse_error_.empty() ? info.error().message : parse_error_;
      discard();
      return engine_.message_refused({554, "5.6.0", "Message not accepted: " + why});
    }
    Result<void> r;
    {
      Elevated priv;
      r = priv.ok() ? file_->commit(cfg_.spool_dir + "/incoming/" + id_)
                    : Result<void>(make_error("cannot take up the spool owner's identity"));
      if (!r) file_.reset();  // unlinks tmp/ (needs the owner's identity too)
    }
    if (!r) return store_failed(r.error());
    file_.reset();
    engine_.message_stored(true, id_);
  }

  void store_failed(const Error& e) {
    std::fprintf(stderr, "sendmail: %s: cannot store the message: %s\n", id_.c_str(), e.message.c_str());
    discard();
    if (e.code == ENOSPC || e.code == EDQUOT)
      return engine_.message_refused({452, "4.3.1", "Insufficient system storage"});
    engine_.message_stored(false, "Error: queue file write error");
  }

  // Drops the message being written: its temporary file is unlinked as the spool owner.
  void discard() {
    if (file_) {
      Elevated priv;
      file_.reset();
    }
    parser_.reset();
    parse_error_.clear();
  }

  const config::Config& cfg_;
  LocalSubmitter who_;
  spool::Options spool_opts_;
  srv::ServerEngine engine_;
  int in_, out_;
  std::optional<spool::TempFile> file_;
  std::optional<spool::DropParser> parser_;
  std::string parse_error_;
  std::optional<Error> error_;
  std::string id_;
  std::optional<srv::EndReason> end_;
  bool open_transaction_ = false;
};

void refuse(const std::string& host, const std::string& why) {
  write_all(STDOUT_FILENO, fmt::format("421 4.3.0 {} Service not available: {}\r\n", host, why));
}

}  // namespace

int run_sendmail_smtp(const SendmailArgs& a, const std::string& config_flag) {
  std::signal(SIGPIPE, SIG_IGN);  // a reader that went away is a write error, not a silent death
  LocalSubmitter who = local_submitter();
  auto cfg = load_config(a.config.empty() ? config_flag : a.config, "sendmail", false, /*quiet=*/true);
  if (!cfg) {
    std::fprintf(stderr, "sendmail: %s\n", cfg.error().message.c_str());
    refuse("localhost", "configuration error");
    return kExConfig;
  }
  if (auto r = become_spool_owner(cfg->spool_dir); !r) {
    std::fprintf(stderr, "sendmail: %s\n", r.error().message.c_str());
    refuse(cfg->hostname, "spool unusable");
    return kExTempFail;
  }
  {
    Elevated priv;
    Result<void> r = priv.ok() ? ensure_spool_layout(*cfg)
                               : Result<void>(make_error("cannot take up the spool owner's identity"));
    if (!r) {
      std::fprintf(stderr, "sendmail: spool unusable: %s\n", r.error().message.c_str());
      refuse(cfg->hostname, "spool unusable");
      return kExTempFail;
    }
  }
  StdioSession session(*cfg, std::move(who), STDIN_FILENO, STDOUT_FILENO);
  return session.run();
}

}  // namespace spoold::ctl
