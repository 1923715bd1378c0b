// daemon/inbound_session.cpp — see inbound_session.h.
#include "daemon/inbound_session.h"

#include <chrono>
#include <variant>

#include <fmt/format.h>

#include "config/local_mail.h"
#include "daemon/dsn.h"
#include "daemon/log.h"
#include "daemon/receive_policy.h"
#include "spool/drop.h"

namespace spoold::daemon {

namespace srv = smtp::server;

namespace {

constexpr std::size_t kReadBuffer = 64 * 1024;
// Replies the client has not taken: stop reading its commands until it does.
constexpr std::size_t kMaxUnsent = 256 * 1024;
// A closing session waits this long for its last reply to be taken.
constexpr std::uint64_t kLingerMs = 10'000;
// SIZE announces this much less than the spool takes: what the session adds before the data.
constexpr std::uint64_t kReceivedReserve = 4096;
constexpr int kMaxAuthJobs = 2;

struct Peer {
  std::string ip;
  int port = 0;
};

Peer peer_of(const uv::Tcp& tcp) {
  sockaddr_storage ss{};
  Peer p;
  if (tcp.peer(&ss) != 0) return p;
  char buf[64] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    uv_ip4_name(a, buf, sizeof buf);
    p.port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    uv_ip6_name(a, buf, sizeof buf);
    p.port = ntohs(a->sin6_port);
  }
  p.ip = buf;
  if (p.ip.rfind("::ffff:", 0) == 0 && p.ip.find('.') != std::string::npos) p.ip.erase(0, 7);  // dual stack
  return p;
}

bool loopback_ip(const std::string& ip) {
  return ip == "::1" || ip.rfind("127.", 0) == 0;
}

}  // namespace

InboundSession::InboundSession(ReceiveContext& ctx, uv::Tcp tcp, std::function<void(InboundSession*)> on_end)
    : ctx_(ctx),
      tcp_(std::move(tcp)),
      timer_(ctx.loop),
      on_end_(std::move(on_end)),
      handshake_timer_(ctx.loop) {
  Peer p = peer_of(tcp_);
  peer_ip_ = p.ip;
  peer_port_ = p.port;
  loopback_ = loopback_ip(peer_ip_);
  client_name_ = client_name(peer_ip_);
  if (!ctx_.listener->relay_allowed(peer_ip_)) rate_key_ = client_key(peer_ip_);
  // A handshake's key exchange runs on the loop thread, which delivery shares: one client may
  // not make it do that without bound.
  tls_limited_ = ctx_.tls && !rate_key_.empty() &&
                 ctx_.tls_rates.over(rate_key_, ctx_.listener->tls.new_sessions_per_minute,
                                     std::chrono::steady_clock::now());
  srv::ServerOptions o;
  o.hostname = ctx_.config->hostname;
  o.loopback = loopback_;
  // The limits the pickup applies to the drop (the spool's, which a reload does not change):
  // room is kept for the envelope lines and the Received: field this session adds.
  std::uint64_t spool_max = ctx_.spool->options().max_message_size;
  o.max_message_size = spool_max > kReceivedReserve ? spool_max - kReceivedReserve : spool_max;
  o.max_recipients =
      std::min(static_cast<std::size_t>(ctx_.listener->max_recipients), spool::DropLimits{}.max_recipients);
  o.timeout = ctx_.listener->timeout;
  o.auth = ctx_.users != nullptr;
  o.implicit_tls = ctx_.tls && ctx_.listener->tls.implicit;
  o.starttls = ctx_.tls && !o.implicit_tls && !tls_limited_;
  engine_ = std::make_unique<srv::ServerEngine>(std::move(o));
  tcp_.nodelay(true);
}

InboundSession::~InboundSession() {
  *alive_ = false;
}

std::string InboundSession::peer_text() const {
  return fmt::format("{}[{}]", client_name_, peer_ip_);
}

