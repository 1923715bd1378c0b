// daemon/socket_activation.h — the listening sockets systemd passes (the sd_listen_fds(3)
// protocol, read without libsystemd): LISTEN_PID names us, LISTEN_FDS counts them from fd 3.
// Rule: the environment is checked, never trusted blindly (another process's LISTEN_FDS is
// ignored), and each inherited socket serves the listen[] entry bound to the same address; the
// decisions are pure functions so they are table-tested.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace spoold::daemon {

inline constexpr int kListenFdsStart = 3;

// The inherited fds: [3, 3 + LISTEN_FDS) when LISTEN_PID equals `self`; none otherwise or when
// either value is malformed (then the caller binds its own sockets).
std::vector<int> listen_fds(const char* listen_pid, const char* listen_fds, pid_t self);

// Where a socket is bound: "127.0.0.1", "::1", "0.0.0.0", "::" and its port.
struct BoundAddress {
  std::string ip;
  int port = 0;
};
std::optional<BoundAddress> bound_address(int fd);  // getsockname of a listening TCP socket
bool listening_socket(int fd);                      // a socket in the listening state (SO_ACCEPTCONN)

// Whether a socket bound to `bound` serves a listen[] entry with `host` ("" = every address) and
// `port`.
bool serves(const BoundAddress& bound, const std::string& host, int port);

}  // namespace spoold::daemon
