// smtp/session.cpp — see session.h. The thin transport around the Engine: libuv TCP + one timer,
// TLS through memory BIOs, body read from the spool file in 64 KiB chunks, optional transcript.
// Rules kept here: the TCP handle and the timer are owning handles (common/uv_handle.h): Impl dies
// with the Session, their memory waits for libuv's close callbacks, and none of their callbacks
// reaches a destroyed Impl. Everything the engine asks for is done in pump(), which never
// re-enters itself (callbacks that call back into the session only mark it for another round);
// a user callback run by pump() may destroy the Session, and then every frame of pump() returns
// at once, touching nothing (gone_). A body chunk is read only when the previous write
// completed, so memory stays bounded by one chunk.
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
#include "common/uv_handle.h"
#include "common/uv_stream.h"
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

class Session::Impl {
 public:
  Impl(uv_loop_t* loop, SessionOptions o, SessionCallbacks cb);  // starts connecting
  ~Impl();  // aborts the connection if still open (no QUIT); no callback runs afterwards
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

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

  void connect();
  // The handles' callbacks. Each may end in the destruction of Impl (through pump()).
  void on_connect(int status);
  void on_read(int status, std::string_view bytes);
  void on_write(int status, uv::Pieces written);
  void on_timer();

  struct ScanJob;
  void start_scan(Transaction txn, bool qp);
  void submit_scanned();
  static void scan_body(ScanJob& job);
  void scan_done(ScanJob& job);

  void received(std::string_view bytes);
  void ack_if_waiting();
  void tls_progress();
  // pump() returns false when a callback destroyed the Session: the caller must not touch Impl.
  // Below it, `gone` is pump()'s flag: a frame that ran a user callback returns when it is set.
  bool pump();
  void pump_once(const bool& gone);
  void handle(Event& ev, const bool& gone);
  void send(std::string plaintext);
  void send_output();
  void flush_writes();
  void recycle(uv::Pieces& written);
  void feed_body();
  void arm_timer();
  void close_transport();

  uv_loop_t* loop_;
  SessionOptions opt_;
  SessionCallbacks cb_;
  Engine engine_;

  uv::Tcp tcp_;
  uv::Timer timer_;
  bool* gone_ = nullptr;  // pump()'s flag while it runs; ~Impl sets it

  std::unique_ptr<TlsClient> tls_;

  uv::Pieces queued_;  // waiting for the next write; the write request owns them until on_write
  std::string spare_;  // a written buffer, handed back to the engine for reuse

  std::uint64_t armed_epoch_ = ~std::uint64_t{0};

  BodyReader body_;  // kept for the session's life: its chunk buffer serves every transaction
  std::deque<TransactionCallback> done_;  // running transaction first, then the one behind its dot
  // Submitted, not yet given to the engine: waiting for the body scan (thread pool) while scan_
  // is set, then for the engine to take it (behind a dot that was answered meanwhile).
  std::optional<Transaction> scanning_;
  std::shared_ptr<ScanJob> scan_;  // that scan; ~Impl leaves it nobody to report to

  std::unique_ptr<std::FILE, FileCloser> transcript_;

  bool connected_ = false;
  bool closing_ = false;
  bool close_after_write_ = false;
  bool tls_handshaking_ = false;
  bool writing_ = false;  // one write in flight at a time
  bool body_active_ = false;
  bool pumping_ = false;
  bool pump_again_ = false;
};

// Learning BodyInfo means reading the whole stored message: done on the libuv thread pool, so the
// loop never waits on it (docs/design.md guarantee 4). The pool side touches only fd, offset and
// scan; `owner` belongs to the loop side, which ~Impl clears, so the job outlives a Session
// destroyed meanwhile without reaching it.
struct Session::Impl::ScanJob {
  Impl* owner = nullptr;
  UniqueFd fd;
  std::uint64_t offset = 0;
  BodyScanner scan;
};

Session::Impl::Impl(uv_loop_t* loop, SessionOptions o, SessionCallbacks cb)
    : loop_(loop),
      opt_(std::move(o)),
      cb_(std::move(cb)),
      engine_(opt_.engine, hooks()),
      tcp_(loop),
      timer_(loop) {
  if (!opt_.transcript_path.empty()) {
    // NOLINTNEXTLINE(cppcoreguidelines-owning-memory): transcript_, a unique_ptr, is the owner.
    transcript_.reset(std::fopen(opt_.transcript_path.c_str(), "we"));
    if (!transcript_)
      warn(fmt::format("cannot open transcript {}: {}", opt_.transcript_path, std::strerror(errno)));
  }
  connect();
}

