// smtp/session.cpp — see session.h. The thin transport around the Engine: libuv TCP + one timer,
// TLS through memory BIOs, body read from the spool file in 64 KiB chunks, optional transcript.
// Rules kept here: every uv handle lives inside Impl, which keeps itself alive (self_) until the
// last close callback; everything the engine asks for is done in pump(), which never re-enters
// itself (callbacks that call back into the session only mark it for another round); a body chunk
// is read only when the previous write completed, so memory stays bounded by one chunk.
#include "smtp/session.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <utility>

#include "common/unique_fd.h"
#include "smtp/body_encoder.h"
#include "smtp/engine.h"
#include "smtp/tls.h"

namespace spoold::smtp {

namespace {

constexpr std::size_t kScanChunk = 64 * 1024;
constexpr std::size_t kReadBuffer = 64 * 1024;

struct FileCloser {
  void operator()(std::FILE* f) const {
    // NOLINTNEXTLINE(cppcoreguidelines-owning-memory): the owner is a unique_ptr; no gsl::owner here.
    if (f) std::fclose(f);
  }
};

}  // namespace

class Session::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(uv_loop_t* loop, SessionOptions o, SessionCallbacks cb);
  void begin(std::shared_ptr<Impl> self);
  void detach();  // the Session handle is gone: no more callbacks, abort the connection

  void submit(Transaction txn, BodySource body, TransactionCallback done);
  void quit() {
    engine_.quit();
    pump();
  }
  // Ends the session now, mid-transaction if need be: the running transaction's callback reports
  // every open recipient temporary (possible duplicates after the final dot are flagged by the
  // engine), then on_closed.
  void abort(std::string_view why) {
    if (!engine_.ended()) engine_.abort(why);
    pump();
  }
  bool connected() const { return connected_; }
  bool idle() const { return engine_.idle() && !closing_ && done_.empty(); }
  bool can_submit_next() const { return engine_.can_submit_next() && !closing_ && !scanning_; }
  bool alive() const { return !engine_.ended() && !closing_; }
  const Capabilities& caps() const { return engine_.capabilities(); }
  bool encrypted() const { return engine_.encrypted(); }
  bool verified() const { return tls_ && tls_->verified(); }
  bool starttls_failed() const { return engine_.starttls_failed(); }
  bool after_final_dot() const { return engine_.state() == State::dot; }
  std::string peer() const {
    return opt_.ip.find(':') != std::string::npos ? fmt::format("[{}]:{}", opt_.ip, opt_.port)
                                                  : fmt::format("{}:{}", opt_.ip, opt_.port);
  }

 private:
  EngineHooks hooks();
  void transcript(char dir, std::string_view line);
  void warn(std::string_view msg);

