// config/local_mail.cpp — the local-recipient resolver: aliases, then admin_address, else 5.1.1.
#include "config/local_mail.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "common/ascii.h"
#include "common/mailbox.h"
#include "config/config.h"

namespace spoold::config {
namespace {

class Walker {
 public:
  explicit Walker(const LocalRules& rules) : rules_(rules) {}

  Resolution run(const std::string& name) {
    Resolution r;
    r.local = true;
    if (expand(name, 0, false)) {
      r.addresses = std::move(out_);
    } else {
      r.dsn = dsn_;
      r.reason = reason_;
    }
    return r;
  }

 private:
  bool fail(const char* dsn, std::string reason) {
    dsn_ = dsn;
    reason_ = std::move(reason);
    return false;
  }

  // Addresses are the same when their local parts are equal and their domains equal without case.
  void add(const std::string& address) {
    auto at = address.rfind('@');
    std::string key =
        at == std::string::npos ? address : address.substr(0, at) + ascii_lower(address.substr(at));
    if (seen_.insert(key).second) out_.push_back(address);
  }

  const std::vector<std::string>* lookup(const std::string& name) const {
    if (!rules_.aliases) return nullptr;
    auto it = rules_.aliases->find(name);
    return it == rules_.aliases->end() ? nullptr : &it->second;
  }

  bool expand(const std::string& name, int depth, bool via_admin) {
    const auto* targets = lookup(name);
    if (!targets) return unaliased(name, depth, via_admin);
    if (done_.count(name)) return true;  // reached again by another branch: already in out_
    if (depth > kMaxAliasDepth)
      return fail("5.4.6", fmt::format("aliases nested deeper than {} levels at '{}'", kMaxAliasDepth, name));
    path_.push_back(name);
    for (const auto& t : *targets) {
      auto next = local_name(t, rules_.hostname);
      if (!next) {
        add(t);
        continue;
      }
      // A name on the current path closes a loop; `root: root` is one too: there is no local
      // mailbox it could mean, and sending it to admin_address would hand root's mail to
      // someone the alias does not name.
      if (auto p = std::find(path_.begin(), path_.end(), *next); p != path_.end()) {
        std::string chain;
        for (; p != path_.end(); ++p) chain += *p + " -> ";
        return fail("5.4.6", "alias loop: " + chain + *next);
      }
      if (!expand(*next, depth + 1, via_admin)) return false;
    }
    path_.pop_back();
    done_.insert(name);
    return true;
  }

  // A local name without an alias goes to admin_address, which is added once however many such
  // names the expansion meets. An admin_address that is itself local is expanded through the
  // aliases, and must end at mailboxes there: it never falls back on itself.
  bool unaliased(const std::string& name, int depth, bool via_admin) {
    if (rules_.admin_address.empty())
      return fail("5.1.1", fmt::format("no local delivery for '{}' (no alias, no admin_address)", name));
    if (via_admin)
      return fail("5.1.1", fmt::format("no local delivery for '{}' (admin_address <{}> is local and "
                                       "ends at a name without an alias)",
                                       name, rules_.admin_address));
    if (admin_added_) return true;
    admin_added_ = true;
    std::string admin(rules_.admin_address);
    if (auto local = local_name(admin, rules_.hostname)) return expand(*local, depth + 1, true);
    add(admin);
    return true;
  }

  const LocalRules& rules_;
  std::vector<std::string> out_;
  std::set<std::string> seen_;  // add()'s keys
  std::set<std::string> done_;  // names fully expanded
  std::vector<std::string> path_;
  bool admin_added_ = false;
  std::string dsn_, reason_;
};

}  // namespace

std::optional<std::string> local_name(std::string_view address, std::string_view hostname) {
  std::string_view local = address;
  if (auto at = address.rfind('@'); at != std::string_view::npos) {
    std::string_view domain = address.substr(at + 1);
    bool ours = ascii_iequals(domain, "localhost") || (!hostname.empty() && ascii_iequals(domain, hostname));
    if (!ours) return std::nullopt;
    local = address.substr(0, at);
  }
  if (local.size() >= 2 && local.front() == '"' && local.back() == '"') {
    std::string_view inner = local.substr(1, local.size() - 2);
    if (mailbox::valid_dot_string(inner)) local = inner;
  }
  return ascii_lower(local);
}

LocalRules local_rules(const Config& c) {
  return LocalRules{c.hostname, &c.aliases, c.admin_address};
}

Resolution resolve_recipient(std::string_view recipient, const LocalRules& rules) {
  auto name = local_name(recipient, rules.hostname);
  if (!name) {
    Resolution r;
    r.addresses.emplace_back(recipient);
    return r;
  }
  return Walker(rules).run(*name);
}

}  // namespace spoold::config
