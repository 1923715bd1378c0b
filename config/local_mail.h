// config/local_mail.h — which recipients are this host's, and where their mail goes.
// Mail to a bare name, to name@hostname or to name@localhost (case-insensitive) is local: its
// aliases, then admin_address, else it bounces 5.1.1. Rule: pure (no I/O); a recipient has one
// outcome, so an expansion is all or nothing: when any branch cannot be delivered (an unaliased
// name without admin_address, a loop, too deep) the whole recipient bounces with that reason.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/aliases.h"

namespace spoold::config {

struct Config;

// How deep aliases may nest (sendmail stops at 10, Postfix's local(8) at 100): deeper is taken
// for a loop the walk could not see.
inline constexpr int kMaxAliasDepth = 20;

// The lower-case local name of `address` when it is local, else nullopt. A quoted local part
// that is a plain dot-string ("Root"@localhost) is the same name unquoted (RFC 5321 §4.1.2).
std::optional<std::string> local_name(std::string_view address, std::string_view hostname);

struct LocalRules {
  std::string_view hostname;
  const AliasMap* aliases = nullptr;  // nullptr = none
  std::string_view admin_address;     // "" = bounce local mail without an alias
};
// The rules of a loaded Config (which must outlive them).
LocalRules local_rules(const Config& config);

struct Resolution {
  bool local = false;
  // Where the mail goes: the recipient itself when it is not local; else its expansion (only
  // non-local mailboxes, duplicates removed, first seen first). Empty when it bounces.
  std::vector<std::string> addresses;
  std::string dsn;     // "" = deliver; "5.1.1" no local delivery, "5.4.6" alias loop or too deep
  std::string reason;  // for the log line and the DSN, e.g. "alias loop: a -> b -> a"
  bool bounces() const { return !dsn.empty(); }
};

Resolution resolve_recipient(std::string_view recipient, const LocalRules& rules);

}  // namespace spoold::config