  // libuv callbacks. Each may end in the destruction of Impl only through close_cb (self_.reset()).
  static void on_connect(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_timer(uv_timer_t* t);
  static void on_close(uv_handle_t* h);

  struct ScanWork;
  void start_scan(Transaction txn);
  static void scan_in_pool(uv_work_t* req);
  static void scan_done(uv_work_t* req, int status);

  void received(std::string_view bytes);
  void ack_if_waiting();
  void tls_progress();
  void pump();
  void pump_once();
  void handle(Event& ev);
  void send(std::string plaintext);
  void send_output();
  void flush_writes();
  void recycle_in_flight();
  void feed_body();
  void arm_timer();
  void close_transport();

  uv_loop_t* loop_;
  SessionOptions opt_;
  SessionCallbacks cb_;
  Engine engine_;
  std::shared_ptr<Impl> self_;  // set while any handle is open

  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  int open_handles_ = 0;
  bool connected_ = false;
  bool closing_ = false;
  bool close_after_write_ = false;

  std::unique_ptr<TlsClient> tls_;
  bool tls_handshaking_ = false;

  std::vector<std::string> queued_;     // waiting for the next uv_write
  std::vector<std::string> in_flight_;  // owned until on_write
  std::string spare_;                   // a written buffer, handed back to the engine for reuse
  bool writing_ = false;
  char read_buf_[kReadBuffer];

  std::uint64_t armed_epoch_ = ~std::uint64_t{0};

  BodyReader body_;  // kept for the session's life: its chunk buffer serves every transaction
  bool body_active_ = false;
  std::deque<TransactionCallback> done_;  // running transaction first, then the one behind its dot
  std::optional<Transaction> scanning_;   // submitted, waiting for the body scan (thread pool)

  std::unique_ptr<std::FILE, FileCloser> transcript_;

  bool pumping_ = false;
  bool pump_again_ = false;
};

Session::Impl::Impl(uv_loop_t* loop, SessionOptions o, SessionCallbacks cb)
    : loop_(loop), opt_(std::move(o)), cb_(std::move(cb)), engine_(opt_.engine, hooks()) {
  if (!opt_.transcript_path.empty()) {
    // NOLINTNEXTLINE(cppcoreguidelines-owning-memory): transcript_, a unique_ptr, is the owner.
    transcript_.reset(std::fopen(opt_.transcript_path.c_str(), "we"));
    if (!transcript_)
      warn(fmt::format("cannot open transcript {}: {}", opt_.transcript_path, std::strerror(errno)));
  }
}

EngineHooks Session::Impl::hooks() {
  EngineHooks h;
  h.on_command = [this](std::string_view c) { transcript('>', c); };
  h.on_transition = [this](State from, State to) {
    if (cb_.on_trace) cb_.on_trace(fmt::format("{} -> {}", to_string(from), to_string(to)));
  };
  h.on_reply = [this](const Reply& r) {
    for (std::size_t i = 0; i < r.lines.size(); ++i)
      transcript('<',
                 fmt::format("{}{}{}", r.code, i + 1 == r.lines.size() ? ' ' : '-', sanitize(r.lines[i])));
  };
  return h;
}

void Session::Impl::transcript(char dir, std::string_view line) {
  if (!transcript_) return;
  std::fprintf(transcript_.get(), "%c %.*s\n", dir, static_cast<int>(line.size()), line.data());
  std::fflush(transcript_.get());
}

void Session::Impl::warn(std::string_view msg) {
  transcript('*', msg);
  if (cb_.on_warning) cb_.on_warning(msg);
}

void Session::Impl::begin(std::shared_ptr<Impl> self) {
  self_ = std::move(self);
  uv_tcp_init(loop_, &tcp_);
  tcp_.data = this;
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  open_handles_ = 2;

  sockaddr_storage addr{};
  bool v6 = opt_.ip.find(':') != std::string::npos;
  int r = v6 ? uv_ip6_addr(opt_.ip.c_str(), opt_.port, reinterpret_cast<sockaddr_in6*>(&addr))
             : uv_ip4_addr(opt_.ip.c_str(), opt_.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (r == 0 && !opt_.bind_address.empty()) {
    sockaddr_storage local{};
    bool lv6 = opt_.bind_address.find(':') != std::string::npos;
    r = lv6 ? uv_ip6_addr(opt_.bind_address.c_str(), 0, reinterpret_cast<sockaddr_in6*>(&local))
            : uv_ip4_addr(opt_.bind_address.c_str(), 0, reinterpret_cast<sockaddr_in*>(&local));
    if (r == 0) r = uv_tcp_bind(&tcp_, reinterpret_cast<sockaddr*>(&local), 0);
  }
  if (r == 0) r = uv_tcp_nodelay(&tcp_, 1);
  if (r == 0) r = uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<sockaddr*>(&addr), on_connect);
  if (r != 0) {
    engine_.abort(fmt::format("cannot connect to {}: {}", peer(), uv_strerror(r)));
    // Report from the loop, not from inside the constructor the caller is still running.
    uv_timer_start(&timer_, on_timer, 0, 0);
    return;
  }
  transcript('*', fmt::format("connecting to {}", peer()));
  uv_timer_start(&timer_, on_timer, static_cast<std::uint64_t>(opt_.engine.timeouts.connect.count()), 0);
}

void Session::Impl::detach() {
  cb_ = SessionCallbacks{};
  done_.clear();
  scanning_.reset();
  if (!engine_.ended()) engine_.abort("session destroyed by its owner");
  engine_.take_events();
  close_transport();
}

void Session::Impl::on_connect(uv_connect_t* req, int status) {
  auto* self = static_cast<Impl*>(req->handle->data);
  if (self->closing_) return;
  if (status < 0) {
    self->engine_.abort(fmt::format("cannot connect to {}: {}", self->peer(), uv_strerror(status)));
  } else {
    self->connected_ = true;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&self->tcp_), on_alloc, on_read);
    self->transcript('*', "connected");
    self->engine_.start();
  }
  self->pump();
}