void InboundSession::start() {
  ++ctx_.counters.connections;
  if (ctx_.resolver && ctx_.listener->reverse_lookup && needs_name_lookup(peer_ip_)) {
    // As Postfix's smtpd: the client is named before the banner, so every line of its session
    // carries the same name. The lookup is bounded by the resolver's timeouts; nothing is read
    // meanwhile.
    ctx_.resolver->resolve_client_name(peer_ip_, [this, alive = alive_](dns::ClientName n) {
      if (!*alive || closing_) return;
      if (n.status == dns::Status::ok) client_name_ = std::move(n.name);
      begin();
    });
    return;
  }
  begin();
}

void InboundSession::begin() {
  log::info("connect from {}", peer_text());
  if (tls_limited_) {
    ++ctx_.counters.tls_limited;
    log::warning("{}: {}: too many new TLS sessions from this client ({} a minute)", peer_text(),
                 ctx_.listener->tls.implicit ? "refused" : "STARTTLS not offered",
                 ctx_.listener->tls.new_sessions_per_minute);
    if (ctx_.listener->tls.implicit) return close_after_output();  // no plaintext reply is possible
  }
  if (ctx_.tls && ctx_.listener->tls.implicit) {
    begin_tls();  // the banner follows the handshake (tls_handshake)
    return sync_reading();
  }
  engine_->start();
  pump();
}

void InboundSession::refuse_full() {
  ++ctx_.counters.refused_full;
  log::warning("refused {}: too many sessions ({} of listener {})", peer_text(), ctx_.listener->max_sessions,
               ctx_.listener->address);
  // On an implicit-TLS listener no handshake has run: a plaintext 421 would be garbage there.
  if (!(ctx_.tls && ctx_.listener->tls.implicit))
    write_raw(fmt::format("421 4.7.0 {} Error: too many connections\r\n", ctx_.config->hostname));
  close_after_output();
}

void InboundSession::refuse_client() {
  ++ctx_.counters.refused_client;
  log::warning("refused {}: too many sessions from this client ({})", peer_text(),
               ctx_.listener->max_sessions_per_client);
  if (!(ctx_.tls && ctx_.listener->tls.implicit))
    write_raw(fmt::format("421 4.7.0 {} Error: too many connections from {}\r\n", ctx_.config->hostname,
                          client_ip_literal(peer_ip_, false)));
  close_after_output();
}

void InboundSession::shutdown() {
  shutting_down_ = true;
  if (closing_ || engine_->state() == srv::State::stored_wait) return;  // on_published() closes it
  message_.reset();
  flush_output();
  write_raw(fmt::format("421 4.3.2 {} Service shutting down\r\n", ctx_.config->hostname));
  close_after_output();
}

void InboundSession::write_raw(std::string line) {
  if (tls_ && !tls_->handshake_done()) return;  // mid-handshake: just close
  if (tls_) {
    if (!tls_->write(line)) return;
    line = tls_->take_network();
  }
  ++writes_pending_;
  int rc = tcp_.write({std::move(line)}, [this](int, const uv::Pieces&) {
    if (--writes_pending_ == 0 && closing_) closed();
  });
  if (rc != 0) --writes_pending_;
}

void InboundSession::on_read(int status, std::string_view bytes) {
  if (status < 0)
    engine_->closed();
  else if (tls_)
    return on_ciphertext(bytes);
  else
    feed_plain(bytes);
  pump();
}

void InboundSession::feed_plain(std::string_view bytes) {
  if (data_since_) data_bytes_ += bytes.size();
  engine_->feed(bytes);
  // Only a client still in DATA is judged: one whose dot came in this read has finished, and its
  // message is being stored (the engine waits for the host and has no timer to cut).
  const bool in_data = engine_->state() == srv::State::data || engine_->state() == srv::State::data_discard;
  if (!data_since_ || !in_data) return;
  const auto elapsed = uv_now(ctx_.loop) - *data_since_;
  const auto timeout = static_cast<std::uint64_t>(ctx_.listener->timeout.count());
  if (!data_too_slow(elapsed, data_bytes_, timeout, ctx_.listener->min_data_rate)) return;
  ++ctx_.counters.slow_data;
  log::info("slow DATA from {}: {} bytes in {} ms, under min_data_rate {}", peer_text(), data_bytes_, elapsed,
            ctx_.listener->min_data_rate);
  data_since_.reset();
  timed_out_in_ = engine_->state();
  engine_->timed_out();
}

