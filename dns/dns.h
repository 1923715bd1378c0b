// dns/dns.h — asynchronous next-hop resolution (MX, A, AAAA) and client-name verification
// (PTR, then A/AAAA) on the daemon's libuv loop.
// One Resolver = one c-ares channel driven by one uv loop (poll watcher per socket, one timer).
// Rules: everything runs on the loop thread; every callback is called exactly once, never from
// inside the call that started the lookup, and never from inside c-ares; destroying the Resolver
// calls each outstanding callback with Status::cancelled before the destructor returns (a
// resolve_* call made from such a callback is cancelled at once, synchronously).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/delivery_policy.h"
#include "common/result.h"

struct uv_loop_s;

namespace spoold::dns {

// Which address family is tried first for one host (dns.address_preference), with its to_string:
// the shared type of common/delivery_policy.h, which config/ reads.
using spoold::AddressPreference;

// Plain options; the daemon maps config `dns:` (and `hostname`, `delivery.port`) into this.
struct Options {
  std::vector<std::string> servers;         // "ip:port" / "[ip6]:port" / "ip"; empty = /etc/resolv.conf
  std::chrono::milliseconds timeout{5000};  // per try (dns.timeout)
  int tries = 3;                            // dns.tries
  AddressPreference address_preference = AddressPreference::any;
  std::string our_hostname;                     // config `hostname`; MX hosts equal to it are a mail loop
  uint16_t mx_port = 25;                        // port stamped on MX / implicit-MX next hops (delivery.port)
  std::chrono::seconds max_cache_ttl{3600};     // positive answers cached min(TTL, this)
  std::chrono::seconds negative_cache_ttl{60};  // NXDOMAIN / NODATA cached this long
  size_t max_cache_entries = 10000;             // bound on memory, not on correctness
  size_t max_mx_hosts = 10;           // most MX hosts whose addresses are looked up (hostile answers)
  size_t max_queries_in_flight = 64;  // more wait, in order (a burst must not overflow UDP buffers)
  size_t max_ptr_names = 5;  // most PTR names of one client address forward-checked (hostile answers)
};

enum class Family { ipv4, ipv6 };
std::string_view to_string(Family f);

struct Address {
  std::string ip;  // textual, e.g. "127.0.0.1" or "::1"
  Family family = Family::ipv4;
  bool operator==(const Address&) const = default;
};

// One host to try, in order. For static hosts `preference` is the position in the route list.
struct NextHop {
  std::string
      host;  // MX exchange (lower-case, no trailing dot), the domain for implicit MX, or the static host
  int preference = 0;
  uint16_t port = 25;
  std::vector<Address> addresses;  // never empty in a successful result; ordered by AddressPreference
};

// ok: hops is non-empty. temporary: defer and retry later. permanent: bounce.
// cancelled: the Resolver was destroyed first (treat like temporary).
enum class Status { ok, temporary, permanent, cancelled };
std::string_view to_string(Status s);

struct NextHops {
  Status status = Status::ok;
  std::string reason;         // for the log line when status != ok, e.g. "MX loops back to us"
  std::vector<NextHop> hops;  // ordered: MX preference, equal preferences shuffled
  bool ok() const { return status == Status::ok; }
};

// Called exactly once. It may destroy the Resolver (nothing touches it afterwards).
using NextHopsCallback = std::function<void(NextHops)>;

// The verified name of a client address (Postfix smtpd's reverse + forward lookup). A PTR name
// alone is whatever the owner of the address's reverse zone chose to write, so it counts only
// when it resolves back to the address (forward-confirmed reverse DNS).
struct ClientName {
  Status status = Status::ok;  // ok: name verified; permanent: no PTR, NXDOMAIN or no forward match;
                               // temporary: SERVFAIL/timeout (the name may verify later); cancelled
  std::string name;            // lower-case, no trailing dot; "unknown" unless status == ok
  std::string reason;          // for logs when not ok, e.g. "no PTR record", "name 'x.test' does not resolve
                               // to 127.0.0.2", "PTR lookup for … failed: server failure (SERVFAIL)"
  bool ok() const { return status == Status::ok; }
};

// Called exactly once, like NextHopsCallback.
using ClientNameCallback = std::function<void(ClientName)>;

// "relay.example:587", "10.0.0.1", "[::1]:2525" → host + port (default_port when absent).
struct HostPort {
  std::string host;
  uint16_t port = 0;
  bool operator==(const HostPort&) const = default;
};
Result<HostPort> parse_host_port(std::string_view text, uint16_t default_port);

class Resolver {
 public:
  // Fails when c-ares cannot be initialised or a server string is not an IP[:port].
  static Result<std::unique_ptr<Resolver>> create(uv_loop_s* loop, Options options);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // MX lookup of an absolute domain (A-labels; no search list), then A+AAAA of every MX host.
  // NODATA → implicit MX (the domain's own addresses, preference 0); null MX, NXDOMAIN,
  // and "MX loops back to us" → permanent; SERVFAIL/REFUSED/timeout → temporary.
  void resolve_next_hops(const std::string& domain, NextHopsCallback cb);