void Session::Impl::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* self = static_cast<Impl*>(h->data);
  *buf = uv_buf_init(self->read_buf_, sizeof self->read_buf_);
}

// May end the session (and schedule Impl's destruction for the close callbacks).
void Session::Impl::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Impl*>(s->data);
  if (self->closing_) return;
  if (nread < 0) {
    self->engine_.connection_closed(nread == UV_EOF ? "EOF" : uv_strerror(static_cast<int>(nread)));
  } else if (nread > 0) {
    self->received(std::string_view(buf->base, static_cast<std::size_t>(nread)));
  }
  self->pump();
  if (!self->closing_) self->ack_if_waiting();
}

// A server without TCP_NODELAY holds a reply back (Nagle) while its previous one is not
// acknowledged, and with nothing to send our ACK would be delayed (40 ms on Linux): a pipelined
// group whose replies the server writes one by one would stall that long per reply. When we
// still wait for replies and have nothing to write, the ACK goes now (TCP_QUICKACK, which the
// kernel forgets again, hence per read).
void Session::Impl::ack_if_waiting() {
  if (!engine_.awaiting_replies() || writing_ || !queued_.empty() || engine_.has_output()) return;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) != 0) return;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);  // best effort
}

void Session::Impl::received(std::string_view bytes) {
  if (!tls_) return engine_.receive(bytes);
  tls_->feed_network(bytes);
  if (tls_handshaking_) return tls_progress();
  bool closed = false;
  auto plain = tls_->read(closed);
  if (!plain) return engine_.connection_closed(plain.error().message);
  if (!plain->empty()) engine_.receive(*plain);
  if (closed) engine_.connection_closed("TLS close_notify");
}

void Session::Impl::tls_progress() {
  auto p = tls_->handshake();
  if (auto out = tls_->take_network(); !out.empty()) {
    queued_.push_back(std::move(out));
    flush_writes();
  }
  if (p == TlsClient::Progress::want_more) return;
  tls_handshaking_ = false;
  if (p == TlsClient::Progress::failed) return engine_.tls_done(false, tls_->error());
  transcript('*', "TLS: " + tls_->description());
  if (!tls_->verified() && opt_.engine.tls != TlsPolicy::verify)
    transcript('*', "certificate not verified (policy does not require it)");
  engine_.tls_done(true, tls_->description());
  bool closed = false;
  auto plain = tls_->read(closed);  // anything the server sent right after the handshake
  if (plain && !plain->empty()) engine_.receive(*plain);
}

void Session::Impl::on_write(uv_write_t* req, int status) {
  auto* self = static_cast<Impl*>(req->data);
  self->writing_ = false;
  self->recycle_in_flight();
  if (self->closing_) return;
  if (self->close_after_write_ && (status < 0 || self->queued_.empty())) {
    self->close_transport();  // the session already ended cleanly; a failed goodbye changes nothing
    return;
  }
  if (status < 0) self->engine_.connection_closed(fmt::format("write failed: {}", uv_strerror(status)));
  self->flush_writes();
  self->pump();
}

