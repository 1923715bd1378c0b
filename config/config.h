// config/config.h — spoold's configuration: YAML file → immutable, validated Config.
// Rule: every key has the default documented in docs/configuration.md; an unknown key,
// a wrong type or an impossible value is an error naming file:line:col and the key, never ignored.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/delivery_policy.h"
#include "common/result.h"
#include "config/aliases.h"

namespace spoold::config {

// delivery.tls, dns.address_preference and auth.mechanism take the shared types, spellings and
// names of common/delivery_policy.h.
using spoold::AddressPreference;
using spoold::AuthMechanism;
using spoold::TlsPolicy;

using Duration = std::chrono::milliseconds;
using namespace std::chrono_literals;

struct Tier {
  Duration delay{0};
  int priority = 1;
};

struct Queue {
  Duration scan_interval = 20s;
  std::vector<Tier> tiers;  // filled with the 7 default tiers when the key is absent
  std::uint64_t max_message_size = 50ull * 1024 * 1024;
  Duration lock_stale_after = 10min;
  int delay_warning_tier = 0;  // 0 = off
  Duration failed_retention = std::chrono::hours(24 * 7);
};

// RFC 5321 §4.5.3.2 defaults; connect is ours.
struct Timeouts {
  Duration connect = 30s;
  Duration greeting = 5min;
  Duration ehlo = 5min;
  Duration mail = 5min;
  Duration rcpt = 5min;
  Duration data = 2min;
  Duration block = 3min;
  Duration dot = 10min;
};

// bind_address: the local address to connect from, at most one per address family (Postfix's
// smtp_bind_address and smtp_bind_address6); a connection to a peer of a family without one gets
// the kernel's choice.
struct BindAddress {
  std::string v4, v6;
  bool empty() const { return v4.empty() && v6.empty(); }
  const std::string& for_peer(const std::string& ip) const;  // "" = the kernel's choice
  std::string to_string() const;                             // "192.0.2.1, 2001:db8::1"
  bool operator==(const BindAddress&) const = default;
};

// Adds `ip` to `b` after checking that it is an IP literal, the first of its family, and an
// address of this host (binding a socket to it works). Returns why not, "" when added.
std::string add_bind_address(BindAddress& b, const std::string& ip);

struct Delivery {
  int max_sessions = 20;
  int max_sessions_per_destination = 4;
  Duration max_connection_time = 10min;
  int max_messages_per_connection = 0;  // 0 = unlimited
  Duration idle_timeout = 5s;
  int envelope_limit = 100;
  double rate_limit = 0;  // messages per second per destination, 0 = unlimited
  int port = 25;
  BindAddress bind_address;
  TlsPolicy tls = TlsPolicy::opportunistic;
  std::string ca_file;
  int connect_attempts = 1;
  // Mail::Bulkmail's talk_attempts: tries of a transaction the server refused with 4xx, on the same
  // session after a pause (1 = no second try).
  int talk_attempts = 1;
  Timeouts timeouts;
  std::string transcript_dir;
};

struct Dns {
  std::vector<std::string> servers;  // "host:port"; empty = /etc/resolv.conf
  Duration timeout = 5s;
  int tries = 3;
  AddressPreference address_preference = AddressPreference::any;
  Duration cache_max_ttl = 1h;  // positive answers are cached for min(TTL, this)
  Duration negative_ttl = 60s;  // NXDOMAIN / NODATA / SERVFAIL remembered this long
};

// `rewrite` on a route or a relay server: each key given there replaces the one above it (the
// global mapping, then the route's, then the relay server's); a key left out inherits.
struct RewriteOverride {
  std::optional<std::string> envelope_from;
  std::optional<std::vector<std::string>> masquerade_domains;
  bool operator==(const RewriteOverride&) const = default;
};

// rewrite: sender rewriting on the way out (smtp/rewrite.h applies it).
struct Rewrite {
  std::string envelope_from;                    // "" = keep; never applied to the null sender <>
  std::vector<std::string> masquerade_domains;  // lower-case domain names, first match wins
  bool operator==(const Rewrite&) const = default;

