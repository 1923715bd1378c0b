// daemon/bounce_class.cpp — see bounce_class.h.
#include "daemon/bounce_class.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

namespace spoold::daemon {

const char* to_string(BounceType t) {
  switch (t) {
    case BounceType::none:
      return "none";
    case BounceType::hard:
      return "hard";
    case BounceType::soft:
      return "soft";
  }
  return "none";
}

const char* to_string(BounceCategory c) {
  switch (c) {
    case BounceCategory::none:
      return "none";
    case BounceCategory::mailbox_unknown:
      return "mailbox_unknown";
    case BounceCategory::mailbox_full:
      return "mailbox_full";
    case BounceCategory::policy:
      return "policy";
    case BounceCategory::dns:
      return "dns";
    case BounceCategory::tls:
      return "tls";
    case BounceCategory::timeout:
      return "timeout";
    case BounceCategory::other:
      return "other";
  }
  return "other";
}

namespace {

bool contains_word(const std::string& lower, std::string_view w) {
  return lower.find(w) != std::string::npos;
}

// The subject.detail of an enhanced code ("5.1.1" → "1.1"); "" when it is none.
std::string_view subject_detail(std::string_view dsn) {
  if (dsn.size() < 5 || (dsn[0] != '4' && dsn[0] != '5') || dsn[1] != '.') return {};
  return dsn.substr(2);
}

BounceCategory by_code(std::string_view sd) {
  // RFC 3463 §3.2 (addressing), §3.3 (mailbox), §3.5 (network and routing), §3.8 (security);
  // X.7.25-X.7.29 and X.7.10-X.7.11 from the IANA registry (RFC 7372, RFC 5248).
  struct Row {
    std::string_view code;
    BounceCategory category;
  };
  static constexpr std::array<Row, 22> kRows{{
      {"1.1", BounceCategory::mailbox_unknown},   // bad destination mailbox address
      {"1.6", BounceCategory::mailbox_unknown},   // destination mailbox has moved
      {"1.10", BounceCategory::mailbox_unknown},  // recipient address has null MX
      {"2.1", BounceCategory::mailbox_unknown},   // mailbox disabled, not accepting messages
      {"2.2", BounceCategory::mailbox_full},      // mailbox full
      {"3.1", BounceCategory::mailbox_full},      // mail system full
      {"1.2", BounceCategory::dns},               // bad destination system address
      {"4.3", BounceCategory::dns},               // directory server failure (DNS)
      {"4.4", BounceCategory::dns},               // unable to route
      {"4.1", BounceCategory::timeout},           // no answer from host
      {"4.2", BounceCategory::timeout},           // bad connection
      {"4.7", BounceCategory::timeout},           // delivery time expired
      {"7.1", BounceCategory::policy},            // delivery not authorized, message refused
      {"7.2", BounceCategory::policy},            // mailing list expansion prohibited
      {"7.7", BounceCategory::policy},            // message integrity failure
      {"7.25", BounceCategory::policy},           // reverse DNS validation failed
      {"7.26", BounceCategory::policy},           // multiple authentication checks failed
      {"7.27", BounceCategory::policy},           // sender address has null MX
      {"7.4", BounceCategory::tls},               // security features not supported
      {"7.5", BounceCategory::tls},               // cryptographic failure
      {"7.10", BounceCategory::tls},              // encryption needed
      {"7.11", BounceCategory::tls},              // encryption required for the mechanism
  }};
  for (const auto& r : kRows)
    if (r.code == sd) return r.category;
  return BounceCategory::other;
}

}  // namespace

BounceClass classify_bounce(std::string_view status, std::string_view dsn, std::string_view reason) {
  BounceClass c;
  if (status == "sent") return c;
  c.type = status == "bounced" ? BounceType::hard : BounceType::soft;
  std::string lower(reason);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  c.category = by_code(subject_detail(dsn));
  // Codes that say little are refined by the text, as senders' bounce processors do.
  if (c.category == BounceCategory::other || c.category == BounceCategory::policy) {
    if (contains_word(lower, "tls") || contains_word(lower, "starttls") ||
        contains_word(lower, "certificate"))
      c.category = BounceCategory::tls;
    else if (contains_word(lower, "spam") || contains_word(lower, "blocklist") ||
             contains_word(lower, "blacklist") || contains_word(lower, "reputation") ||
             contains_word(lower, "spamhaus"))
      c.category = BounceCategory::policy;
    else if (c.category == BounceCategory::other && contains_word(lower, "timeout"))
      c.category = BounceCategory::timeout;
  }
  return c;
}

}  // namespace spoold::daemon
