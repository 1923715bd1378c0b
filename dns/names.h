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

// The family of an IPv4/IPv6 literal ("10.0.0.1", "::1"), or nullopt for a host name.
std::optional<Family> ip_literal_family(const std::string& text);

}  // namespace spoold::dns::detail
