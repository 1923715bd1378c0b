// common/uv_stream.h — libuv streams on the handle idiom of common/uv_handle.h: Pipe (unix
// sockets, socketpairs, the control socket) and Tcp (the SMTP client), read with a callback, write
// with a completion, close.
// Rule: a write request owns the bytes it sends until libuv completes it, and frees itself then;
// its completion runs only while the stream's owner still holds the stream. So closing or
// destroying the stream with writes pending is always safe: libuv cancels them (UV_ECANCELED)
// before the stream's close callback, and that reaches nobody.
#pragma once

#include <uv.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/uv_handle.h"

namespace spoold::uv {

using Pieces = std::vector<std::string>;

namespace detail {

// What a stream keeps beside its handle.
struct StreamState {
  Callback<int, std::string_view> on_read;
  Callback<int> on_connect;     // Tcp::connect
  Callback<int> on_connection;  // Pipe::listen
  uv_connect_t connect_req{};   // libuv may cancel it as late as the close, so it lives here
  std::unique_ptr<char[]> buffer;
  std::size_t buffer_size = 0;
  bool closed = false;  // the owner closed the stream: write completions reach nobody
  void reset() {
    on_read.reset();
    on_connect.reset();
    on_connection.reset();
    closed = true;
  }
};

// One uv_write and what it sends; it frees itself when libuv completes it.
struct WriteReq {
  uv_write_t req{};
  const StreamState* state = nullptr;
  Pieces pieces;
  std::function<void(int status, Pieces written)> done;
};

// The stream's state is still there when this runs: libuv completes (or cancels) every write
// before it calls the stream's close callback.
inline void on_written(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  if (w->state->closed || !w->done) return;
  w->done(status, std::move(w->pieces));
}

inline int write(uv_stream_t* stream, const StreamState& state, Pieces pieces,
                 std::function<void(int status, Pieces written)> done) {
  auto w = std::make_unique<WriteReq>();
  w->state = &state;
  w->pieces = std::move(pieces);
  w->done = std::move(done);
  std::vector<uv_buf_t> bufs;  // uv_write copies the array, not the bytes
  bufs.reserve(w->pieces.size());
  for (auto& p : w->pieces) bufs.push_back(uv_buf_init(p.data(), static_cast<unsigned>(p.size())));
  w->req.data = w.get();
  int rc = uv_write(&w->req, stream, bufs.data(), static_cast<unsigned>(bufs.size()), &on_written);
  if (rc == 0) (void)w.release();  // freed by on_written
  return rc;
}

}  // namespace detail

// What Pipe and Tcp share; T is uv_pipe_t or uv_tcp_t.
template <class T>
class Stream {
 public:
  // status 0 with the bytes read (valid only during the call), or < 0: UV_EOF or an error.
  using ReadFn = std::function<void(int status, std::string_view bytes)>;
  // status 0 or a libuv error; `written` are the pieces handed to write(), back for reuse.
  using WriteFn = std::function<void(int status, Pieces written)>;

  // Reads into a buffer of `buffer_size` bytes kept beside the handle (allocated by the first
  // read_start, whose size stays) and calls fn for every read. fn may stop reading, close or
  // destroy the stream.
  int read_start(std::size_t buffer_size, ReadFn fn) {
    if (!h_) return UV_EBADF;
    State& s = *h_.state();
    if (!s.buffer) {
      s.buffer = std::make_unique_for_overwrite<char[]>(buffer_size);
      s.buffer_size = buffer_size;
    }
    s.on_read.set(std::move(fn));
    return uv_read_start(stream(), &Stream::on_alloc, &Stream::on_read);
  }
  void read_stop() {
    if (h_) uv_read_stop(stream());
  }

  // Sends the pieces in order, in one uv_write. Returns 0 (done follows, unless the stream is
  // closed first) or a libuv error (done never runs).
  int write(Pieces pieces, WriteFn done = {}) {
    if (!h_) return UV_EBADF;
    uv_stream_t* s = stream();
    State* state = h_.state();
    return detail::write(s, *state, std::move(pieces), std::move(done));
  }