void Session::Impl::on_timer(uv_timer_t* t) {
  auto* self = static_cast<Impl*>(t->data);
  if (self->closing_) return;
  if (!self->connected_ && !self->engine_.ended())
    self->engine_.abort(fmt::format("connection to {} timed out", self->peer()));
  else
    self->engine_.timed_out();
  self->pump();
}

// The last close callback drops self_, which may free Impl: nothing may touch it afterwards.
void Session::Impl::on_close(uv_handle_t* h) {
  auto* self = static_cast<Impl*>(h->data);
  if (--self->open_handles_ == 0) self->self_.reset();
}

void Session::Impl::close_transport() {
  if (closing_) return;
  closing_ = true;
  body_active_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);  // cancels a pending connect/write
}

// Behind a final dot only with body_info known: the body reader is free then (the previous body
// was read to its end), but a thread-pool scan would hold the commands back anyway.
void Session::Impl::submit(Transaction txn, BodySource body, TransactionCallback done) {
  bool behind_dot = !idle() && can_submit_next() && (txn.body_info || body.fd < 0);
  if (!idle() && !behind_dot) {
    TransactionResult refused;
    for (auto& a : txn.recipients)
      refused.recipients.push_back({a, Outcome{Status::temporary, 0, "4.3.0", "session not idle", false}});
    if (done) done(refused);
    return;
  }
  if (!txn.body_info && body.fd < 0) {  // an in-memory body: scanning it here is cheap
    BodyScanner scan;
    scan.feed(body.data);
    txn.body_info = scan.result();
  }
  body_.start(std::move(body));
  done_.push_back(std::move(done));
  if (!txn.body_info) return start_scan(std::move(txn));
  engine_.submit(std::move(txn));
  pump();
}

// Learning BodyInfo means reading the whole stored message: done on the libuv thread pool, so the
// loop never waits on it (docs/design.md guarantee 4). The work item keeps Impl alive until it returns.
struct Session::Impl::ScanWork {
  uv_work_t req{};
  std::shared_ptr<Impl> owner;
  UniqueFd fd;
  std::uint64_t offset = 0;
  BodyScanner scan;
};

void Session::Impl::start_scan(Transaction txn) {
  auto work = std::make_unique<ScanWork>();
  work->owner = shared_from_this();
  work->fd = UniqueFd(::fcntl(body_.fd(), F_DUPFD_CLOEXEC, 0));
  work->offset = body_.offset();
  work->req.data = work.get();
  scanning_ = std::move(txn);
  int r = uv_queue_work(loop_, &work->req, scan_in_pool, scan_done);
  if (r != 0) {  // no thread pool: fall back to scanning here
    scan_in_pool(&work->req);
    scan_done(&work->req, 0);
    return;
  }
  (void)work.release();  // owned by the request until scan_done
}

void Session::Impl::scan_in_pool(uv_work_t* req) {
  auto* w = static_cast<ScanWork*>(req->data);
  std::string buf(kScanChunk, '\0');
  for (std::uint64_t pos = w->offset;;) {
    ssize_t n = ::pread(w->fd.get(), buf.data(), buf.size(), static_cast<off_t>(pos));
    if (n <= 0) break;  // a read error shows again (and is reported) when the body is sent
    w->scan.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    pos += static_cast<std::uint64_t>(n);
  }
}

// May run the transaction callback (which may destroy the Session handle; `owner` keeps Impl).
void Session::Impl::scan_done(uv_work_t* req, int) {
  std::unique_ptr<ScanWork> w(static_cast<ScanWork*>(req->data));
  Impl* self = w->owner.get();
  if (!self->scanning_) return;  // the session ended meanwhile and already answered
  Transaction txn = std::move(*self->scanning_);
  self->scanning_.reset();
  txn.body_info = w->scan.result();
  self->engine_.submit(std::move(txn));
  self->pump();
}
// Reads and encodes one chunk; the next one is read after its write completed (on_write → pump).
// When the reader sees the end with the last bytes, the final dot joins them in the same write.
void Session::Impl::feed_body() {
  if (!body_active_ || writing_ || !queued_.empty() || engine_.state() != State::body) return;
  auto piece = body_.next();
  if (!piece) {
    body_active_ = false;
    return engine_.abort(piece.error().message);
  }
  if (!piece->bytes.empty()) engine_.body_chunk(piece->bytes);
  if (piece->last) {
    body_active_ = false;
    engine_.body_end();
  }
}

