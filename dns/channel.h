// dns/channel.h — one c-ares channel driven by one libuv loop (internal to dns/).
// c-ares tells us which sockets it wants watched (socket-state callback); each gets one uv::Poll
// (common/uv_handle.h), dropped the moment c-ares reports the socket gone. One uv::Timer,
// re-armed from ares_timeout() after every call into c-ares, makes lost UDP queries time out.
// Rule: query callbacks run inside c-ares (ares_process_fd, ares_query, ares_destroy); they must
// only record the answer, never call back into user code or destroy the Channel.
#pragma once

#include <ares.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/uv_handle.h"

namespace spoold::dns::detail {

struct ChannelOptions {
  std::vector<std::string> servers;  // "ip:port" / "[ip6]:port"; empty = /etc/resolv.conf
  std::chrono::milliseconds timeout{5000};
  int tries = 3;
  // Most queries sent and not yet answered; the rest wait in order. A burst (fan-out to hundreds
  // of domains is three queries each) otherwise overflows a UDP receive buffer — ours or the
  // server's — and every lost datagram costs a whole `timeout`.
  size_t max_in_flight = 64;
};

class Channel {
 public:
  // status is an ARES_* code; abuf/alen the raw answer (may be null). Called exactly once,
  // with ARES_EDESTRUCTION from inside the destructor for queries still in flight.
  using Done = std::function<void(int status, const unsigned char* abuf, int alen)>;

  static Result<std::unique_ptr<Channel>> create(uv_loop_t* loop, const ChannelOptions& options);
  explicit Channel(uv_loop_t* loop);  // use create(); public only for make_unique
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Absolute name, class IN; no search list (ares_query, never ares_search).
  void query(const std::string& name, int type, Done done);

  size_t watched_sockets() const { return polls_.size(); }
  size_t in_flight() const { return in_flight_; }
  size_t waiting() const { return waiting_.size(); }

 private:
  struct Query;

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  void watch(ares_socket_t fd, bool readable, bool writable);
  void on_poll(ares_socket_t fd, int status, int events);
  void on_timer();
  void rearm_timer();
  void send(const std::string& name, int type, Done done);
  void send_waiting();  // outside c-ares only: ares_query must not run inside its own callbacks

  uv_loop_t* loop_;
  ares_channel channel_ = nullptr;
  uv::Timer timer_;
  std::map<ares_socket_t, uv::Poll> polls_;  // a Poll that could not be set up stays empty
  struct Waiting {
    std::string name;
    int type;
    Done done;
  };
  size_t max_in_flight_ = 64;
  size_t in_flight_ = 0;
  std::deque<Waiting> waiting_;
};

}  // namespace spoold::dns::detail
