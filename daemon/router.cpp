// daemon/router.cpp — see router.h.
#include "daemon/router.h"

#include <algorithm>
#include <cctype>

#include "common/ascii.h"
#include "idna/idna.h"

namespace spoold::daemon {

std::string HopKey::str() const {
  // An MX next hop is its domain's alone (first matching route wins), so only a relay group or a
  // host list can be reached by two routes with different policies.
  std::string tag = route >= 0 ? "#" + std::to_string(route) : "";
  switch (kind) {
    case config::RouteKind::mx:
      return "mx:" + name;
    case config::RouteKind::relay:
      return "relay:" + name + tag;
    case config::RouteKind::hosts:
      return "hosts:" + name + tag;
  }
  return name;
}

std::string domain_of(const std::string& address) {
  auto at = address.rfind('@');
  if (at == std::string::npos) return "";
  std::string d = address.substr(at + 1);
  if (!d.empty() && d.front() == '[') return d;  // address literal: keep as is
  // Routes, MX lookups and connection sharing all see the A-label form, so "bücher.example" and
  // "xn--bcher-kva.example" are one destination. A name that is not valid IDNA stays as it is and
  // fails its DNS lookup as an invalid name.
  if (auto a = idna::to_ascii(d)) d = std::move(*a);
  d = ascii_lower(d);
  while (!d.empty() && d.back() == '.') d.pop_back();
  return d;
}

HopKey route(const config::Config& config, const std::string& domain) {
  HopKey k;
  k.name = domain;
  const config::Route* r = config.route_for(domain);
  if (!r) return k;  // no route: by MX
  k.kind = r->kind;
  if (!r->policy.empty()) {
    k.policy = r->policy;
    k.route = static_cast<int>(r - config.routes.data());
  }
  k.local_ok = std::any_of(r->match.begin(), r->match.end(), [&](const std::string& p) {
    return p != "*" && config::domain_matches(p, domain);
  });
  if (r->kind == config::RouteKind::relay) {
    k.name = r->relay;
  } else if (r->kind == config::RouteKind::hosts) {
    k.hosts = r->hosts;
    k.name.clear();
    for (const auto& h : r->hosts) k.name += (k.name.empty() ? "" : ",") + h;
  }
  return k;
}

config::Rewrite route_rewrite(const config::Config& config, const std::string& domain) {
  const config::Route* r = config.route_for(domain);
  return r ? config.rewrite.with(r->rewrite) : config.rewrite;
}

std::vector<HopGroup> group_by_hop(const config::Config& config, const std::vector<std::string>& recipients,
                                   const std::vector<size_t>& which) {
  std::vector<HopGroup> groups;
  for (size_t idx : which) {
    std::string domain = domain_of(recipients[idx]);
    HopKey k = route(config, domain);
    config::Rewrite rw = route_rewrite(config, domain);
    bool found = false;
    for (auto& g : groups)
      if (g.key == k && g.rewrite == rw) {
        g.recipients.push_back(idx);
        found = true;
        break;
      }
    if (!found) groups.push_back(HopGroup{k, std::move(rw), {idx}});
  }
  return groups;
}

}  // namespace spoold::daemon
