// config/hostname.cpp — /etc/mailname, then the FQDN of gethostname(), then the short name.
#include "config/hostname.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "common/mailbox.h"

namespace spoold::config {
namespace {

std::string trim(const std::string& s) {
  auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

bool qualified(const std::string& name) {
  auto dot = name.find('.');
  return dot != std::string::npos && dot > 0 && dot + 1 < name.size();
}

// The canonical names getaddrinfo knows for `host`. Memoized per name: every program that loads
// a config without `hostname:` (sendmail once per message) would otherwise ask the resolver
// again, and an unreachable DNS server makes each ask cost its timeouts.
std::vector<std::string> canonical_names(const std::string& host) {
  static std::mutex mu;
  static std::map<std::string, std::vector<std::string>> memo;
  std::lock_guard lock(mu);
  if (auto it = memo.find(host); it != memo.end()) return it->second;
  std::vector<std::string> names;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_CANONNAME;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0) {
    for (const addrinfo* ai = res; ai; ai = ai->ai_next)
      if (ai->ai_canonname && *ai->ai_canonname) names.emplace_back(ai->ai_canonname);
    ::freeaddrinfo(res);
  }
  memo[host] = names;
  return names;
}

}  // namespace

std::optional<std::string> read_mailname(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  line = trim(line);
  if (line.empty() || !mailbox::detail::valid_domain_name(line, false)) return std::nullopt;
  return line;
}

std::string first_qualified(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (qualified(c)) return c;
  return "";
}

DefaultHostname default_hostname(const std::string& mailname_path) {
  if (auto name = read_mailname(mailname_path)) return {*name, ""};
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0])
    return {"localhost", fmt::format("hostname: {} is missing and gethostname() failed; using 'localhost' "
                                     "(set hostname: in the config)",
                                     mailname_path)};
  std::string shortname = buf;
  // A name with a dot is taken as it is: asking the resolver would only cost time.
  if (qualified(shortname)) return {shortname, ""};
  if (auto fqdn = first_qualified(canonical_names(shortname)); !fqdn.empty()) return {fqdn, ""};
  return {shortname, fmt::format("hostname: {} is missing and '{}' has no domain (no FQDN from "
                                 "getaddrinfo); using '{}' (set hostname: in the config)",
                                 mailname_path, shortname, shortname)};
}

}  // namespace spoold::config
