// daemon/control_server.h — the control socket: a unix stream listener speaking JSON lines
// (docs/control-protocol.md). One request per connection, answered by a handler that may reply
// later (after a thread-pool job). Rule: a client that sends more than control::kMaxLine bytes or
// garbage gets an error line and is closed; a slow client never blocks the loop. Destroying the
// server closes its clients too; a reply for a client that is gone is dropped.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "control/json.h"

namespace spoold::daemon {

using Reply = std::function<void(control::Json response)>;
using RequestHandler = std::function<void(const control::Json& request, Reply reply)>;

class ControlServer {
 public:
  ControlServer(uv_loop_t* loop, RequestHandler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds `path` (its directory is created 0755 if missing; a stale socket file is replaced,
  // a live one — another daemon — is an error), mode 0660, and listens.
  Result<void> listen(const std::string& path);
  void close();  // stop listening and remove the socket file

  struct Client;
  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace spoold::daemon
