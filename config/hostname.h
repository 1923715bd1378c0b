// config/hostname.h — the default of `hostname`: /etc/mailname (Debian's name for "the domain
// this host's mail comes from"), else the canonical FQDN of gethostname(), else the short name.
// Rule: the lookup is split so its decisions are pure and testable: the file path is a parameter
// and the FQDN choice is a function of the candidate names.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace spoold::config {

struct DefaultHostname {
  std::string name;
  // Non-empty when only an unqualified name was found (the daemon logs it once): mail to
  // user@name is not routable from elsewhere and bounces come from an odd domain.
  std::string warning;
};

// The first line of `path`, white space trimmed; nullopt when the file is missing, unreadable,
// or that line is empty or not a domain name.
std::optional<std::string> read_mailname(const std::string& path);

// The first of `candidates` that is qualified (has a dot inside it), else "".
std::string first_qualified(const std::vector<std::string>& candidates);

// mailname_path's first line; else gethostname() when it has a dot; else the first qualified
// canonical name getaddrinfo(AI_CANONNAME) gives for it; else gethostname() (or "localhost")
// with a warning.
DefaultHostname default_hostname(const std::string& mailname_path = "/etc/mailname");

}  // namespace spoold::config