  Rewrite with(const RewriteOverride& o) const {
    Rewrite r = *this;
    if (o.envelope_from) r.envelope_from = *o.envelope_from;
    if (o.masquerade_domains) r.masquerade_domains = *o.masquerade_domains;
    return r;
  }
};

enum class RelayTls { none, starttls, smtps };

struct Auth {
  AuthMechanism mechanism = AuthMechanism::automatic;  // never none: a server without `auth:` has no Auth
  std::string user;
  std::string password_file;
  std::string secret;  // the password (or XOAUTH2 token) read from password_file at load time
};

struct RelayServer {
  std::string host;
  int port = 25;  // 465 when tls is smtps
  RelayTls tls = RelayTls::starttls;
  bool verify = true;
  std::optional<Auth> auth;
  int max_messages = 0;
  int max_messages_per_robin = 0;
  int max_messages_while_awake = 0;
  Duration sleep_length{0};
  // Given here, these replace delivery's for this server's connections; absent, delivery's apply.
  std::optional<int> max_messages_per_connection;  // 0 = unlimited
  std::optional<int> talk_attempts;
  RewriteOverride rewrite;
};

enum class RelayStrategy { round_robin, failover };

struct RelayGroup {
  std::string name;
  RelayStrategy strategy = RelayStrategy::round_robin;
  std::vector<RelayServer> servers;
};

enum class RouteKind { relay, hosts, mx };

// A route's own connection policy: each key given replaces delivery's for the next hops of that
// route (a relay group's servers keep their own tls).
struct RoutePolicy {
  std::optional<TlsPolicy> tls;
  std::optional<int> max_sessions;   // sessions at once to each next hop (max_sessions_per_destination)
  std::optional<double> rate_limit;  // messages per second to each next hop
  std::optional<BindAddress> bind_address;
  // A relay group for mail this route's next hop could not take in an attempt without a verdict
  // on its recipients (every server unreachable, a temporary DNS failure): Postfix's
  // smtp_fallback_relay. Not on a relay route.
  std::optional<std::string> fallback_relay;
  bool empty() const { return !tls && !max_sessions && !rate_limit && !bind_address && !fallback_relay; }
  bool operator==(const RoutePolicy&) const = default;
};

struct Route {
  std::vector<std::string> match;  // "example.org", "*.example.org", "*"
  RouteKind kind = RouteKind::mx;
  std::string relay;               // kind == relay
  std::vector<std::string> hosts;  // kind == hosts: "host:port" or "host" (port = delivery.port)
  RewriteOverride rewrite;
  RoutePolicy policy;
};

enum class LogLevel { debug, info, warning, error };
enum class LogFormat { text, json };

struct Logging {
  LogLevel level = LogLevel::info;
  LogFormat format = LogFormat::text;
};

// An IPv4 or IPv6 network (CIDR), as in listen[].relay_from. IPv4 networks are held as their
// IPv4-mapped IPv6 form (::ffff:a.b.c.d, prefix + 96), so one comparison serves both families.
struct Network {
  std::array<std::uint8_t, 16> address{};  // the network address; bits beyond `prefix` are 0
  int prefix = 0;                          // over the 128-bit form
  bool v4 = false;                         // written as IPv4: "127.0.0.0/8"

  // Whether `ip` (an IPv4 or IPv6 literal; "::ffff:a.b.c.d" counts as the IPv4 address a.b.c.d) is
  // in this network. An IPv4 address is only ever in an IPv4 network or an IPv6 one inside
  // ::ffff:0:0/96: "::/0" holds every IPv6 address and no IPv4 one. Anything else is false.
  bool contains(const std::string& ip) const;
  // The canonical text: "127.0.0.0/8", "::1/128".
  std::string to_string() const;
  bool operator==(const Network&) const = default;
};

// "10.0.0.0/8", "2001:db8::/32", a bare address (= /32 or /128), "[::1]/128". Host bits set beyond
// the prefix ("10.1.0.0/8") are an error. On failure, `why` says what is wrong.
std::optional<Network> parse_network(const std::string& text, std::string* why = nullptr);

// A listen[].address: "127.0.0.1:25", "[::1]:25", or a port alone ("25": every address, IPv4
// and IPv6). IP literals only, no host names; the port is required, 1 to 65535.
struct ListenAddress {
  std::string host;  // canonical IP literal without brackets; "" = every address
  int port = 0;
  bool ipv6() const { return host.find(':') != std::string::npos; }
  // "127.0.0.1:25", "[::1]:25", "*:25"
  std::string to_string() const;
};
std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string* why = nullptr);

// listen[].tls: STARTTLS is offered when a certificate is set; implicit = TLS from the first byte.
struct ListenerTls {
  std::string cert_file;
  std::string key_file;
  bool implicit = false;  // requires cert_file and key_file
  // Full handshakes (not resumed) a client outside relay_from may start a minute (Postfix's
  // smtpd_client_new_tls_session_rate_limit); past it STARTTLS is not offered. 0 = no limit.
  int new_sessions_per_minute = 100;
  bool enabled() const { return !cert_file.empty(); }
};

// One SMTP listener (listen[]); daemon/listener.h serves it.
struct Listener {
  std::string address;  // as written
  std::string host;     // canonical IP literal; "" = every address (0.0.0.0 and ::)
  int port = 0;
  std::vector<Network> relay_from;  // default: 127.0.0.0/8 and ::1/128; [] = nobody without AUTH
  std::string users_file;           // auth.users_file; "" = no AUTH
  ListenerTls tls;
  int max_sessions = 100;
  // Sessions at once from one client address (an IPv6 client: its /64) outside relay_from
  // (Postfix's smtpd_client_connection_count_limit, with $mynetworks exempt).
  int max_sessions_per_client = 50;
  int max_recipients = 1000;
  Duration timeout = 5min;
  // DATA must arrive at this many bytes a second on average beyond `timeout` (Postfix's
  // smtpd_min_data_rate); 0 = only `timeout` per 8 KiB of progress.
  int min_data_rate = 500;
  // Name clients by forward-confirmed reverse DNS (Postfix's smtpd_peername_lookup) for the
  // log's client= and Received:; false: "localhost" for loopback, "unknown" otherwise.
  bool reverse_lookup = true;