void Session::Impl::send(std::string plaintext) {
  if (plaintext.empty() || closing_) return;
  if (tls_ && tls_->handshake_done()) {
    auto r = tls_->write(plaintext);
    if (!r) return engine_.connection_closed(r.error().message);
    queued_.push_back(tls_->take_network());
    if (plaintext.capacity() > spare_.capacity()) spare_ = std::move(plaintext);  // encrypted: reuse
  } else {
    queued_.push_back(std::move(plaintext));  // plaintext: the engine's buffer goes out as it is
  }
  flush_writes();
}

// What the engine wrote goes out; the engine gets a written buffer back to fill next, so a body
// chunk costs no allocation (and no page faults on fresh memory) once the session has sent one.
void Session::Impl::send_output() {
  if (engine_.has_output()) send(engine_.take_output(std::exchange(spare_, std::string())));
}

// Keeps the largest written buffer as spare_ (its capacity is what a body chunk needs).
void Session::Impl::recycle_in_flight() {
  for (auto& s : in_flight_)
    if (s.capacity() > spare_.capacity()) spare_ = std::move(s);
  in_flight_.clear();
}

// All queued pieces go out in one uv_write with several buffers; one write in flight at a time.
void Session::Impl::flush_writes() {
  if (writing_ || queued_.empty() || closing_ || !connected_) return;
  in_flight_.swap(queued_);  // in_flight_ was empty: queued_ keeps its capacity
  std::vector<uv_buf_t> bufs;
  for (auto& s : in_flight_) bufs.push_back(uv_buf_init(s.data(), static_cast<unsigned>(s.size())));
  write_req_.data = this;
  int r = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), bufs.data(),
                   static_cast<unsigned>(bufs.size()), on_write);
  if (r != 0) {
    recycle_in_flight();
    engine_.connection_closed(fmt::format("write failed: {}", uv_strerror(r)));
    return;
  }
  writing_ = true;
}

void Session::Impl::arm_timer() {
  if (closing_ || !connected_ || engine_.timer_epoch() == armed_epoch_) return;
  armed_epoch_ = engine_.timer_epoch();
  if (auto t = engine_.timeout())
    uv_timer_start(&timer_, on_timer, static_cast<std::uint64_t>(t->count()), 0);
  else
    uv_timer_stop(&timer_);
}

void Session::Impl::pump() {
  if (pumping_) {  // called back from inside a user callback: the running pump goes round again
    pump_again_ = true;
    return;
  }
  auto keep = shared_from_this();  // a callback below may destroy the Session handle
  pumping_ = true;
  for (int round = 0; round < 1000; ++round) {
    pump_again_ = false;
    pump_once();
    if (!pump_again_ && !engine_.has_output() && !engine_.has_events()) break;
  }
  pumping_ = false;
}

// Output goes out once the events are handled: commands that a handler adds (the next
// transaction sent behind a dot, NextWelcome) join the bytes before them in one write. A separate
// small write behind the dot would meet a server that does not set TCP_NODELAY: its replies to
// the dot and to the new commands leave in two segments, and the second waits for our delayed
// ACK (40 ms) on every message (CHANGELOG.md has the measurement).
void Session::Impl::pump_once() {
  for (int guard = 0; guard < 1000; ++guard) {
    auto events = engine_.take_events();
    if (events.empty()) break;
    for (auto& ev : events) handle(ev);
  }
  feed_body();
  if (engine_.has_events()) {  // body_end() entered the dot: its NextWelcome first
    pump_again_ = true;
    return;
  }
  send_output();
  arm_timer();
}