// The DATA clock runs from the 354 until the engine leaves DATA (the dot, or the message dropped).
void InboundSession::sync_data_clock() {
  const bool in_data = engine_->state() == srv::State::data || engine_->state() == srv::State::data_discard;
  if (!in_data) {
    data_since_.reset();
  } else if (!data_since_) {
    data_since_ = uv_now(ctx_.loop);
    data_bytes_ = 0;
  }
}

void InboundSession::begin_tls() {
  auto t = smtp::TlsServer::create(ctx_.tls);
  if (!t) {
    log::warning("{}: TLS: {}", peer_text(), t.error().message);
    return close_after_output();
  }
  tls_ = std::move(*t);
  // The engine waits for tls_started() without a timer of its own: the handshake gets the
  // listener's timeout, so a client that stalls it is cut like one that stalls a command.
  handshake_timer_.start(static_cast<std::uint64_t>(ctx_.listener->timeout.count()), 0, [this] {
    ++ctx_.counters.tls_failed;
    log::info("{}: TLS handshake timed out", peer_text());
    close_after_output();
  });
}

void InboundSession::on_ciphertext(std::string_view bytes) {
  tls_->feed_network(bytes);
  if (!tls_->handshake_done()) return tls_handshake();
  bool closed_by_client = false;
  auto plain = tls_->read(closed_by_client);
  send_network();
  if (!plain) {
    log::info("{}: TLS: {}", peer_text(), plain.error().message);
    engine_->closed();
  } else {
    if (!plain->empty()) feed_plain(*plain);
    if (closed_by_client) engine_->closed();
  }
  pump();
}

void InboundSession::tls_handshake() {
  auto p = tls_->handshake();
  send_network();
  if (p == smtp::TlsServer::Progress::want_more) return;
  handshake_timer_.stop();
  if (!rate_key_.empty() && !(p == smtp::TlsServer::Progress::done && tls_->resumed()))
    ctx_.tls_rates.count(rate_key_, std::chrono::steady_clock::now());
  if (p == smtp::TlsServer::Progress::failed) {
    ++ctx_.counters.tls_failed;
    log::info("{}: TLS handshake failed: {}", peer_text(), tls_->error());
    return close_after_output();
  }
  ++ctx_.counters.tls;
  log::info("TLS connection established from {}: {}", peer_text(), tls_->description());
  if (engine_->state() == srv::State::init)
    engine_->start();  // implicit TLS: now the banner
  else
    engine_->tls_started();
  // Application data may have come with the client's last handshake flight.
  on_ciphertext({});
}

void InboundSession::send_network() {
  if (!tls_ || !tcp_) return;
  std::string out = tls_->take_network();
  if (out.empty()) return;
  ++writes_pending_;
  int rc = tcp_.write({std::move(out)}, [this](int, const uv::Pieces&) {
    --writes_pending_;
    if (closing_ && writes_pending_ == 0) closed();
  });
  if (rc != 0) --writes_pending_;
}

void InboundSession::pump() {
  if (in_pump_ || closing_) return;
  in_pump_ = true;
  // Each handler answers the engine at once or later; an answer may release pipelined commands
  // and so new events. The engine reads one command per answer, so this ends; the bound is a belt.
  for (int round = 0; round < 100'000; ++round) {
    auto events = engine_->take_events();
    if (events.empty()) {
      // Replies to pipelined commands are made only while the socket's queue has room for them
      // (a client that sends without reading is not answered into our memory).
      if (closing_ || !engine_->output_held()) break;
      flush_output();
      if (tcp_.queued_bytes() >= kMaxUnsent) break;  // the write's completion pumps again
      engine_->resume();
      continue;
    }
    for (auto& e : events) handle(e);
  }
  in_pump_ = false;
  flush_output();  // the 220 to STARTTLS still goes out in plaintext
  if (starttls_pending_) {
    starttls_pending_ = false;
    begin_tls();
    if (closing_) return;
  }
  if (engine_->ended()) return close_after_output();
  if (shutting_down_ && engine_->state() != srv::State::stored_wait) return shutdown();
  sync_data_clock();
  sync_timer();
  sync_reading();
}

