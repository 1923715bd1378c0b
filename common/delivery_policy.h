// common/delivery_policy.h — the delivery choices that config/ reads and smtp/ and dns/ act on: the
// TLS policy, the AUTH mechanism, the address family tried first. The one home of each enum, of
// its name (to_string, for logs) and of the spellings the configuration accepts (the *_names
// tables, parse_*). config/, smtp/ and dns/ name these very types (config::TlsPolicy,
// smtp::TlsPolicy, ... are using-declarations of them), so the daemon passes them on unmapped.
// Rule: spellings are exact (case-sensitive, as the configuration has always taken them); a value
// the configuration cannot spell (AuthMechanism::none) is in no table, and parse_* never yields it.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace spoold {

// One spelling of an enum value.
template <class E>
struct EnumName {
  std::string_view name;
  E value;
};

// The spelling of v in names, or "?" when names has none.
template <class E, std::size_t N>
constexpr std::string_view name_in(const EnumName<E> (&names)[N], E v) {
  for (const auto& n : names)
    if (n.value == v) return n.name;
  return "?";
}

// The value spelled exactly `text` in names, or nullopt.
template <class E, std::size_t N>
constexpr std::optional<E> value_in(const EnumName<E> (&names)[N], std::string_view text) {
  for (const auto& n : names)
    if (n.name == text) return n.value;
  return std::nullopt;
}

// delivery.tls. none: never STARTTLS. opportunistic: STARTTLS when offered, certificate not
// checked, plaintext if not offered. required: STARTTLS must be offered (else temporary failure),
// not verified. verify: like required, and the certificate must verify for the TLS host name.
enum class TlsPolicy { none, opportunistic, required, verify };

inline constexpr EnumName<TlsPolicy> tls_policy_names[] = {
    {"none", TlsPolicy::none},
    {"opportunistic", TlsPolicy::opportunistic},
    {"required", TlsPolicy::required},
    {"verify", TlsPolicy::verify},
};

constexpr std::string_view to_string(TlsPolicy p) {
  return name_in(tls_policy_names, p);
}

constexpr std::optional<TlsPolicy> parse_tls_policy(std::string_view text) {
  return value_in(tls_policy_names, text);
}

// dns.address_preference: which address family is tried first for one host. any: both families
// interleaved, starting with a randomly chosen one (Postfix "any").
enum class AddressPreference { any, ipv4, ipv6 };

inline constexpr EnumName<AddressPreference> address_preference_names[] = {
    {"any", AddressPreference::any},
    {"ipv4", AddressPreference::ipv4},
    {"ipv6", AddressPreference::ipv6},
};

constexpr std::string_view to_string(AddressPreference p) {
  return name_in(address_preference_names, p);
}

constexpr std::optional<AddressPreference> parse_address_preference(std::string_view text) {
  return value_in(address_preference_names, text);
}

// The SASL mechanism of AUTH (RFC 4954). none: no AUTH at all — a relay server without an `auth:`
// block, which is how the configuration says it (`mechanism: none` is no spelling). automatic: the
// best mechanism the server offers (smtp/auth.h choose()).
enum class AuthMechanism { none, automatic, plain, login, cram_md5, xoauth2 };

// The spellings of relays.*.servers[].auth.mechanism, in the order its error message lists them.
inline constexpr EnumName<AuthMechanism> auth_mechanism_names[] = {
    {"auto", AuthMechanism::automatic},  {"plain", AuthMechanism::plain},
    {"login", AuthMechanism::login},     {"cram-md5", AuthMechanism::cram_md5},
    {"xoauth2", AuthMechanism::xoauth2},
};

// The configuration's spelling; "none" for none.
constexpr std::string_view to_string(AuthMechanism m) {
  return m == AuthMechanism::none ? "none" : name_in(auth_mechanism_names, m);
}

constexpr std::optional<AuthMechanism> parse_auth_mechanism(std::string_view text) {
  return value_in(auth_mechanism_names, text);
}

// The mechanism's name in the AUTH command and in EHLO's AUTH keyword ("PLAIN", "CRAM-MD5");
// "" for none and automatic, which name no mechanism on the wire.
constexpr std::string_view sasl_name(AuthMechanism m) {
  switch (m) {
    case AuthMechanism::plain:
      return "PLAIN";
    case AuthMechanism::login:
      return "LOGIN";
    case AuthMechanism::cram_md5:
      return "CRAM-MD5";
    case AuthMechanism::xoauth2:
      return "XOAUTH2";
    case AuthMechanism::none:
    case AuthMechanism::automatic:
      break;
  }
  return "";
}

}  // namespace spoold
