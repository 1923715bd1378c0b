// control/protocol.cpp — blocking unix-socket client for spoolctl (the daemon side lives in daemon/).
#include "control/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

namespace spoold::control {

Json ok_response() {
  return Json().set("ok", true);
}

Json error_response(const std::string& message) {
  return Json().set("ok", false).set("error", message);
}

Result<Connection> Connection::open(const std::string& socket_path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path) return make_error("control socket path too long");
  std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Connection c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (c.fd_ < 0) return make_error(fmt::format("socket: {}", std::strerror(errno)), errno);
  if (::connect(c.fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return make_error(fmt::format("{}: {}", socket_path, std::strerror(errno)), errno);
  return c;
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

Result<void> Connection::send(const Json& request) {
  std::string line = request.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(fmt::format("send: {}", std::strerror(errno)), errno);
    off += static_cast<size_t>(n);
  }
  return {};
}

Result<Json> Connection::read(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto nl = in_.find('\n');
    if (nl != std::string::npos) {
      auto j = Json::parse(std::string_view(in_).substr(0, nl));
      in_.erase(0, nl + 1);
      return j;
    }
    if (in_.size() > kMaxLine) return make_error("answer too long");
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    // A zero timeout still looks at what the socket holds.
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return make_error(fmt::format("poll: {}", std::strerror(errno)), errno);
    if (r == 0) {
      if (left.count() <= 0) return make_error("timed out waiting for the daemon's answer", ETIMEDOUT);
      continue;
    }
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(fmt::format("recv: {}", std::strerror(errno)), errno);
    if (n == 0) return make_error("the daemon closed the connection", ECONNRESET);
    in_.append(buf, static_cast<size_t>(n));
  }
}

Result<Json> call(const std::string& socket_path, const Json& request, std::chrono::milliseconds timeout) {
  auto c = Connection::open(socket_path);
  if (!c) return c.error();
  if (auto r = c->send(request); !r) return r.error();
  auto j = c->read(timeout);
  if (!j && j.error().code == ECONNRESET)
    return make_error("the daemon closed the connection without answering", ECONNRESET);
  return j;
}

}  // namespace spoold::control