void InboundSession::handle(srv::Event& e) {
  if (auto* r = std::get_if<srv::RcptRequest>(&e)) return on_rcpt(*r);
  if (auto* b = std::get_if<srv::MessageBegin>(&e)) return on_begin(*b);
  if (auto* d = std::get_if<srv::MessageData>(&e)) {
    if (message_) message_->append(d->bytes);
    return;
  }
  if (auto* m = std::get_if<srv::MessageEnd>(&e)) return on_message_end(*m);
  if (auto* a = std::get_if<srv::MessageAborted>(&e)) {
    log::debug("{}: message aborted: {}", peer_text(), a->reason);
    message_.reset();  // the temp file goes with it
    return;
  }
  if (auto* a = std::get_if<srv::AuthRequest>(&e)) return on_auth(*a);
  if (std::get_if<srv::StartTls>(&e)) {
    starttls_pending_ = true;
    return;
  }
  if (auto* d = std::get_if<srv::InputDiscarded>(&e)) {
    log::warning("{}: {} bytes of plaintext pipelined after STARTTLS discarded", peer_text(), d->bytes);
    return;
  }
  if (auto* s = std::get_if<srv::SessionEnded>(&e)) return on_ended(*s);
}

void InboundSession::on_rcpt(const srv::RcptRequest& r) {
  // relay_from as it is now: a reload that narrows it applies to open sessions too.
  RcptContext c{ctx_.listener->relay_allowed(peer_ip_), !engine_->auth_user().empty(), ctx_.config->hostname};
  srv::Verdict v = rcpt_policy(c, r.address);
  if (v.code < 400) {
    // A local name with nowhere to go is refused now, not bounced later: a bounce would go to a
    // sender anyone may forge (backscatter through the postmaster exception).
    auto local = config::resolve_recipient(spool_address(r.address, ctx_.config->hostname),
                                           config::local_rules(*ctx_.config));
    if (local.local && local.bounces()) v = {550, local.dsn, local.reason};
  }
  if (v.code >= 400) {
    ++ctx_.counters.rejected;
    log_reject(r, v);
  }
  engine_->rcpt_verdict(v);
}

void InboundSession::on_auth(const srv::AuthRequest& a) {
  auto users = ctx_.users;
  if (!users) return engine_->auth_verdict(false, "");
  // authzid must name the same user: acting for another account is not offered.
  if (!a.authzid.empty() && a.authzid != a.user) {
    ++ctx_.counters.auth_failed;
    log::warning("{}: SASL {} authentication failed: authorization identity differs", peer_text(),
                 a.mechanism);
    return engine_->auth_verdict(false, "");
  }
  if (a.password.find('\0') != std::string::npos) {  // crypt(3) would stop at the NUL
    ++ctx_.counters.auth_failed;
    return engine_->auth_verdict(false, "");
  }
  // crypt(3) is slow on purpose: at most kMaxAuthJobs of the pool's threads check passwords, so
  // a flood of AUTH attempts cannot keep the message writes and fsyncs waiting; the rest queue.
  if (ctx_.auth->running >= kMaxAuthJobs) {
    ctx_.auth->waiting.push_back([this, alive = alive_, a] {
      if (*alive) on_auth(a);
    });
    return;
  }
  ++ctx_.auth->running;
  auto ok = std::make_shared<bool>(false);
  int rc = uv::run_in_pool(
      ctx_.loop,
      [users, user = a.user, password = a.password, ok] { *ok = check_password(*users, user, password); },
      [this, alive = alive_, ok, user = a.user, mech = a.mechanism, queue = ctx_.auth] {
        --queue->running;
        if (!queue->waiting.empty()) {
          auto next = std::move(queue->waiting.front());
          queue->waiting.pop_front();
          next();
        }
        if (!*alive) return;
        if (*ok) {
          ++ctx_.counters.auth_ok;
        } else {
          ++ctx_.counters.auth_failed;
          log::warning("{}: SASL {} authentication failed for user '{}'", peer_text(), mech,
                       log::sanitize(user));
        }
        engine_->auth_verdict(*ok, *ok ? user : "");
        pump();
      });
  if (rc != 0) {
    --ctx_.auth->running;
    engine_->auth_verdict(false, "");
  }
}

