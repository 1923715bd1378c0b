// daemon/router.h — which next hop a recipient domain goes to (docs/configuration.md `routes`, first match
// wins). Rule: recipients with the same HopKey share connections; one message is split into one part per key.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace spoold::daemon {

struct HopKey {
  config::RouteKind kind = config::RouteKind::mx;
  std::string name;  // mx: the domain (lower case); relay: the group name; hosts: the route's host list
  // hosts: the route's host list as configured (a copy: the key outlives no config, it carries
  // what it needs).
  std::vector<std::string> hosts;
  // A route names the domain (any pattern but the catch-all "*"): its MX may point at this host or
  // other restricted addresses (dns::restricted_address), which is refused otherwise.
  bool local_ok = false;
  // The route's own connection policy (a copy, like hosts), and the route's position when it has
  // one (-1 otherwise): two routes to one relay group or host list with different policies are
  // two next hops.
  config::RoutePolicy policy;
  int route = -1;
  // "mx:example.org", "relay:corp", "hosts:127.0.0.1:2525"; "relay:corp#2" for a relay group or host
  // list reached by route 2 with a policy of its own.
  std::string str() const;
  bool operator==(const HopKey& o) const { return kind == o.kind && name == o.name && route == o.route; }
  bool operator<(const HopKey& o) const { return str() < o.str(); }
};

// The domain of an address (after the last '@'), lower-cased, in A-label form when it has
// non-ASCII labels (idna/idna.h); "" when there is none.
std::string domain_of(const std::string& address);

HopKey route(const config::Config& config, const std::string& domain);

// The sender rewriting for mail to `domain`: the global `rewrite`, then its route's.
config::Rewrite route_rewrite(const config::Config& config, const std::string& domain);

// Groups recipient indices by next hop and sender rewriting (one transaction has one MAIL FROM),
// in first-seen order. Two routes to one relay group with different `rewrite` make two groups
// with the same key: they share the destination's connections, not a transaction.
struct HopGroup {
  HopKey key;
  config::Rewrite rewrite;
  std::vector<size_t> recipients;
};
std::vector<HopGroup> group_by_hop(const config::Config& config, const std::vector<std::string>& recipients,
                                   const std::vector<size_t>& which);

}  // namespace spoold::daemon