  // Whether a client at `ip` may relay without AUTH (it is in one of relay_from).
  bool relay_allowed(const std::string& ip) const;
};

// hooks.on_outcome: a program given each selected outcome record as JSON on stdin
// (daemon/hook_runner.h). exec is split into words without a shell: double or single quotes
// group, a backslash in double quotes escapes the next character.
struct OutcomeHook {
  std::string exec;               // as written; "" = no hook
  std::vector<std::string> argv;  // exec split; argv[0] an absolute path to an executable file
  std::vector<std::string> statuses{"bounced", "expired"};  // of sent, deferred, bounced, expired
  int max_running = 4;
  Duration timeout = std::chrono::seconds(10);
  bool enabled() const { return !argv.empty(); }
  bool wants(const std::string& status) const;
};

struct Hooks {
  OutcomeHook on_outcome;
};

// usage_log: the usage totals (spool/usage.h, daemon/usage.h) — how often the daemon saves them
// to usage/<instance> in the spool (a kill -9 loses at most this much counting), and a file that
// gets one line per `interval`.
struct UsageLog {
  std::string file;  // "" = no lines; else an absolute path, appended to
  Duration interval = std::chrono::hours(1);
  Duration save_interval = std::chrono::seconds(60);
};

// exec's words (see OutcomeHook); an unterminated quote is an error.
Result<std::vector<std::string>> split_command(const std::string& text);

struct Config {
  std::string source;  // the file it was read from ("<string>" for load_string)
  // Default: /etc/mailname, else the FQDN of gethostname(), else gethostname() with a warning
  // (config/hostname.h).
  std::string hostname;
  std::string instance;
  std::string spool_dir = "/var/spool/spoold";
  std::string control_socket = "/run/spoold/control.sock";
  Queue queue;
  Delivery delivery;
  Dns dns;
  std::vector<RelayGroup> relays;
  std::vector<Route> routes;
  Logging logging;
  std::vector<Listener> listen;  // default: none
  // aliases: lower-case local name (no '@') → its targets, each a mailbox or another local name
  // (lower-cased): the config's `aliases`, then aliases_file's entries for names the config does
  // not have (the config wins, as the first of Postfix's alias_maps does; each shadowed entry is
  // a warning). Who resolves a recipient with them: config/local_mail.h.
  AliasMap aliases;
  std::size_t aliases_from_file = 0;  // how many of `aliases` came from aliases_file
  std::string aliases_file;           // "" = none; read and checked at load time
  std::string admin_address;          // "" = bounce local mail without an alias
  Rewrite rewrite;
  Hooks hooks;
  UsageLog usage_log;

  // What loaded but deserves a line in the log (once per load): "hostname: … using 'box'", an
  // aliases_file entry the config's aliases shadow. Each is one line, without a level.
  std::vector<std::string> warnings;

  // The targets of the local name `name` (case-insensitive) in `aliases`, or nullptr.
  const std::vector<std::string>* alias(const std::string& name) const;

  const RelayGroup* relay(const std::string& name) const;
  // The first route whose pattern matches `domain` (case-insensitive), or nullptr (deliver by MX).
  const Route* route_for(const std::string& domain) const;
};

struct LoadOptions {
  // Parse aliases_file into `aliases` (the daemon, newaliases). The programs that only submit or
  // inspect mail skip it: a bad line there (a package's "|command" entry) must not stop sendmail
  // from taking mail; they still see whether the file exists.
  bool read_aliases_file = true;
};

// Loads and validates. On error, the message holds one "file:line:col: key: what" line per problem
// (an aliases_file's lines name that file: "/etc/aliases:3:9: what").
Result<Config> load_file(const std::string& path, const LoadOptions& options = {});
Result<Config> load_string(const std::string& yaml, const std::string& name = "<string>",
                           const LoadOptions& options = {});

// Where programs find their config: --config FILE, else $SPOOLD_CONFIG, else /etc/spoold/spoold.yaml.
std::string default_path(const std::string& from_flag = "");

// Value parsers, shared with the command line tools. "90", "90s", "500ms", "30m", "4h", "2d".
std::optional<Duration> parse_duration(const std::string& text);
// "512", "10KB", "50MB", "1GB" (K = 1024).
std::optional<std::uint64_t> parse_size(const std::string& text);

const char* to_string(RelayTls);
const char* to_string(LogLevel);

// True when `pattern` ("a.org", "*.a.org", "*") matches `domain`; both compared case-insensitively.
bool domain_matches(const std::string& pattern, const std::string& domain);

}  // namespace spoold::config