void Session::Impl::handle(Event& ev) {
  if (std::holds_alternative<StartTls>(ev)) {
    send_output();
    auto t = TlsClient::create(TlsOptions{opt_.tls_host, opt_.engine.tls == TlsPolicy::verify, opt_.ca_file});
    if (!t) return engine_.tls_done(false, t.error().message);
    tls_ = std::move(t.value());
    tls_handshaking_ = true;
    transcript('*', "starting TLS handshake");
    tls_progress();
  } else if (std::holds_alternative<BodyWanted>(ev)) {
    body_active_ = true;
    body_.rewind();
    transcript('>', "(message body not logged)");
  } else if (auto* inj = std::get_if<ResponseInjected>(&ev)) {
    warn(
        fmt::format("{}: {} bytes received after the STARTTLS 220 and before TLS were discarded "
                    "(response injection attempt?)",
                    peer(), inj->bytes));
  } else if (std::holds_alternative<Ready>(ev)) {
    if (cb_.on_ready) cb_.on_ready();
  } else if (std::holds_alternative<NextWelcome>(ev)) {
    // Asked only while it still holds: the engine may have read the dot's reply meanwhile.
    if (cb_.on_next_welcome && can_submit_next()) cb_.on_next_welcome();
  } else if (auto* done = std::get_if<TransactionDone>(&ev)) {
    if (done_.empty()) return;  // cannot happen: one callback per submitted transaction
    auto cb = std::move(done_.front());
    done_.pop_front();
    if (done_.empty()) {  // else body_ already holds the next transaction's message
      body_active_ = false;
      body_.stop();
    }
    if (cb) cb(done->result);
  } else if (auto* end = std::get_if<SessionEnded>(&ev)) {
    if (scanning_ && !done_.empty()) {  // submitted, but the engine never saw it: all temporary
      TransactionResult r;
      for (auto& a : scanning_->recipients) r.recipients.push_back({a, end->reason});
      for (auto& rr : r.recipients) rr.outcome.status = Status::temporary;
      scanning_.reset();
      auto cb = std::move(done_.front());
      done_.pop_front();
      if (cb) cb(r);
    }
    transcript('*', fmt::format("session ended: {} {}", to_string(end->reason.status), end->reason.text));
    bool clean = end->reason.status == Status::sent;
    if (clean && tls_ && tls_->handshake_done()) {
      tls_->shutdown();
      queued_.push_back(tls_->take_network());
    }
    if (clean && (writing_ || !queued_.empty())) {
      close_after_write_ = true;
      flush_writes();
    } else {
      close_transport();
    }
    if (auto cb = std::exchange(cb_.on_closed, nullptr)) cb(end->reason);
  }
}

Session::Session(uv_loop_t* loop, SessionOptions options, SessionCallbacks callbacks)
    : impl_(std::make_shared<Impl>(loop, std::move(options), std::move(callbacks))) {
  impl_->begin(impl_);
}

Session::~Session() {
  if (impl_) impl_->detach();
}

bool Session::idle() const {
  return impl_->idle();
}
bool Session::alive() const {
  return impl_->alive();
}
bool Session::can_submit_next() const {
  return impl_->can_submit_next();
}
void Session::submit(Transaction txn, BodySource body, TransactionCallback done) {
  impl_->submit(std::move(txn), std::move(body), std::move(done));
}
void Session::quit() {
  impl_->quit();
}
void Session::abort(std::string_view why) {
  impl_->abort(why);
}
bool Session::connected() const {
  return impl_->connected();
}
const Capabilities& Session::capabilities() const {
  return impl_->caps();
}
bool Session::encrypted() const {
  return impl_->encrypted();
}
bool Session::verified() const {
  return impl_->verified();
}
bool Session::starttls_failed() const {
  return impl_->starttls_failed();
}
bool Session::after_final_dot() const {
  return impl_->after_final_dot();
}
std::string Session::peer() const {
  return impl_->peer();
}

}  // namespace spoold::smtp
