// config/network.cpp — the address syntax of listen[]: listener addresses ("127.0.0.1:25",
// "[::1]:25", "25") and relay_from networks (CIDR), and matching a client address against them.
// Rule: pure functions of text; IP literals only (never a name lookup); anything not fully
// understood is refused, and a network with host bits set beyond its prefix is an error.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "config/config.h"

namespace spoold::config {
namespace {

using Bytes = std::array<std::uint8_t, 16>;

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// ::ffff:0:0/96, the IPv4-mapped IPv6 addresses.
bool mapped(const Bytes& b) {
  for (int i = 0; i < 10; ++i)
    if (b[i] != 0) return false;
  return b[10] == 0xff && b[11] == 0xff;
}

bool parse_v4(const std::string& s, Bytes& out) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  out = {};
  out[10] = out[11] = 0xff;
  std::memcpy(out.data() + 12, &a, 4);
  return true;
}

bool parse_v6(const std::string& s, Bytes& out) {
  in6_addr a{};
  if (inet_pton(AF_INET6, s.c_str(), &a) != 1) return false;
  std::memcpy(out.data(), &a, 16);
  return true;
}

// Whether the first `bits` bits of a and b are equal.
bool same_prefix(const Bytes& a, const Bytes& b, int bits) {
  int whole = bits / 8, rest = bits % 8;
  if (!std::equal(a.begin(), a.begin() + whole, b.begin())) return false;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

Bytes masked(Bytes b, int bits) {
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(bits - i * 8, 0, 8);
    b[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  return b;
}

std::string v4_text(const Bytes& b) {
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, b.data() + 12, buf, sizeof buf);
  return buf;
}

std::string v6_text(const Bytes& b) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
  return buf;
}

void say(std::string* why, std::string text) {
  if (why) *why = std::move(text);
}

}  // namespace

bool Network::contains(const std::string& ip) const {
  std::string s = ip;
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (auto pct = s.find('%'); pct != std::string::npos) s.resize(pct);  // fe80::1%eth0
  Bytes b{};
  if (!parse_v4(s, b) && !parse_v6(s, b)) return false;
  // An IPv4 client is only in networks inside ::ffff:0:0/96 (IPv4 ones and mapped IPv6 ones).
  if (mapped(b) && (prefix < 96 || !mapped(address))) return false;
  return same_prefix(address, b, prefix);
}

std::string Network::to_string() const {
  if (v4) return v4_text(address) + "/" + std::to_string(prefix - 96);
  return v6_text(address) + "/" + std::to_string(prefix);
}

std::optional<Network> parse_network(const std::string& text, std::string* why) {
  std::string addr = text, bits;
  if (auto slash = text.find('/'); slash != std::string::npos) {
    addr = text.substr(0, slash);
    bits = text.substr(slash + 1);
    if (!all_digits(bits) || bits.size() > 3) {
      say(why, "has a bad prefix length (use e.g. 10.0.0.0/8 or 2001:db8::/32)");
      return std::nullopt;
    }
  }
  bool bracketed = addr.size() >= 2 && addr.front() == '[' && addr.back() == ']';
  if (bracketed) addr = addr.substr(1, addr.size() - 2);
  Network n;
  int max_bits = 0;
  if (!bracketed && parse_v4(addr, n.address)) {
    n.v4 = true;
    max_bits = 32;
  } else if (parse_v6(addr, n.address)) {
    max_bits = 128;
  } else {
    say(why, "is not an IPv4 or IPv6 address or network");
    return std::nullopt;
  }
  int len = bits.empty() ? max_bits : std::stoi(bits);
  if (len > max_bits) {
    say(why, "has a prefix length over /" + std::to_string(max_bits));
    return std::nullopt;
  }
  n.prefix = n.v4 ? len + 96 : len;
  Bytes net = masked(n.address, n.prefix);
  if (net != n.address) {
    Network fixed = n;
    fixed.address = net;
    say(why,
        "has host bits set beyond /" + std::to_string(len) + " (the network is " + fixed.to_string() + ")");
    return std::nullopt;
  }
  return n;
}

std::string ListenAddress::to_string() const {
  if (host.empty()) return "*:" + std::to_string(port);
  if (ipv6()) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string* why) {
  ListenAddress a;
  std::string host, port;
  if (all_digits(text)) {
    port = text;
  } else if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    Bytes b{};
    if (close == std::string::npos || !parse_v6(text.substr(1, close - 1), b)) {
      say(why, "is not [IPv6 address]:port");
      return std::nullopt;
    }
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      say(why, "needs a port, e.g. [::1]:25");
      return std::nullopt;
    }
    host = v6_text(b);
    port = text.substr(close + 2);
  } else {
    auto colons = std::count(text.begin(), text.end(), ':');
    Bytes b{};
    if (colons > 1) {
      say(why, "needs brackets around an IPv6 address, e.g. [::1]:25");
      return std::nullopt;
    }
    if (colons == 0) {
      say(why, parse_v4(text, b) ? "needs a port, e.g. 127.0.0.1:25"
                                 : "is not an IP address with a port, e.g. 127.0.0.1:25");
      return std::nullopt;
    }
    auto colon = text.find(':');
    if (!parse_v4(text.substr(0, colon), b)) {
      say(why, "is not an IP address with a port (host names are not accepted), e.g. 127.0.0.1:25");
      return std::nullopt;
    }
    host = v4_text(b);
    port = text.substr(colon + 1);
  }
  if (!all_digits(port) || port.size() > 5 || std::stoi(port) < 1 || std::stoi(port) > 65535) {
    say(why, "has a bad port (1 to 65535)");
    return std::nullopt;
  }
  a.host = host;
  a.port = std::stoi(port);
  return a;
}

bool Listener::relay_allowed(const std::string& ip) const {
  return std::any_of(relay_from.begin(), relay_from.end(), [&](const Network& n) { return n.contains(ip); });
}

}  // namespace spoold::config
