// daemon/bounce_class.h — what kind of failure an outcome is, for applications that act on
// outcomes (hooks.on_outcome, spoolctl watch): hard or soft, and a category, from the enhanced
// status code (RFC 3463) and the reply text. Pure, table-tested; the table is in
// docs/design.md ("Bounce classification").
// Rule: the enhanced code decides where it is specific; the text only refines the codes that say
// little (X.0.0, X.7.1 and the like: "spam", "TLS"); anything else is "other", never a guess.
#pragma once

#include <string_view>

namespace spoold::daemon {

enum class BounceType { none, hard, soft };  // none: sent; hard: permanent; soft: temporary
enum class BounceCategory { none, mailbox_unknown, mailbox_full, policy, dns, tls, timeout, other };

const char* to_string(BounceType t);
const char* to_string(BounceCategory c);

struct BounceClass {
  BounceType type = BounceType::none;
  BounceCategory category = BounceCategory::none;
};

// `status` is the log's: sent, deferred, bounced or expired; `dsn` the enhanced code ("5.1.1");
// `reason` the server's reply or spoold's own text.
BounceClass classify_bounce(std::string_view status, std::string_view dsn, std::string_view reason);

}  // namespace spoold::daemon
