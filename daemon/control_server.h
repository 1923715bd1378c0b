// daemon/control_server.h — the control socket: a unix stream listener speaking JSON lines
// (docs/control-protocol.md). One request per connection, answered by a handler that may reply
// later (after a thread-pool job). Rule: a client that sends more than control::kMaxLine bytes or
// garbage gets an error line and is closed; a slow client never blocks the loop. Destroying the
// server closes its clients too; a reply for a client that is gone is dropped.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "control/json.h"

namespace spoold::daemon {

class ControlStream;

// The answer to one request: call it once with the response, and the connection closes after it;
// or call stream() once instead, to send the response and keep the connection for more lines.
class Reply {
 public:
  Reply() = default;
  Reply(std::function<void(control::Json)> send,
        std::function<std::shared_ptr<ControlStream>(control::Json)> stream)
      : send_(std::move(send)), stream_(std::move(stream)) {}
  void operator()(const control::Json& response) const {
    if (send_) send_(response);
  }
  // nullptr when the client or the server is gone already.
  std::shared_ptr<ControlStream> stream(const control::Json& first) const {
    return stream_ ? stream_(first) : nullptr;
  }

 private:
  std::function<void(control::Json)> send_;
  std::function<std::shared_ptr<ControlStream>(control::Json)> stream_;
};
using RequestHandler = std::function<void(const control::Json& request, Reply reply)>;

// A client kept open after its response (`watch`). Rule: a line is written only while less than
// kMaxQueued bytes wait for the client; others are dropped and counted, and the next line that
// fits is preceded by {"event":"lost","count":N}, so a client that stops reading costs the daemon
// at most that much memory and never slows it.
class ControlStream {
 public:
  static constexpr std::size_t kMaxQueued = 1024 * 1024;
  virtual ~ControlStream() = default;
  virtual bool open() const = 0;  // false once the client hung up or the server closed
  virtual void send(const control::Json& line) = 0;
  virtual std::uint64_t lost() const = 0;  // lines dropped so far
};

class ControlServer {
 public:
  ControlServer(uv_loop_t* loop, RequestHandler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds `path` (its directory is created 0755 if missing; a stale socket file is replaced,
  // a live one — another daemon — is an error), mode 0660, and listens.
  Result<void> listen(const std::string& path);
  void close();  // stop listening, remove the socket file, end every stream

  struct Client;
  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace spoold::daemon