  // A+AAAA of one static/relay host (an IP literal needs no query). One hop on success.
  // `host` is bare ("::1", not "[::1]"): split route strings with parse_host_port() first.
  void resolve_host(const std::string& host, uint16_t port, NextHopsCallback cb);

  // A route's static host list, in configured order (preference = index). Hosts without an
  // address are skipped; none left → temporary (a typo in a route must not bounce mail).
  void resolve_hosts(const std::vector<HostPort>& hosts, NextHopsCallback cb);

  // PTR of `ip` (IPv4 or IPv6 text; IPv4-mapped "::ffff:a.b.c.d" is treated as IPv4, since that is
  // the address the client really has), then A (IPv4) or AAAA (IPv6) of each PTR name, in answer
  // order and at most max_ptr_names, until one holds `ip`. Text that is not an address → permanent.
  // Same callback rules as the other lookups.
  void resolve_client_name(const std::string& ip, ClientNameCallback cb);

  // Lookups not yet answered (for status output and tests).
  size_t in_flight() const;

  class Impl;
  explicit Resolver(std::unique_ptr<Impl> impl);  // use create(); Impl is private to dns/

 private:
  std::unique_ptr<Impl> impl_;
};

// ---- Pure rules, exposed for unit tests (no sockets, no loop) -------------------------------

struct MxRecord {
  std::string host;  // as in the answer; "" or "." is the root (null MX)
  int preference = 0;
};

// Outcome of applying RFC 5321/7505 rules to an MX answer: the hosts to look up, in order.
struct MxPlan {
  Status status = Status::ok;
  std::string reason;
  std::vector<MxRecord> hosts;  // sorted by preference, equal preferences shuffled with rng
};
MxPlan plan_mx(std::vector<MxRecord> records, std::string_view our_hostname, std::mt19937& rng);

// Orders one host's addresses: ipv4/ipv6 put that family first; any interleaves from a random start.
std::vector<Address> order_addresses(std::vector<Address> v4_and_v6, AddressPreference pref,
                                     std::mt19937& rng);

// An address a hostile domain must not be able to point delivery at (its MX or A records): this
// host or "this network" (0/8, 127/8, ::, ::1), link-local (169.254/16, fe80::/10), multicast and
// reserved (224/3, ff00::/8), also as IPv4-mapped IPv6. Private ranges are not restricted (internal
// MX hosts are normal). A route that names the domain allows them.
bool restricted_address(const std::string& ip);

// The name whose PTR record maps `ip` back to a name: "4.3.2.1.in-addr.arpa" for 1.2.3.4 (also
// for ::ffff:1.2.3.4), 32 nibbles + ".ip6.arpa" for IPv6 (RFC 3596 §2.5). nullopt when `ip` is
// not an address.
std::optional<std::string> reverse_name(std::string_view ip);

// DNS name equality, ASCII case-insensitive (RFC 4343), ignoring one trailing dot.
bool same_name(std::string_view a, std::string_view b);

}  // namespace spoold::dns
