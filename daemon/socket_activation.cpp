// daemon/socket_activation.cpp — see socket_activation.h.
#include "daemon/socket_activation.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>
#include <cstring>
#include <string_view>

namespace spoold::daemon {

namespace {

std::optional<long> number(const char* s) {
  if (!s || !*s) return std::nullopt;
  std::string_view v(s);
  long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < 0) return std::nullopt;
  return n;
}

}  // namespace

std::vector<int> listen_fds(const char* listen_pid, const char* listen_fds, pid_t self) {
  auto pid = number(listen_pid);
  auto n = number(listen_fds);
  std::vector<int> fds;
  if (!pid || !n || *pid != static_cast<long>(self) || *n > 1024) return fds;
  for (long i = 0; i < *n; ++i) fds.push_back(kListenFdsStart + static_cast<int>(i));
  // Not passed on to anything this process runs.
  for (int fd : fds) (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fds;
}

std::optional<BoundAddress> bound_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  BoundAddress b;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    b.port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    b.port = ntohs(a->sin6_port);
  } else {
    return std::nullopt;
  }
  b.ip = buf;
  return b;
}

bool listening_socket(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on != 0;
}

bool serves(const BoundAddress& bound, const std::string& host, int port) {
  if (bound.port != port) return false;
  if (host.empty()) return bound.ip == "0.0.0.0" || bound.ip == "::";
  return bound.ip == host;
}

}  // namespace spoold::daemon
