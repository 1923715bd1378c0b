// dns/channel.cpp — c-ares ↔ libuv wiring: socket-state callback → one uv::Poll per fd,
// ares_timeout() → one timer. See channel.h for the rule about callbacks inside c-ares.
#include "dns/channel.h"

#include <fmt/format.h>

#include <mutex>

namespace spoold::dns::detail {

struct Channel::Query {
  Channel* channel;
  Done done;
};

namespace {

constexpr int kClassIn = 1;

void init_library_once() {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

std::string join_servers(const std::vector<std::string>& servers) {
  std::string csv;
  for (const auto& s : servers) {
    if (!csv.empty()) csv += ',';
    csv += s;
  }
  return csv;
}

}  // namespace

Channel::Channel(uv_loop_t* loop) : loop_(loop), timer_(loop) {}

Result<std::unique_ptr<Channel>> Channel::create(uv_loop_t* loop, const ChannelOptions& options) {
  init_library_once();
  auto ch = std::make_unique<Channel>(loop);

  ares_options opts{};
  opts.sock_state_cb = &Channel::on_sock_state;
  opts.sock_state_cb_data = ch.get();
  opts.timeout = static_cast<int>(options.timeout.count());
  opts.tries = options.tries < 1 ? 1 : options.tries;
  ch->max_in_flight_ = options.max_in_flight < 1 ? 1 : options.max_in_flight;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  if (int rc = ares_init_options(&ch->channel_, &opts, mask); rc != ARES_SUCCESS)
    return make_error(fmt::format("dns: ares_init_options: {}", ares_strerror(rc)), rc);

  if (!options.servers.empty()) {
    std::string csv = join_servers(options.servers);
    // c-ares 1.18 only accepts this before the first query; we are before it.
    if (int rc = ares_set_servers_ports_csv(ch->channel_, csv.c_str()); rc != ARES_SUCCESS)
      return make_error(fmt::format("dns: bad server list \"{}\": {}", csv, ares_strerror(rc)), rc);
  }
  return ch;
}

Channel::~Channel() {
  // ares_destroy calls every pending query's callback with ARES_EDESTRUCTION and reports its
  // sockets closed through on_sock_state, which drops their polls.
  if (channel_) ares_destroy(channel_);
  channel_ = nullptr;
  auto waiting = std::move(waiting_);  // never sent: they end as the ones in flight did
  waiting_.clear();
  for (auto& w : waiting) w.done(ARES_EDESTRUCTION, nullptr, 0);
}

void Channel::query(const std::string& name, int type, Done done) {
  if (in_flight_ >= max_in_flight_) {
    waiting_.push_back({name, type, std::move(done)});
    return;
  }
  send(name, type, std::move(done));
  rearm_timer();
}

void Channel::send(const std::string& name, int type, Done done) {
  ++in_flight_;
  auto q = std::make_unique<Query>(Query{this, std::move(done)});
  // Ownership passes to c-ares, which calls on_answer exactly once (maybe right here).
  ares_query(channel_, name.c_str(), kClassIn, type, &Channel::on_answer, q.release());
}

void Channel::send_waiting() {
  while (!waiting_.empty() && in_flight_ < max_in_flight_ && channel_) {
    Waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    send(w.name, w.type, std::move(w.done));
  }
}

void Channel::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<Query> q(static_cast<Query*>(arg));
  if (q->channel->in_flight_ > 0) --q->channel->in_flight_;
  q->done(status, abuf, alen);
}

void Channel::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  static_cast<Channel*>(data)->watch(fd, readable != 0, writable != 0);
}

void Channel::watch(ares_socket_t fd, bool readable, bool writable) {
  if (!readable && !writable) {
    polls_.erase(fd);  // the socket is about to be closed: stop and close its poll now
    return;
  }
  auto it = polls_.find(fd);
  if (it == polls_.end()) it = polls_.emplace(fd, uv::Poll(loop_, fd)).first;
  int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  // If the poll could not be set up, c-ares still times the query out through the timer. The
  // callback may drop this very poll (c-ares closing the socket): uv::Poll allows that.
  (void)it->second.start(events, [this, fd](int status, int ev) { on_poll(fd, status, ev); });
}

void Channel::on_poll(ares_socket_t fd, int status, int events) {
  // On a poll error let c-ares read and write so it notices the socket's error itself.
  bool rd = status < 0 || (events & UV_READABLE);
  bool wr = status < 0 || (events & UV_WRITABLE);
  ares_process_fd(channel_, rd ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
  send_waiting();  // answers made room
  rearm_timer();
}

void Channel::on_timer() {
  ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // expire timed-out tries
  send_waiting();
  rearm_timer();
}

void Channel::rearm_timer() {
  timeval tv{};
  timeval* next = ares_timeout(channel_, nullptr, &tv);
  if (!next) {
    timer_.stop();  // nothing in flight: do not keep the loop alive
    return;
  }
  uint64_t ms =
      static_cast<uint64_t>(next->tv_sec) * 1000 + (static_cast<uint64_t>(next->tv_usec) + 999) / 1000;
  timer_.start(ms, 0, [this] { on_timer(); });
}

}  // namespace spoold::dns::detail
