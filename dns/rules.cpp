// dns/rules.cpp — the pure delivery rules: MX planning (RFC 5321 §5.1, RFC 7505 null MX, mail
// loop detection), address-family ordering, host:port parsing, name helpers, reverse names. No sockets, no
// loop, randomness only through the caller's generator — so every rule is unit-tested.
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "common/ascii.h"
#include "dns/dns.h"
#include "dns/names.h"

namespace spoold::dns {

std::string_view to_string(Family f) {
  return f == Family::ipv4 ? "ipv4" : "ipv6";
}

std::string_view to_string(Status s) {
  switch (s) {
    case Status::ok:
      return "ok";
    case Status::temporary:
      return "temporary";
    case Status::permanent:
      return "permanent";
    case Status::cancelled:
      return "cancelled";
  }
  return "?";
}

bool same_name(std::string_view a, std::string_view b) {
  if (a.ends_with('.')) a.remove_suffix(1);
  if (b.ends_with('.')) b.remove_suffix(1);
  return ascii_iequals(a, b);
}

namespace {

bool is_root(std::string_view host) {
  return host.empty() || host == ".";
}

// Equal preferences are shuffled so load spreads over equal MX hosts (RFC 5321 §5.1).
void shuffle_equal_preferences(std::vector<MxRecord>& hosts, std::mt19937& rng) {
  auto first = hosts.begin();
  while (first != hosts.end()) {
    auto last = std::find_if(first, hosts.end(),
                             [&](const MxRecord& r) { return r.preference != first->preference; });
    std::shuffle(first, last, rng);
    first = last;
  }
}

MxPlan fail(Status status, std::string reason) {
  MxPlan p;
  p.status = status;
  p.reason = std::move(reason);
  return p;
}

}  // namespace

MxPlan plan_mx(std::vector<MxRecord> records, std::string_view our_hostname, std::mt19937& rng) {
  // RFC 7505: a single MX whose exchange is the root means "this domain takes no mail".
  if (records.size() == 1 && is_root(records[0].host))
    return fail(Status::permanent, "domain does not accept mail (null MX, RFC 7505)");
  // A root exchange mixed with real hosts is malformed; the real hosts still count.
  std::erase_if(records, [](const MxRecord& r) { return is_root(r.host); });
  if (records.empty()) return fail(Status::permanent, "domain does not accept mail (null MX, RFC 7505)");

  for (auto& r : records) r.host = detail::normalize_name(r.host);  // one spelling per host
  std::stable_sort(records.begin(), records.end(),
                   [](const MxRecord& a, const MxRecord& b) { return a.preference < b.preference; });
  // The same host twice: keep its most preferred entry only.
  std::vector<MxRecord> unique;
  for (auto& r : records)
    if (std::none_of(unique.begin(), unique.end(),
                     [&](const MxRecord& u) { return same_name(u.host, r.host); }))
      unique.push_back(std::move(r));

  // RFC 5321 §5.1: if we are an MX, only strictly more preferred hosts may be used.
  if (!our_hostname.empty()) {
    auto self = std::find_if(unique.begin(), unique.end(),
                             [&](const MxRecord& r) { return same_name(r.host, our_hostname); });
    if (self != unique.end()) {
      int limit = self->preference;
      std::erase_if(unique, [&](const MxRecord& r) { return r.preference >= limit; });
      if (unique.empty())
        return fail(Status::permanent, "MX loops back to us (" + std::string(our_hostname) + ")");
    }
  }
  shuffle_equal_preferences(unique, rng);
  MxPlan plan;
  plan.hosts = std::move(unique);
  return plan;
}

std::vector<Address> order_addresses(std::vector<Address> addrs, AddressPreference pref, std::mt19937& rng) {
  std::vector<Address> v4, v6;
  for (auto& a : addrs) (a.family == Family::ipv4 ? v4 : v6).push_back(std::move(a));
  std::vector<Address> out;
  out.reserve(v4.size() + v6.size());
  auto append = [&out](std::vector<Address>& from) {
    std::move(from.begin(), from.end(), std::back_inserter(out));
  };
  if (pref == AddressPreference::ipv4) {
    append(v4);
    append(v6);
    return out;
  }
  if (pref == AddressPreference::ipv6) {
    append(v6);
    append(v4);
    return out;
  }
  // any: alternate families from a random start, so neither family's outage stalls delivery.
  bool v6_first = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  auto& first = v6_first ? v6 : v4;
  auto& second = v6_first ? v4 : v6;
  for (size_t i = 0; i < std::max(first.size(), second.size()); ++i) {
    if (i < first.size()) out.push_back(std::move(first[i]));
    if (i < second.size()) out.push_back(std::move(second[i]));
  }
  return out;
}

Result<HostPort> parse_host_port(std::string_view text, uint16_t default_port) {
  std::string_view host = text, port;
  if (text.starts_with('[')) {  // [ipv6]:port
    auto close = text.find(']');
    if (close == std::string_view::npos) return make_error("unbalanced '[' in \"" + std::string(text) + "\"");
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (!rest.starts_with(':')) return make_error("junk after ']' in \"" + std::string(text) + "\"");
      port = rest.substr(1);
      if (port.empty()) return make_error("empty port in \"" + std::string(text) + "\"");
    }
  } else if (auto colon = text.find(':');
             colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
    host = text.substr(0, colon);  // exactly one colon: host:port (a bare IPv6 has several)
    port = text.substr(colon + 1);
    if (port.empty()) return make_error("empty port in \"" + std::string(text) + "\"");
  }
  if (host.empty()) return make_error("empty host in \"" + std::string(text) + "\"");
  HostPort out{std::string(host), default_port};
  if (!port.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
      return make_error("bad port \"" + std::string(port) + "\" in \"" + std::string(text) + "\"");
    out.port = static_cast<uint16_t>(value);
  }
  return out;
}