void InboundSession::log_reject(const srv::RcptRequest& r, const srv::Verdict& v) const {
  const srv::Envelope* e = r.envelope;
  log::info("NOQUEUE: reject: RCPT from {}: {} {} <{}>: {}; from=<{}> to=<{}> proto={} helo=<{}>",
            peer_text(), v.code, v.enhanced, log::sanitize(r.address), v.text,
            log::sanitize(e ? e->sender : ""), log::sanitize(r.address), e && e->esmtp ? "ESMTP" : "SMTP",
            log::sanitize(e ? e->helo : ""));
}

void InboundSession::on_begin(const srv::MessageBegin& b) {
  envelope_ = b.envelope;
  message_size_ = 0;
  message_ = std::make_shared<IncomingMessage>(ctx_.loop, *ctx_.spool, ctx_.spool->new_id());
  message_->on_progress([this] { sync_reading(); });
  std::vector<std::string> rcpts;
  std::vector<spool::RecipientDsn> rcpt_dsn;
  rcpts.reserve(envelope_.recipients.size());
  for (const auto& r : envelope_.recipients) {
    rcpts.push_back(spool_address(r.address, ctx_.config->hostname));
    rcpt_dsn.push_back({srv::notify_text(r.params.notify), srv::orcpt_text(r.params)});
  }
  srv::ReceivedInfo info;
  info.by = ctx_.config->hostname;
  info.client_name = client_name_;
  info.client_ip = client_ip_literal(peer_ip_, true);
  info.queue_id = message_->id();
  if (tls_ && tls_->handshake_done()) info.tls = tls_->received_text();
  info.date = rfc5322_date(std::chrono::system_clock::now());
  const spool::MessageDsn dsn{std::string(srv::ret_text(envelope_.params.ret)), envelope_.params.envid};
  message_->append(spool::drop_envelope(envelope_.sender, rcpts, dsn, rcpt_dsn));
  message_->append(srv::received_field(envelope_, info));
}

void InboundSession::on_message_end(const srv::MessageEnd& m) {
  if (!message_) return engine_->message_stored(false, "Error: no message file");
  message_size_ = m.size;
  message_->finish([this, alive = alive_](const Result<void>& r) {
    if (!*alive) return;
    if (r.ok() && !message_->refusal().empty()) return refuse_message(message_->refusal());
    if (!r.ok()) return on_published(r, message_->id());
    ctx_.commit->add(message_->file(), message_->id(),
                     [this, alive, id = message_->id()](const Result<void>& p) {
                       if (*alive) on_published(p, id);
                     });
  });
}

void InboundSession::refuse_message(const std::string& why) {
  // What the pickup would move to bad/ after a 250: refused at the dot instead, nothing stored.
  ++ctx_.counters.store_failed;
  log::info("NOQUEUE: reject: END-OF-MESSAGE from {}: 554 5.6.0 {}", peer_text(), log::sanitize(why));
  message_.reset();
  engine_->message_refused(srv::Verdict{554, "5.6.0", "Message refused: " + why});
  pump();
}

void InboundSession::on_published(const Result<void>& r, const std::string& id) {
  // Runs from the thread pool's completion; the session may be closing (the client went away):
  // the message is durable regardless, the reply simply finds nobody.
  message_.reset();
  if (!r.ok()) {
    ++ctx_.counters.store_failed;
    log::warning("{}: cannot store message from {}: {}", id, peer_text(), r.error().message);
    engine_->message_stored(false, "Error: queue file write error");
  } else {
    ++ctx_.counters.messages;
    ctx_.counters.bytes += message_size_;
    std::string auth =
        engine_->auth_user().empty() ? "" : ", sasl_username=" + log::sanitize(engine_->auth_user());
    log::info("{}: client={}:{}{}", id, peer_text(), peer_port_, auth);
    engine_->message_stored(true, id);
    if (ctx_.on_stored) ctx_.on_stored();
  }
  pump();
}