// The handles close with their members; a scan still on the pool finds no owner.
Session::Impl::~Impl() {
  if (gone_) *gone_ = true;
  if (scan_) scan_->owner = nullptr;
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

void Session::Impl::connect() {
  sockaddr_storage addr{};
  bool v6 = opt_.ip.find(':') != std::string::npos;
  int r = v6 ? uv_ip6_addr(opt_.ip.c_str(), opt_.port, reinterpret_cast<sockaddr_in6*>(&addr))
             : uv_ip4_addr(opt_.ip.c_str(), opt_.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (r == 0 && !opt_.bind_address.empty()) {
    sockaddr_storage local{};
    bool lv6 = opt_.bind_address.find(':') != std::string::npos;
    r = lv6 ? uv_ip6_addr(opt_.bind_address.c_str(), 0, reinterpret_cast<sockaddr_in6*>(&local))
            : uv_ip4_addr(opt_.bind_address.c_str(), 0, reinterpret_cast<sockaddr_in*>(&local));
    if (r == 0) r = tcp_.bind(reinterpret_cast<sockaddr*>(&local));
  }
  if (r == 0) r = tcp_.nodelay(true);
  if (r == 0)
    r = tcp_.connect(reinterpret_cast<sockaddr*>(&addr), [this](int status) { on_connect(status); });
  if (r != 0) {
    engine_.abort(fmt::format("cannot connect to {}: {}", peer(), uv_strerror(r)));
    // Report from the loop, not from inside the constructor the caller is still running.
    timer_.start(0, 0, [this] { on_timer(); });
    return;
  }
  transcript('*', fmt::format("connecting to {}", peer()));
  timer_.start(static_cast<std::uint64_t>(opt_.engine.timeouts.connect.count()), 0, [this] { on_timer(); });
}

void Session::Impl::on_connect(int status) {
  if (closing_) return;
  if (status < 0) {
    engine_.abort(fmt::format("cannot connect to {}: {}", peer(), uv_strerror(status)));
  } else {
    connected_ = true;
    tcp_.read_start(kReadBuffer, [this](int st, std::string_view bytes) { on_read(st, bytes); });
    transcript('*', "connected");
    engine_.start();
  }
  pump();
}

// May end the session, or (through a user callback) destroy it.
void Session::Impl::on_read(int status, std::string_view bytes) {
  if (closing_) return;
  if (status < 0)
    engine_.connection_closed(status == UV_EOF ? "EOF" : uv_strerror(status));
  else
    received(bytes);
  if (!pump()) return;
  if (!closing_) ack_if_waiting();
}

// A server without TCP_NODELAY holds a reply back (Nagle) while its previous one is not
// acknowledged, and with nothing to send our ACK would be delayed (40 ms on Linux): a pipelined
// group whose replies the server writes one by one would stall that long per reply. When we
// still wait for replies and have nothing to write, the ACK goes now (TCP_QUICKACK, which the
// kernel forgets again, hence per read).
void Session::Impl::ack_if_waiting() {
  if (!engine_.awaiting_replies() || writing_ || !queued_.empty() || engine_.has_output()) return;
  uv_os_fd_t fd;
  if (tcp_.fileno(&fd) != 0) return;
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

void Session::Impl::on_write(int status, uv::Pieces written) {
  writing_ = false;
  recycle(written);
  if (closing_) return;
  if (close_after_write_ && (status < 0 || queued_.empty())) {
    close_transport();  // the session already ended cleanly; a failed goodbye changes nothing
    return;
  }
  if (status < 0) engine_.connection_closed(fmt::format("write failed: {}", uv_strerror(status)));
  flush_writes();
  pump();
}

void Session::Impl::on_timer() {
  if (closing_) return;
  if (!connected_ && !engine_.ended())
    engine_.abort(fmt::format("connection to {} timed out", peer()));
  else
    engine_.timed_out();
  pump();
}

// Closing cancels a pending connect or write; their callbacks no longer run.
void Session::Impl::close_transport() {
  if (closing_) return;
  closing_ = true;
  body_active_ = false;
  writing_ = false;
  timer_.close();
  tcp_.close();
}

// The body must be read before MAIL when nothing is known of it, or when it is 8-bit, the server
// does not offer 8BITMIME and the header's MIME facts are unknown (the spool's facts): then the
// conversion is decided on the scan, and SIZE= is the converted size.
namespace {
bool needs_scan(const Transaction& txn, const Capabilities& caps) {
  if (!txn.body_info) return true;
  return decide_body(txn.body_info->eight_bit, caps.eight_bit_mime, txn.body_info->mime).plan ==
         BodyPlan::needs_facts;
}
}  // namespace

// Behind a final dot too: the body reader is free then (the previous body was read to its end).
// A transaction that needs a scan goes to the engine when the scan is done and the engine can
// take it (submit_scanned()), which may be only once the running one has ended.
void Session::Impl::submit(Transaction txn, BodySource body, TransactionCallback done) {
  bool behind_dot = !idle() && can_submit_next();
  if (!idle() && !behind_dot) {
    TransactionResult refused;
    for (auto& a : txn.recipients)
      refused.recipients.push_back({a, Outcome{Status::temporary, 0, "4.3.0", "session not idle", false}});
    if (done) done(refused);
    return;
  }
  bool qp = !caps().eight_bit_mime;              // the scan learns the converted size too
  if (needs_scan(txn, caps()) && body.fd < 0) {  // an in-memory body: scanning it here is cheap
    BodyScanner scan(qp);
    scan.feed(body.data);
    txn.body_info = scan.result();
  }
  body_.start(std::move(body));
  done_.push_back(std::move(done));
  if (needs_scan(txn, caps())) return start_scan(std::move(txn), qp);
  engine_.submit(std::move(txn));
  pump();
}

// The scanned transaction goes to the engine as soon as it can take it: idle, or behind the
// running one's final dot.
void Session::Impl::submit_scanned() {
  if (!scanning_ || scan_ || !(engine_.idle() || engine_.can_submit_next())) return;
  Transaction txn = std::move(*scanning_);
  scanning_.reset();
  engine_.submit(std::move(txn));
}

void Session::Impl::start_scan(Transaction txn, bool qp) {
  auto job = std::make_shared<ScanJob>();
  job->scan = BodyScanner(qp);
  job->owner = this;
  job->fd = UniqueFd(::fcntl(body_.fd(), F_DUPFD_CLOEXEC, 0));
  job->offset = body_.offset();
  scan_ = job;
  scanning_ = std::move(txn);
  int r = uv::run_in_pool(
      loop_, [job] { scan_body(*job); },
      [job] {
        if (job->owner) job->owner->scan_done(*job);
      });
  if (r != 0) {  // no thread pool: fall back to scanning here
    scan_body(*job);
    scan_done(*job);
  }
}

void Session::Impl::scan_body(ScanJob& job) {
  std::string buf(kScanChunk, '\0');
  for (std::uint64_t pos = job.offset;;) {
    ssize_t n = ::pread(job.fd.get(), buf.data(), buf.size(), static_cast<off_t>(pos));
    if (n <= 0) break;  // a read error shows again (and is reported) when the body is sent
    job.scan.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    pos += static_cast<std::uint64_t>(n);
  }
}

// May run the transaction callback, which may destroy the Session.
void Session::Impl::scan_done(ScanJob& job) {
  if (scan_.get() == &job) scan_.reset();  // the pool job still holds it
  if (!scanning_) return;                  // the session ended meanwhile and already answered
  scanning_->body_info = job.scan.result();
  submit_scanned();
  pump();
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

// Keeps the largest written buffer as spare_ (its capacity is what a body chunk needs), and the
// emptied vector as queued_ when that is empty, so neither costs an allocation per write.
void Session::Impl::recycle(uv::Pieces& written) {
  for (auto& s : written)
    if (s.capacity() > spare_.capacity()) spare_ = std::move(s);
  written.clear();
  if (queued_.empty()) queued_.swap(written);
}

// All queued pieces go out in one write with several buffers; one write in flight at a time.
void Session::Impl::flush_writes() {
  if (writing_ || queued_.empty() || closing_ || !connected_) return;
  int r = tcp_.write(std::exchange(queued_, uv::Pieces()),
                     [this](int status, uv::Pieces written) { on_write(status, std::move(written)); });
  if (r != 0) return engine_.connection_closed(fmt::format("write failed: {}", uv_strerror(r)));
  writing_ = true;
}

void Session::Impl::arm_timer() {
  if (closing_ || !connected_ || engine_.timer_epoch() == armed_epoch_) return;
  armed_epoch_ = engine_.timer_epoch();
  if (auto t = engine_.timeout())
    timer_.start(static_cast<std::uint64_t>(t->count()), 0, [this] { on_timer(); });
  else
    timer_.stop();
}

bool Session::Impl::pump() {
  if (pumping_) {  // called back from inside a user callback: the running pump goes round again
    pump_again_ = true;
    return true;
  }
  bool gone = false;  // set by ~Impl: a callback below destroyed the Session
  gone_ = &gone;
  pumping_ = true;
  for (int round = 0; round < 1000; ++round) {
    pump_again_ = false;
    pump_once(gone);
    if (gone) return false;
    if (!pump_again_ && !engine_.has_output() && !engine_.has_events()) break;
  }
  pumping_ = false;
  gone_ = nullptr;
  return true;
}

// Output goes out once the events are handled: commands that a handler adds (the next
// transaction sent behind a dot, NextWelcome) join the bytes before them in one write. A separate
// small write behind the dot would meet a server that does not set TCP_NODELAY: its replies to
// the dot and to the new commands leave in two segments, and the second waits for our delayed
// ACK (40 ms) on every message (CHANGELOG.md has the measurement).
void Session::Impl::pump_once(const bool& gone) {
  for (int guard = 0; guard < 1000; ++guard) {
    auto events = engine_.take_events();
    if (events.empty()) break;
    for (auto& ev : events) {
      handle(ev, gone);
      if (gone) return;
    }
  }
  submit_scanned();
  feed_body();
  if (engine_.has_events()) {  // body_end() entered the dot: its NextWelcome first
    pump_again_ = true;
    return;
  }
  send_output();
  arm_timer();
}

void Session::Impl::handle(Event& ev, const bool& gone) {
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
    // Runs from a local: it may destroy the Session, and with it cb_.
    if (auto cb = std::exchange(cb_.on_ready, nullptr)) cb();
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
      if (gone) return;
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
    : impl_(std::make_unique<Impl>(loop, std::move(options), std::move(callbacks))) {}

Session::~Session() = default;

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
