// config/config.cpp — lookups on a loaded Config (routes, relay groups, aliases).
#include "config/config.h"

#include "common/ascii.h"

namespace spoold::config {

const RelayGroup* Config::relay(const std::string& name) const {
  for (const auto& g : relays)
    if (g.name == name) return &g;
  return nullptr;
}

const std::vector<std::string>* Config::alias(const std::string& name) const {
  auto it = aliases.find(ascii_lower(name));
  return it == aliases.end() ? nullptr : &it->second;
}

const Route* Config::route_for(const std::string& domain) const {
  for (const auto& r : routes)
    for (const auto& pattern : r.match)
      if (domain_matches(pattern, domain)) return &r;
  return nullptr;
}

}  // namespace spoold::config