void InboundSession::on_ended(const srv::SessionEnded& e) {
  switch (e.reason) {
    case srv::EndReason::quit:
      break;
    case srv::EndReason::timeout:
      log::info("timeout after {} from {}", srv::to_string(timed_out_in_), peer_text());
      break;
    case srv::EndReason::too_many_errors:
    case srv::EndReason::input_overflow:
      ++ctx_.counters.errors_cut;
      log::warning("{} from {}: {}", srv::to_string(e.reason), peer_text(), log::sanitize(e.text));
      break;
    case srv::EndReason::client_closed:
      if (message_ || engine_->state() == srv::State::data) log::info("lost connection from {}", peer_text());
      break;
  }
  message_.reset();
  log::info("disconnect from {}", peer_text());
}

void InboundSession::flush_output() {
  if (!engine_->has_output() || !tcp_) return;
  std::string out = engine_->take_output();
  if (tls_ && tls_->handshake_done()) {
    if (auto r = tls_->write(out); !r) {
      log::info("{}: TLS: {}", peer_text(), r.error().message);
      if (!closing_) engine_->closed();
      return;
    }
    out = tls_->take_network();
  }
  ++writes_pending_;
  int rc = tcp_.write({std::move(out)}, [this](int status, const uv::Pieces&) {
    --writes_pending_;
    if (closing_) {
      if (writes_pending_ == 0) closed();
      return;
    }
    if (status < 0) {
      engine_->closed();
      return pump();
    }
    if (engine_->output_held()) return pump();
    sync_reading();
  });
  if (rc != 0) {
    --writes_pending_;
    if (!closing_) engine_->closed();
  }
}

void InboundSession::sync_timer() {
  if (closing_) return;  // the linger timer runs
  auto t = engine_->timeout();
  if (!t || host_paused_since_) {
    timer_.stop();
    armed_epoch_ = ~0ull;
    return;
  }
  if (engine_->timer_epoch() == armed_epoch_) return;
  armed_epoch_ = engine_->timer_epoch();
  timer_.start(static_cast<std::uint64_t>(t->count()), 0, [this] {
    ++ctx_.counters.timeouts;
    timed_out_in_ = engine_->state();
    engine_->timed_out();
    pump();
  });
}

void InboundSession::sync_host_pause() {
  const bool paused = !closing_ && message_ && message_->backlogged();
  if (paused == host_paused_since_.has_value()) return;
  const auto now = uv_now(ctx_.loop);
  if (paused) {
    host_paused_since_ = now;
    return sync_timer();  // stops it
  }
  if (data_since_) *data_since_ += now - *host_paused_since_;
  host_paused_since_.reset();
  armed_epoch_ = ~0ull;  // the client gets its whole timeout again from here
  sync_timer();
}

void InboundSession::sync_reading() {
  sync_host_pause();
  bool handshaking = tls_ && !tls_->handshake_done();
  bool want = !closing_ && !engine_->ended() && (handshaking || !engine_->input_paused()) &&
              !(message_ && message_->backlogged()) && tcp_.queued_bytes() < kMaxUnsent;
  if (want == reading_) return;
  reading_ = want;
  if (!want) return tcp_.read_stop();
  int rc =
      tcp_.read_start(kReadBuffer, [this](int status, std::string_view bytes) { on_read(status, bytes); });
  if (rc != 0) {
    reading_ = false;
    engine_->closed();
    pump();
  }
}

void InboundSession::close_after_output() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  tcp_.read_stop();
  handshake_timer_.stop();
  message_.reset();
  if (tls_ && tls_->handshake_done()) {
    tls_->shutdown();  // close_notify, best effort
    send_network();
  }
  if (writes_pending_ == 0) return closed();
  timer_.start(kLingerMs, 0, [this] { closed(); });  // a client that never reads its last reply
}

void InboundSession::closed() {
  if (!tcp_) return;
  tcp_.close();
  timer_.close();
  handshake_timer_.close();
  if (on_end_) on_end_(this);
}

}  // namespace spoold::daemon