  // fn(status) for every connection waiting; accept() it from there.
  int listen(int backlog, std::function<void(int status)> fn) {
    if (!h_) return UV_EBADF;
    h_.state()->on_connection.set(std::move(fn));
    return uv_listen(stream(), backlog,
                     [](uv_stream_t* s, int status) { H::state_of(s).on_connection(status); });
  }
  int accept(Stream& client) { return h_ && client.h_ ? uv_accept(stream(), client.stream()) : UV_EBADF; }

  int fileno(uv_os_fd_t* fd) const { return h_ ? uv_fileno(h_.handle(), fd) : UV_EBADF; }
  // Bytes handed to write() that the kernel has not taken yet.
  std::size_t queued_bytes() const { return h_ ? uv_stream_get_write_queue_size(stream()) : 0; }
  bool active() const { return h_.active(); }  // reading or listening
  void close() { h_.close(); }
  explicit operator bool() const { return static_cast<bool>(h_); }

 protected:
  using State = detail::StreamState;
  using H = Handle<T, State>;

  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(h_.get()); }

  H h_;

 private:
  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    State& s = H::state_of(h);
    *buf = uv_buf_init(s.buffer.get(), static_cast<unsigned>(s.buffer_size));
  }
  static void on_read(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
    if (n == 0) return;  // nothing read (EAGAIN)
    State& s = H::state_of(st);
    if (n < 0) return s.on_read(static_cast<int>(n), std::string_view());
    s.on_read(0, std::string_view(buf->base, static_cast<std::size_t>(n)));
  }
};

class Pipe : public Stream<uv_pipe_t> {
 public:
  Pipe() = default;  // empty
  explicit Pipe(uv_loop_t* loop) {
    (void)h_.init([loop](uv_pipe_t* p) { return uv_pipe_init(loop, p, 0); });  // cannot fail
  }
  // Takes over fd (a socket or pipe end): closing the Pipe closes it.
  int open(uv_file fd) { return h_ ? uv_pipe_open(h_.get(), fd) : UV_EBADF; }
  int bind(const std::string& path) { return h_ ? uv_pipe_bind(h_.get(), path.c_str()) : UV_EBADF; }
};

class Tcp : public Stream<uv_tcp_t> {
 public:
  Tcp() = default;  // empty
  explicit Tcp(uv_loop_t* loop) {
    (void)h_.init([loop](uv_tcp_t* t) { return uv_tcp_init(loop, t); });  // cannot fail
  }
  int bind(const sockaddr* addr, unsigned flags = 0) {
    return h_ ? uv_tcp_bind(h_.get(), addr, flags) : UV_EBADF;
  }
  int nodelay(bool on) { return h_ ? uv_tcp_nodelay(h_.get(), on ? 1 : 0) : UV_EBADF; }
  // Takes over a socket (one inherited from systemd): closing the Tcp closes it.
  int open(uv_os_sock_t sock) { return h_ ? uv_tcp_open(h_.get(), sock) : UV_EBADF; }
  int peer(sockaddr_storage* addr) const {
    int len = sizeof *addr;
    return h_ ? uv_tcp_getpeername(h_.get(), reinterpret_cast<sockaddr*>(addr), &len) : UV_EBADF;
  }
  int local(sockaddr_storage* addr) const {
    int len = sizeof *addr;
    return h_ ? uv_tcp_getsockname(h_.get(), reinterpret_cast<sockaddr*>(addr), &len) : UV_EBADF;
  }
  // One connect at a time; fn(status) does not run once the Tcp is closed.
  int connect(const sockaddr* addr, std::function<void(int status)> fn) {
    if (!h_) return UV_EBADF;
    State& s = *h_.state();
    s.on_connect.set(std::move(fn));
    return uv_tcp_connect(&s.connect_req, h_.get(), addr,
                          [](uv_connect_t* req, int status) { H::state_of(req->handle).on_connect(status); });
  }
};

}  // namespace spoold::uv
