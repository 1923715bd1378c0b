// config/bind_address.cpp — bind_address (delivery, routes[]): one local source address per
// address family, each an address this host has.
// Rule: checked when the configuration is loaded, so a typo or an address moved to another host
// is a config error naming the key, not a connection failure for every message later.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "config/config.h"

namespace spoold::config {

const std::string& BindAddress::for_peer(const std::string& ip) const {
  return ip.find(':') != std::string::npos ? v6 : v4;
}

std::string BindAddress::to_string() const {
  if (v4.empty() || v6.empty()) return v4 + v6;
  return v4 + ", " + v6;
}

std::string add_bind_address(BindAddress& b, const std::string& ip) {
  in_addr a4{};
  in6_addr a6{};
  bool v6 = inet_pton(AF_INET, ip.c_str(), &a4) != 1;
  if (v6 && inet_pton(AF_INET6, ip.c_str(), &a6) != 1) return "'" + ip + "' is not an IPv4 or IPv6 address";
  std::string& slot = v6 ? b.v6 : b.v4;
  if (!slot.empty())
    return std::string("a second ") + (v6 ? "IPv6" : "IPv4") + " address; give one per family";
  // Binding a datagram socket to the address (port 0, never sent on) is how the kernel says
  // whether this host has it: EADDRNOTAVAIL when it does not.
  UniqueFd s(::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return std::string("cannot check '") + ip + "': " + std::strerror(errno);
  int r = 0;
  if (v6) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = a6;
    r = ::bind(s.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  } else {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr = a4;
    r = ::bind(s.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  }
  if (r != 0) {
    if (errno == EADDRNOTAVAIL) return "'" + ip + "' is not an address of this host";
    return std::string("cannot use '") + ip + "': " + std::strerror(errno);
  }
  slot = ip;
  return "";
}

}  // namespace spoold::config
