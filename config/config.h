// config/config.h — spoold's configuration: YAML file → immutable, validated Config.
// Rule: every key has the default documented in docs/configuration.md; an unknown key,
// a wrong type or an impossible value is an error naming file:line:col and the key, never ignored.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/delivery_policy.h"
#include "common/result.h"

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

struct Delivery {
  int max_sessions = 20;
  int max_sessions_per_destination = 4;
  Duration max_connection_time = 10min;
  int max_messages_per_connection = 0;  // 0 = unlimited
  Duration idle_timeout = 5s;
  int envelope_limit = 100;
  double rate_limit = 0;  // messages per second per destination, 0 = unlimited
  int port = 25;
  std::string bind_address;
  TlsPolicy tls = TlsPolicy::opportunistic;
  std::string ca_file;
  int connect_attempts = 1;
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
};

enum class RelayStrategy { round_robin, failover };

struct RelayGroup {
  std::string name;
  RelayStrategy strategy = RelayStrategy::round_robin;
  std::vector<RelayServer> servers;
};

enum class RouteKind { relay, hosts, mx };

struct Route {
  std::vector<std::string> match;  // "example.org", "*.example.org", "*"
  RouteKind kind = RouteKind::mx;
  std::string relay;               // kind == relay
  std::vector<std::string> hosts;  // kind == hosts: "host:port" or "host" (port = delivery.port)
};

enum class LogLevel { debug, info, warning, error };
enum class LogFormat { text, json };

struct Logging {
  LogLevel level = LogLevel::info;
  LogFormat format = LogFormat::text;
};

struct Config {
  std::string source;  // the file it was read from ("<string>" for load_string)
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

  const RelayGroup* relay(const std::string& name) const;
  // The first route whose pattern matches `domain` (case-insensitive), or nullptr (deliver by MX).
  const Route* route_for(const std::string& domain) const;
};

// Loads and validates. On error, the message holds one "file:line:col: key: what" line per problem.
Result<Config> load_file(const std::string& path);
Result<Config> load_string(const std::string& yaml, const std::string& name = "<string>");

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
