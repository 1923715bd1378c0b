// control/protocol.cpp — blocking unix-socket client for spoolctl (the daemon side lives in daemon/).
#include "control/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace spoold::control {
namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Json ok_response() {
  return Json().set("ok", true);
}

Json error_response(const std::string& message) {
  return Json().set("ok", false).set("error", message);
}

Result<Json> call(const std::string& socket_path, const Json& request, std::chrono::milliseconds timeout) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path) return make_error("control socket path too long");
  std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Fd s;
  s.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s.fd < 0) return make_error(fmt::format("socket: {}", std::strerror(errno)), errno);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return make_error(fmt::format("{}: {}", socket_path, std::strerror(errno)), errno);
  std::string line = request.dump() + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(s.fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(fmt::format("send: {}", std::strerror(errno)), errno);
    off += static_cast<size_t>(n);
  }
  std::string in;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return make_error("timed out waiting for the daemon's answer", ETIMEDOUT);
    pollfd p{s.fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[65536];
    ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(fmt::format("recv: {}", std::strerror(errno)), errno);
    if (n == 0) return make_error("the daemon closed the connection without answering", ECONNRESET);
    in.append(buf, static_cast<size_t>(n));
    auto nl = in.find('\n');
    if (nl != std::string::npos) return Json::parse(std::string_view(in).substr(0, nl));
    if (in.size() > kMaxLine) return make_error("answer too long");
  }
}

}  // namespace spoold::control
