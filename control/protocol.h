// control/protocol.h — what spoold and spoolctl agree on for the control socket (docs/control-protocol.md).
// One request per line, one response per line, both JSON objects:
//   → {"cmd":"status"}            ← {"ok":true, ...}
//   → {"cmd":"flush","tier":1}    ← {"ok":false,"error":"..."}
// Rule: ctl/ and daemon/ both depend on this; neither depends on the other.
#pragma once

#include <chrono>
#include <string>
#include <utility>

#include "common/result.h"
#include "control/json.h"

namespace spoold::control {

// Longest request or response line accepted; a peer sending more is cut off.
inline constexpr size_t kMaxLine = 4 * 1024 * 1024;

Json ok_response();
Json error_response(const std::string& message);

// A blocking client connection: one request line out, then lines in (one answer, or a stream
// for `watch`). Errors carry errno in Error::code: ENOENT/ECONNREFUSED when nobody listens,
// ETIMEDOUT when a line did not come in time, ECONNRESET when the daemon closed.
class Connection {
 public:
  static Result<Connection> open(const std::string& socket_path);
  Connection(Connection&& o) noexcept : fd_(std::exchange(o.fd_, -1)), in_(std::move(o.in_)) {}
  Connection& operator=(Connection&&) = delete;
  Connection(const Connection&) = delete;
  ~Connection();
  Result<void> send(const Json& request);
  // The next line as JSON, waiting at most `timeout`.
  Result<Json> read(std::chrono::milliseconds timeout);
  int fd() const { return fd_; }

 private:
  explicit Connection(int fd) : fd_(fd) {}
  int fd_ = -1;
  std::string in_;
};

// Blocking client call used by spoolctl: connect, send one line, read one line.
// Fails (with errno in Error::code) when the socket is absent or nobody listens (ECONNREFUSED/ENOENT).
Result<Json> call(const std::string& socket_path, const Json& request,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace spoold::control
