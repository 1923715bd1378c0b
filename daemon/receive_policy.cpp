// daemon/receive_policy.cpp — see receive_policy.h.
#include "daemon/receive_policy.h"

#include <arpa/inet.h>

#include <algorithm>

#include "common/ascii.h"
#include "common/mailbox.h"

namespace spoold::daemon {

bool local_postmaster(std::string_view address, std::string_view hostname) {
  if (ascii_iequals(address, "postmaster")) return true;
  auto at = address.rfind('@');
  if (at == std::string_view::npos || !ascii_iequals(address.substr(0, at), "postmaster")) return false;
  std::string_view domain = address.substr(at + 1);
  return ascii_iequals(domain, hostname) || ascii_iequals(domain, "localhost");
}

smtp::server::Verdict rcpt_policy(const RcptContext& ctx, std::string_view address) {
  if (local_postmaster(address, ctx.hostname)) return {250, "2.1.5", "Ok"};
  if (!ctx.relay_allowed && !ctx.authenticated) return {554, "5.7.1", "Relay access denied"};
  return {250, "2.1.5", "Ok"};
}

std::string spool_address(std::string_view address, std::string_view hostname) {
  if (ascii_iequals(address, "postmaster")) return "postmaster@" + std::string(hostname);
  return std::string(address);
}

std::string client_name(std::string_view ip) {
  bool loopback = ip == "::1" || ip.substr(0, 4) == "127." || ip.substr(0, 11) == "::ffff:127.";
  return loopback ? "localhost" : "unknown";
}

bool needs_name_lookup(std::string_view ip) {
  return ip != "127.0.0.1" && ip != "::1" && ip != "::ffff:127.0.0.1";
}

std::string client_ip_literal(std::string_view ip, bool received) {
  if (received && ip.find(':') != std::string_view::npos) return "IPv6:" + std::string(ip);
  return std::string(ip);
}

std::string client_key(std::string_view ip) {
  std::string text(ip.substr(0, ip.find('%')));  // no zone index
  in6_addr a6{};
  if (inet_pton(AF_INET6, text.c_str(), &a6) != 1) return text;
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char buf[INET6_ADDRSTRLEN];
  if (std::equal(kMapped, kMapped + 12, a6.s6_addr))
    return inet_ntop(AF_INET, a6.s6_addr + 12, buf, sizeof buf) ? std::string(buf) : text;
  std::fill(a6.s6_addr + 8, a6.s6_addr + 16, 0);
  if (!inet_ntop(AF_INET6, &a6, buf, sizeof buf)) return text;
  return std::string(buf) + "/64";
}

bool data_too_slow(std::uint64_t elapsed_ms, std::uint64_t bytes, std::uint64_t timeout_ms, int min_rate) {
  if (min_rate <= 0) return false;
  return elapsed_ms > timeout_ms + bytes * 1000 / static_cast<std::uint64_t>(min_rate);
}

}  // namespace spoold::daemon
