// daemon/local_mail.cpp — see local_mail.h.
#include "daemon/local_mail.h"

#include <set>

#include "common/ascii.h"

namespace spoold::daemon {

namespace {

// Domains compare without case, local parts as given (RFC 5321 §2.4).
std::string address_key(const std::string& a) {
  auto at = a.rfind('@');
  if (at == std::string::npos) return a;
  return a.substr(0, at + 1) + ascii_lower(a.substr(at + 1));
}

}  // namespace

std::vector<RecipientResult> expand_local(spool::Entry& entry, const config::LocalRules& rules) {
  std::vector<spool::Recipient> out;
  std::vector<RecipientResult> bounces;
  std::set<std::string> seen;
  for (const auto& r : entry.recipients) seen.insert(address_key(r.address));
  for (auto& r : entry.recipients) {
    config::Resolution res;
    if (!r.final()) res = config::resolve_recipient(r.address, rules);
    if (!res.local) {
      out.push_back(std::move(r));
      continue;
    }
    if (res.bounces()) {
      RecipientResult b;
      b.index = out.size();
      b.outcome = smtp::Outcome{smtp::Status::permanent, 0, res.dsn, res.reason, false};
      bounces.push_back(std::move(b));
      out.push_back(std::move(r));
      continue;
    }
    // RFC 3461 §6.2.7.3: an alias keeps the recipient's DSN request (NOTIFY, ORCPT) for each address.
    for (auto& a : res.addresses)
      if (seen.insert(address_key(a)).second)
        out.push_back(spool::Recipient{a, spool::RcptState::pending, 0, "", r.dsn});
  }
  entry.recipients = std::move(out);
  return bounces;
}

}  // namespace spoold::daemon
