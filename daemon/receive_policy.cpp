// daemon/receive_policy.cpp — see receive_policy.h.
#include "daemon/receive_policy.h"

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

smtp::server::Verdict rcpt_policy(const RcptContext& ctx, std::string_view sender, std::string_view address) {
  // The spool stores ASCII envelopes only, until its format carries SMTPUTF8: refuse rather than
  // accept what could not be queued (RFC 6531 §3.5 names this code).
  if (!mailbox::is_ascii(sender) || !mailbox::is_ascii(address))
    return {553, "5.6.7", "Non-ASCII addresses are not accepted here"};
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

std::string client_ip_literal(std::string_view ip, bool received) {
  if (received && ip.find(':') != std::string_view::npos) return "IPv6:" + std::string(ip);
  return std::string(ip);
}

}  // namespace spoold::daemon