namespace detail {

std::string normalize_name(std::string_view name) {
  if (name.ends_with('.')) name.remove_suffix(1);
  return ascii_lower(name);
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

}  // namespace detail

namespace {

bool restricted_v4(const unsigned char* a) {
  return a[0] == 0 || a[0] == 127 || (a[0] == 169 && a[1] == 254) || a[0] >= 224;
}

}  // namespace

bool restricted_address(const std::string& ip) {
  unsigned char a[16];
  if (inet_pton(AF_INET, ip.c_str(), a) == 1) return restricted_v4(a);
  if (inet_pton(AF_INET6, ip.c_str(), a) != 1) return true;  // not an address at all
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(kMapped, kMapped + 12, a)) return restricted_v4(a + 12);
  bool zero_prefix = std::all_of(a, a + 15, [](unsigned char b) { return b == 0; });
  if (zero_prefix && (a[15] == 0 || a[15] == 1)) return true;  // :: and ::1
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return true;      // fe80::/10 link-local
  return a[0] == 0xff;                                         // ff00::/8 multicast
}

namespace {

constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// `ip` as bytes (4 for IPv4, 16 for IPv6); an IPv4-mapped address gives its 4 IPv4 bytes.
std::optional<Family> parse_ip(std::string_view ip, unsigned char (&out)[16]) {
  if (ip.find('\0') != std::string_view::npos) return std::nullopt;  // inet_pton would stop there
  std::string text(ip);
  if (inet_pton(AF_INET, text.c_str(), out) == 1) return Family::ipv4;
  if (inet_pton(AF_INET6, text.c_str(), out) != 1) return std::nullopt;
  if (!std::equal(kMappedPrefix, kMappedPrefix + 12, out)) return Family::ipv6;
  std::copy(out + 12, out + 16, out);
  return Family::ipv4;
}

bool is_ldh(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

}  // namespace

std::optional<std::string> reverse_name(std::string_view ip) {
  unsigned char a[16];
  auto family = parse_ip(ip, a);
  if (!family) return std::nullopt;
  std::string out;
  if (*family == Family::ipv4) {
    for (int i = 3; i >= 0; --i) out += std::to_string(a[i]) + '.';
    return out + "in-addr.arpa";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out += kHex[a[i] & 0x0f];
    out += '.';
    out += kHex[a[i] >> 4];
    out += '.';
  }
  return out + "ip6.arpa";
}

namespace detail {

bool valid_host_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  bool numeric = true;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = std::min(name.find('.', start), name.size());
    std::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!is_ldh(c)) return false;
      numeric &= c >= '0' && c <= '9';
    }
    start = dot + 1;
  }
  return !numeric;
}

std::optional<Address> canonical_address(std::string_view ip) {
  unsigned char a[16];
  auto family = parse_ip(ip, a);
  if (!family) return std::nullopt;
  char text[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(*family == Family::ipv4 ? AF_INET : AF_INET6, a, text, sizeof text)) return std::nullopt;
  return Address{text, *family};
}

std::optional<Family> ip_literal_family(const std::string& text) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) return Family::ipv4;
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) return Family::ipv6;
  return std::nullopt;
}

}  // namespace detail
}  // namespace spoold::dns
