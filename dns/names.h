// dns/names.h — small helpers for DNS names and IP literals (internal to dns/). Pure.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "dns/dns.h"

namespace spoold::dns::detail {

// A-Z lower-cased (common/ascii.h: other bytes stay), one trailing dot removed: the form used for
// queries and cache keys.
std::string normalize_name(std::string_view name);

// LDH names (underscores tolerated) of at most 253 octets, labels of 1..63: what we send.
bool valid_name(std::string_view normalized);

// A name a PTR record may give for a client: LDH labels of 1..63 octets without a leading or
// trailing hyphen, at most 253 octets, not all digits (it would pass for an address in
// "NAME[IP]"). Stricter than valid_name(): the name ends up in log lines and Received: headers,
// and the reverse zone is written by whoever owns the address.
bool valid_host_name(std::string_view normalized);

// `ip` in inet_ntop's canonical spelling with its family; an IPv4-mapped IPv6 address becomes the
// IPv4 address. nullopt when `ip` is not an address.
std::optional<Address> canonical_address(std::string_view ip);

// The family of an IPv4/IPv6 literal ("10.0.0.1", "::1"), or nullopt for a host name.
std::optional<Family> ip_literal_family(const std::string& text);

}  // namespace spoold::dns::detail
