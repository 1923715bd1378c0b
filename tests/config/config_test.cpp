// tests/config/config_test.cpp — the config loader: defaults, the full example configuration, and a
// table of bad files, each with the exact line:col and key its error must name.
#include <sys/stat.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "tests/support/fixtures.h"

using namespace spoold;
using namespace spoold::config;
using namespace std::chrono_literals;

TEST_CASE("an empty file gives every documented default") {
  auto r = load_string("", "empty.yaml");
  REQUIRE(r.ok());
  const Config& c = *r;
  CHECK(c.spool_dir == "/var/spool/spoold");
  CHECK(c.control_socket == "/run/spoold/control.sock");
  CHECK(!c.hostname.empty());
  CHECK(c.instance == c.hostname);
  CHECK(c.queue.scan_interval == 20s);
  REQUIRE(c.queue.tiers.size() == 7);
  CHECK(c.queue.tiers[0].delay == 0s);
  CHECK(c.queue.tiers[1].delay == 30min);
  CHECK(c.queue.tiers[1].priority == 3);
  CHECK(c.queue.tiers[6].delay == std::chrono::hours(48));
  CHECK(c.queue.tiers[6].priority == 200);
  CHECK(c.queue.max_message_size == 50ull * 1024 * 1024);
  CHECK(c.queue.lock_stale_after == 10min);
  CHECK(c.queue.failed_retention == std::chrono::hours(24 * 7));
  CHECK(c.delivery.max_sessions == 20);
  CHECK(c.delivery.max_sessions_per_destination == 4);
  CHECK(c.delivery.idle_timeout == 5s);
  CHECK(c.delivery.envelope_limit == 100);
  CHECK(c.delivery.port == 25);
  CHECK(c.delivery.tls == TlsPolicy::opportunistic);
  CHECK(c.delivery.timeouts.greeting == 5min);
  CHECK(c.delivery.timeouts.data == 2min);
  CHECK(c.delivery.timeouts.block == 3min);
  CHECK(c.delivery.timeouts.dot == 10min);
  CHECK(c.dns.servers.empty());
  CHECK(c.dns.timeout == 5s);
  CHECK(c.dns.tries == 3);
  CHECK(c.dns.address_preference == AddressPreference::any);
  CHECK(c.logging.level == LogLevel::info);
  CHECK(c.logging.format == LogFormat::text);
  CHECK(c.usage_log.file.empty());
  CHECK(c.usage_log.interval == std::chrono::hours(1));
  CHECK(c.usage_log.save_interval == 60s);
  REQUIRE(c.routes.size() == 1);  // implicit "everything by MX"
  CHECK(c.routes[0].kind == RouteKind::mx);
  CHECK(c.route_for("anything.example") == &c.routes[0]);
}

TEST_CASE("the full example configuration loads with its values") {
  test::TempDir dir;
  test::write_file(dir / "corp.pw", "s3cret\n");
  std::string yaml = R"(
hostname: mail.example.com
instance: ""
spool_dir: /var/spool/spoold
control_socket: /run/spoold/control.sock
queue:
  scan_interval: 20s
  tiers:
    - { delay: 0,   priority: 1 }
    - { delay: 30m, priority: 3 }
    - { delay: 4h,  priority: 9 }
  max_message_size: 10MB
  lock_stale_after: 10m
  delay_warning_tier: 2
  failed_retention: 7d
delivery:
  max_sessions: 20
  max_sessions_per_destination: 4
  max_connection_time: 10m
  max_messages_per_connection: 0
  idle_timeout: 5s
  envelope_limit: 100
  rate_limit: 2.5
  port: 2525
  bind_address: ""
  tls: verify
  ca_file: ""
  connect_attempts: 2
  talk_attempts: 3
  timeouts: { connect: 30s, greeting: 5m, ehlo: 5m, mail: 5m, rcpt: 5m, data: 2m, block: 3m, dot: 500ms }
  transcript_dir: ""
dns:
  servers: ["127.0.0.1:5353"]
  timeout: 5s
  tries: 3
  address_preference: ipv6
relays:
  corp:
    strategy: failover
    servers:
      - host: smtp1.example.org
        port: 587
        tls: starttls
        auth: { mechanism: auto, user: mailer, password_file: )" +
                     (dir / "corp.pw") + R"( }
        max_messages: 0
        max_messages_per_robin: 500
        max_messages_while_awake: 0
        sleep_length: 0s
        max_messages_per_connection: 0
        talk_attempts: 2
      - host: smtp2.example.org
        tls: smtps
routes:
  - { match: ["example.org", "*.example.org"], relay: corp }
  - { match: ["lab.test"], hosts: ["127.0.0.1:2525"] }
  - { match: ["*"], mx: true }
logging: { level: debug, format: json }
)";
  auto r = load_string(yaml, "full.yaml");
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  const Config& c = *r;
  CHECK(c.hostname == "mail.example.com");
  CHECK(c.instance == "mail.example.com");
  CHECK(c.queue.tiers.size() == 3);
  CHECK(c.queue.tiers[2].delay == std::chrono::hours(4));
  CHECK(c.queue.max_message_size == 10ull << 20);
  CHECK(c.queue.delay_warning_tier == 2);
  CHECK(c.delivery.rate_limit == 2.5);
  CHECK(c.delivery.port == 2525);
  CHECK(c.delivery.tls == TlsPolicy::verify);
  CHECK(c.delivery.connect_attempts == 2);
  CHECK(c.delivery.talk_attempts == 3);
  CHECK(c.delivery.timeouts.dot == 500ms);
  CHECK(c.dns.servers == std::vector<std::string>{"127.0.0.1:5353"});
  CHECK(c.dns.address_preference == AddressPreference::ipv6);
  REQUIRE(c.relays.size() == 1);
  const RelayGroup* corp = c.relay("corp");
  REQUIRE(corp);
  CHECK(corp->strategy == RelayStrategy::failover);
  REQUIRE(corp->servers.size() == 2);
  CHECK(corp->servers[0].port == 587);
  CHECK(corp->servers[0].verify);
  REQUIRE(corp->servers[0].auth);
  CHECK(corp->servers[0].auth->user == "mailer");
  CHECK(corp->servers[0].auth->secret == "s3cret");
  CHECK(corp->servers[0].auth->mechanism == AuthMechanism::automatic);
  CHECK_FALSE(corp->servers[1].auth);  // no `auth:`: no AUTH (smtp's AuthMechanism::none)
  CHECK(corp->servers[0].max_messages_per_robin == 500);
  CHECK(corp->servers[0].max_messages_per_connection == 0);  // given: unlimited, not delivery's
  CHECK(corp->servers[0].talk_attempts == 2);
  CHECK_FALSE(corp->servers[1].max_messages_per_connection);  // absent: delivery's applies
  CHECK_FALSE(corp->servers[1].talk_attempts);
  CHECK(corp->servers[1].port == 465);  // smtps default
  CHECK(corp->servers[1].tls == RelayTls::smtps);
  REQUIRE(c.routes.size() == 3);
  CHECK(c.route_for("example.org")->relay == "corp");
  CHECK(c.route_for("a.b.example.org")->relay == "corp");
  CHECK(c.route_for("EXAMPLE.ORG.")->relay == "corp");
  CHECK(c.route_for("notexample.org")->kind == RouteKind::mx);
  CHECK(c.route_for("lab.test")->kind == RouteKind::hosts);
  CHECK(c.route_for("lab.test")->hosts[0] == "127.0.0.1:2525");
  CHECK(c.logging.format == LogFormat::json);
  CHECK(c.logging.level == LogLevel::debug);
}

TEST_CASE("route patterns with U-labels match the A-label form recipients are routed by") {
  auto r = load_string(
      "relays:\n  eu: { servers: [{ host: a.test }] }\nroutes:\n"
      "  - { match: [\"b\xc3\xbc"
      "cher.example\", \"*.\xe4\xbe\x8b.test\"], relay: eu }\n",
      "t.yaml");
  REQUIRE(r.ok());
  CHECK(r->routes[0].match == std::vector<std::string>{"xn--bcher-kva.example", "*.xn--fsq.test"});
  REQUIRE(r->route_for("xn--bcher-kva.example"));
  CHECK(r->route_for("xn--bcher-kva.example")->relay == "eu");
  CHECK(r->route_for("a.xn--fsq.test")->relay == "eu");
}

TEST_CASE("durations and sizes") {
  struct D {
    const char* text;
    long long ms;
  };
  for (auto [text, ms] : std::vector<D>{{"90", 90'000},
                                        {"90s", 90'000},
                                        {"500ms", 500},
                                        {"30m", 1'800'000},
                                        {"4h", 14'400'000},
                                        {"2d", 172'800'000},
                                        {"0", 0}}) {
    INFO(text);
    auto d = parse_duration(text);
    REQUIRE(d);
    CHECK(d->count() == ms);
  }
  for (const char* bad : {"", "s", "10x", "-5", "1.5h", "5 m", "99999999999999999999999", "10mm"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration(bad));
  }
  CHECK(*parse_size("512") == 512);
  CHECK(*parse_size("10KB") == 10240);
  CHECK(*parse_size("50MB") == 50ull << 20);
  CHECK(*parse_size("1gb") == 1ull << 30);
  for (const char* bad : {"", "MB", "10TB", "-1", "1.5MB", "99999999999999999999GB"}) {
    INFO(bad);
    CHECK_FALSE(parse_size(bad));
  }
}

TEST_CASE("domain patterns") {
  CHECK(domain_matches("*", "x.y"));
  CHECK(domain_matches("example.org", "Example.ORG"));
  CHECK(domain_matches("*.example.org", "a.example.org"));
  CHECK_FALSE(domain_matches("*.example.org", "example.org"));
  CHECK_FALSE(domain_matches("*.example.org", "badexample.org"));
  CHECK_FALSE(domain_matches("example.org", "a.example.org"));
}

// Every bad file names file:line:col, the key, and what is wrong.
TEST_CASE("config errors name line, column and key") {
  struct Case {
    const char* yaml;
    const char* expect;  // a substring of the error message
  };
  const std::vector<Case> cases = {
      {"hostnme: x\n", "t.yaml:1:1: hostnme: unknown key (did you mean 'hostname'?)"},
      {"queue:\n  scan_intervl: 5s\n",
       "t.yaml:2:3: queue.scan_intervl: unknown key (did you mean 'scan_interval'?)"},
      {"zzzzzz: 1\n", "t.yaml:1:1: zzzzzz: unknown key"},
      {"delivery:\n  max_sessions: lots\n",
       "t.yaml:2:17: delivery.max_sessions: expected an integer, got 'lots'"},
      {"delivery:\n  max_sessions: 0\n", "t.yaml:2:17: delivery.max_sessions: must be between 1 and"},
      {"delivery:\n  max_sessions: [1]\n", "t.yaml:2:17: delivery.max_sessions: expected an integer"},
      {"delivery:\n  talk_attempts: 0\n",
       "t.yaml:2:18: delivery.talk_attempts: must be between 1 and 100, got 0"},
      {"relays:\n  g:\n    servers:\n      - { host: a, talk_attempts: 101 }\n",
       "t.yaml:4:35: relays.g.servers[0].talk_attempts: must be between 1 and 100, got 101"},
      {"relays:\n  g:\n    servers:\n      - { host: a, max_messages_per_connection: -1 }\n",
       "t.yaml:4:49: relays.g.servers[0].max_messages_per_connection: must be between 0 and"},
      {"queue:\n  scan_interval: 5 parsecs\n", "t.yaml:2:18: queue.scan_interval: bad duration '5 parsecs'"},
      {"queue:\n  max_message_size: 5XB\n", "t.yaml:2:21: queue.max_message_size: bad size '5XB'"},
      {"queue:\n  tiers: []\n", "t.yaml:2:10: queue.tiers: must have at least one tier"},
      {"queue:\n  tiers:\n    - { delay: 0 }\n    - { delay: 1h }\n    - { delay: 30m }\n",
       "t.yaml:5:16: queue.tiers[2].delay: tier delays must be strictly increasing"},
      {"queue:\n  tiers:\n    - { delay: 5m }\n", "queue.tiers[0].delay: the first tier must have delay 0"},
      {"queue:\n  tiers:\n    - { delay: 0, prio: 1 }\n",
       "t.yaml:3:19: queue.tiers[0].prio: unknown key (did you mean 'priority'?)"},
      {"routes:\n  - { match: [\"x.org\"], relay: nosuch }\n",
       "t.yaml:2:32: routes[0].relay: unknown relay group 'nosuch'"},
      {"routes:\n  - { match: [\"x.org\"] }\n", "routes[0]: needs exactly one of 'relay', 'hosts' or 'mx'"},
      {"routes:\n  - { match: [\"x..org\"], mx: true }\n", "routes[0].match: 'x..org' is not a domain"},
      {"routes:\n  - { match: [\"x.org\", \"b\xff.org\"], mx: true }\n",
       "t.yaml:2:24: routes[0].match: 'b\xff.org' is not a domain"},
      {"routes:\n  - { match: [\"x.org\"], hosts: [\"a:b:c\"] }\n",
       "routes[0].hosts: 'a:b:c' is not host or host:port"},
      {"relays:\n  corp:\n    servers:\n      - host: a\n        auth: { user: u, password_file: "
       "/nonexistent/pw }\n",
       "t.yaml:5:41: relays.corp.servers[0].auth.password_file: cannot read password file '/nonexistent/pw'"},
      {"relays:\n  corp:\n    servers:\n      - port: 25\n", "relays.corp.servers[0]: missing 'host'"},
      {"relays:\n  corp:\n    strategy: random\n    servers:\n      - host: a\n",
       "t.yaml:3:15: relays.corp.strategy: 'random' is not one of round_robin | failover"},
      {"delivery:\n  tls: maybe\n", "t.yaml:2:8: delivery.tls: 'maybe' is not one of none | opportunistic"},
      {"delivery:\n  tls: Verify\n",
       "t.yaml:2:8: delivery.tls: 'Verify' is not one of none | opportunistic | required | verify"},
      {"relays:\n  corp:\n    servers:\n      - host: a\n        auth: { mechanism: none, user: u, "
       "password_file: /nonexistent/pw }\n",
       "t.yaml:5:28: relays.corp.servers[0].auth.mechanism: 'none' is not one of auto | plain | login | "
       "cram-md5 | xoauth2"},
      {"relays:\n  corp:\n    servers:\n      - host: a\n        auth: { mechanism: CRAM-MD5, user: u, "
       "password_file: /nonexistent/pw }\n",
       "relays.corp.servers[0].auth.mechanism: 'CRAM-MD5' is not one of auto"},
      {"dns:\n  servers: [\"127.0.0.1:99999\"]\n", "dns.servers: '127.0.0.1:99999' is not host:port"},
      {"dns:\n  address_preference: ipv5\n",
       "dns.address_preference: 'ipv5' is not one of any | ipv4 | ipv6"},
      {"logging: { level: loud }\n", "t.yaml:1:19: logging.level: 'loud' is not one of"},
      {"hostname: a\nhostname: b\n", "t.yaml:2:1: hostname: duplicate key"},
      {"queue: [1, 2]\n", "t.yaml:1:8: queue: expected a mapping"},
      {"queue:\n  delay_warning_tier: 9\n",
       "queue.delay_warning_tier: must name an existing tier (0 to 6), got 9"},
      {"spool_dir: relative/path\n", "t.yaml:1:12: spool_dir: must be an absolute path"},
      {"queue: {\n", "t.yaml:"},  // YAML syntax error, position given
      {"- a\n- b\n", "t.yaml:1:1: the top level must be a mapping"},
      {"delivery:\n  timeouts: { rcpt: never }\n", "delivery.timeouts.rcpt: bad duration 'never'"},
      {"delivery:\n  rate_limit: -1\n", "delivery.rate_limit: must be at least 0"},
      {"delivery:\n  max_sessions: 2\n  max_sessions_per_destination: 4\n",
       "t.yaml:3:33: delivery.max_sessions_per_destination: must not exceed delivery.max_sessions (2)"},
      {"delivery:\n  ca_file: /nonexistent/ca.pem\n", "delivery.ca_file: cannot read '/nonexistent/ca.pem'"},
  };
  for (const auto& c : cases) {
    INFO("yaml:\n" << c.yaml);
    auto r = load_string(c.yaml, "t.yaml");
    REQUIRE_FALSE(r.ok());
    INFO("error: " << r.error().message);
    CHECK(r.error().message.find(c.expect) != std::string::npos);
  }
}

TEST_CASE("several errors are all reported") {
  auto r = load_string("hostnme: x\ndelivery:\n  port: 0\n", "t.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("t.yaml:1:1: hostnme") != std::string::npos);
  CHECK(r.error().message.find("t.yaml:3:9: delivery.port") != std::string::npos);
}

TEST_CASE("load_file reports an unreadable file") {
  auto r = load_file("/nonexistent/spoold.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("/nonexistent/spoold.yaml:1:1: cannot read config") == 0);
}

TEST_CASE("a password file must be a small regular file (read at load time, never hangs)") {
  auto relay = [](const std::string& pw) {
    return "relays:\n  corp:\n    servers:\n      - host: a\n        auth: { user: u, password_file: " + pw +
           " }\n";
  };
  char dir_template[] = "/tmp/spoold-config-test.XXXXXX";
  REQUIRE(mkdtemp(dir_template) != nullptr);
  std::string dir = dir_template;
  std::string fifo = dir + "/fifo", big = dir + "/big", good = dir + "/good";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  { std::ofstream(big) << std::string(70 * 1024, 'x'); }
  { std::ofstream(good) << "s3cret\r\nsecond line\n"; }

  struct Case {
    std::string path, expect;
  };
  std::vector<Case> bad = {
      {"/dev/zero", "password file '/dev/zero' is not a regular file"},
      {fifo, "password file '" + fifo + "' is not a regular file"},  // opened without blocking
      {dir, "password file '" + dir + "' is not a regular file"},
      {big, "password file '" + big + "' is too large (71680 bytes, at most 65536)"},
  };
  for (const auto& c : bad) {
    auto r = load_string(relay(c.path), "t.yaml");
    REQUIRE_FALSE(r.ok());
    INFO("error: " << r.error().message);
    CHECK(r.error().message.find("t.yaml:5:41: relays.corp.servers[0].auth.password_file: " + c.expect) !=
          std::string::npos);
  }
  auto r = load_string(relay(good), "t.yaml");
  REQUIRE(r.ok());
  const Config& c = *r;
  REQUIRE(c.relay("corp") != nullptr);
  CHECK(c.relay("corp")->servers.at(0).auth->secret == "s3cret");
  std::filesystem::remove_all(dir);
}

TEST_CASE("default_path precedence") {
  CHECK(default_path("/x.yaml") == "/x.yaml");
  setenv("SPOOLD_CONFIG", "/env.yaml", 1);
  CHECK(default_path("") == "/env.yaml");
  unsetenv("SPOOLD_CONFIG");
  CHECK(default_path("") == "/etc/spoold/spoold.yaml");
}

// ---- listen, aliases, aliases_file, admin_address, rewrite (issue 16) ----

TEST_CASE("the listener and local-mail keys default to none") {
  auto r = load_string("", "empty.yaml");
  REQUIRE(r.ok());
  const Config& c = *r;
  CHECK(c.listen.empty());
  CHECK(c.aliases.empty());
  CHECK(c.alias("root") == nullptr);
  CHECK(c.aliases_file.empty());
  CHECK(c.admin_address.empty());
  CHECK(c.rewrite.envelope_from.empty());
  CHECK(c.rewrite.masquerade_domains.empty());
}

TEST_CASE("every listener and local-mail key loads with its value") {
  test::TempDir dir;
  for (const char* f : {"users", "cert.pem", "key.pem"}) test::write_file(dir / f, "x\n");
  test::write_file(dir / "aliases",
                   "# /etc/aliases\nOps: ops@example.com,\n  team\nroot: other@example.com\n");
  std::string yaml = R"(
listen:
  - address: "127.0.0.1:25"
    relay_from: ["127.0.0.0/8", "::1/128", "192.168.0.0/16", "2001:db8::/32", "198.51.100.7"]
    auth: { users_file: )" +
                     (dir / "users") + R"( }
    tls: { cert_file: )" +
                     (dir / "cert.pem") + ", key_file: " + (dir / "key.pem") +
                     R"(, implicit: false, new_sessions_per_minute: 0 }
    max_sessions: 50
    max_sessions_per_client: 5
    max_recipients: 200
    timeout: 2m
    min_data_rate: 0
    reverse_lookup: false
  - address: "[::1]:25"
  - address: "[::]:465"
    relay_from: []
    tls: { cert_file: )" +
                     (dir / "cert.pem") + ", key_file: " + (dir / "key.pem") + R"(, implicit: true }
  - address: "127.0.0.1:465"
    relay_from: "10.0.0.0/8"
  - address: 2525
    auth: { users_file: "" }
    tls: { cert_file: "", key_file: "" }
    max_sessions: 100000
    max_recipients: 1
    timeout: 1h
aliases: { root: admin@example.com, postmaster: root, Team: [a@example.com, "B@Example.com", Root] }
aliases_file: )" + (dir / "aliases") +
                     R"(
admin_address: admin@example.com
rewrite: { envelope_from: bounce@example.com, masquerade_domains: [Example.COM, mail.example.org] }
)";
  auto r = load_string(yaml, "full.yaml");
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  const Config& c = *r;
  REQUIRE(c.listen.size() == 5);

  const Listener& a = c.listen[0];
  CHECK(a.address == "127.0.0.1:25");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 25);
  REQUIRE(a.relay_from.size() == 5);
  CHECK(a.relay_from[0].to_string() == "127.0.0.0/8");
  CHECK(a.relay_from[1].to_string() == "::1/128");
  CHECK(a.relay_from[4].to_string() == "198.51.100.7/32");
  CHECK(a.relay_allowed("192.168.4.5"));
  CHECK(a.relay_allowed("2001:db8:1::9"));
  CHECK(a.relay_allowed("198.51.100.7"));
  CHECK_FALSE(a.relay_allowed("198.51.100.8"));
  CHECK(a.users_file == dir / "users");
  CHECK(a.tls.cert_file == dir / "cert.pem");
  CHECK(a.tls.key_file == dir / "key.pem");
  CHECK(a.tls.enabled());
  CHECK_FALSE(a.tls.implicit);
  CHECK(a.tls.new_sessions_per_minute == 0);
  CHECK(a.max_sessions == 50);
  CHECK(a.max_recipients == 200);
  CHECK(a.timeout == 2min);
  CHECK(a.max_sessions_per_client == 5);
  CHECK(a.min_data_rate == 0);
  CHECK_FALSE(a.reverse_lookup);

  const Listener& b = c.listen[1];  // every key but address at its default
  CHECK(b.host == "::1");
  CHECK(b.port == 25);
  REQUIRE(b.relay_from.size() == 2);  // loopback only
  CHECK(b.relay_from[0].to_string() == "127.0.0.0/8");
  CHECK(b.relay_from[1].to_string() == "::1/128");
  CHECK(b.relay_allowed("127.0.0.1"));
  CHECK(b.relay_allowed("127.8.9.10"));
  CHECK(b.relay_allowed("::1"));
  CHECK(b.relay_allowed("::ffff:127.0.0.1"));
  CHECK_FALSE(b.relay_allowed("192.0.2.1"));
  CHECK_FALSE(b.relay_allowed("::2"));
  CHECK(b.users_file.empty());
  CHECK_FALSE(b.tls.enabled());
  CHECK_FALSE(b.tls.implicit);
  CHECK(b.tls.new_sessions_per_minute == 100);
  CHECK(b.max_sessions == 100);
  CHECK(b.max_recipients == 1000);
  CHECK(b.timeout == 5min);
  CHECK(b.max_sessions_per_client == 50);
  CHECK(b.min_data_rate == 500);
  CHECK(b.reverse_lookup);

  CHECK(c.listen[2].host == "::");  // [::]:465 and 127.0.0.1:465 do not overlap (IPV6_V6ONLY)
  CHECK(c.listen[2].port == 465);
  CHECK(c.listen[2].relay_from.empty());
  CHECK_FALSE(c.listen[2].relay_allowed("127.0.0.1"));
  CHECK(c.listen[2].tls.implicit);
  REQUIRE(c.listen[3].relay_from.size() == 1);  // a single string for a list
  CHECK(c.listen[3].relay_from[0].to_string() == "10.0.0.0/8");

  const Listener& e = c.listen[4];
  CHECK(e.host.empty());  // a port alone: every address
  CHECK(e.port == 2525);
  CHECK(e.users_file.empty());
  CHECK_FALSE(e.tls.enabled());
  CHECK(e.max_sessions == 100000);
  CHECK(e.max_recipients == 1);
  CHECK(e.timeout == 1h);

  REQUIRE(c.aliases.size() == 4);  // three from the config, ops from the file; the config's root wins
  CHECK(c.aliases_from_file == 1);
  CHECK(c.aliases.at("ops") == std::vector<std::string>{"ops@example.com", "team"});
  CHECK(std::count(c.warnings.begin(), c.warnings.end(),
                   dir / "aliases" + ":4:1: alias 'root' is also in the config's aliases, which win") == 1);
  CHECK(c.aliases.at("root") == std::vector<std::string>{"admin@example.com"});
  CHECK(c.aliases.at("postmaster") == std::vector<std::string>{"root"});
  CHECK(c.aliases.at("team") == std::vector<std::string>{"a@example.com", "B@Example.com", "root"});
  REQUIRE(c.alias("TEAM") != nullptr);
  CHECK(c.alias("TEAM") == &c.aliases.at("team"));
  CHECK(c.alias("nobody") == nullptr);
  CHECK(c.aliases_file == dir / "aliases");
  CHECK(c.admin_address == "admin@example.com");
  CHECK(c.rewrite.envelope_from == "bounce@example.com");
  CHECK(c.rewrite.masquerade_domains == std::vector<std::string>{"example.com", "mail.example.org"});
}

TEST_CASE("rewrite on a route and a relay server overrides the global mapping key by key") {
  auto r = load_string(R"(
rewrite: { envelope_from: bounce@example.com, masquerade_domains: [example.com] }
relays:
  corp:
    servers:
      - host: a
        rewrite: { envelope_from: "" }
      - host: b
routes:
  - match: [partner.example]
    relay: corp
    rewrite: { masquerade_domains: [Corp.Example] }
  - match: [lab.test]
    mx: true
    rewrite: { envelope_from: lab@example.com, masquerade_domains: [] }
  - match: ["*"]
    mx: true
)",
                       "t.yaml");
  REQUIRE(r.ok());
  const Config& c = *r;
  const Route* partner = c.route_for("partner.example");
  REQUIRE(partner != nullptr);
  CHECK_FALSE(partner->rewrite.envelope_from.has_value());
  CHECK(partner->rewrite.masquerade_domains == std::vector<std::string>{"corp.example"});
  Rewrite p = c.rewrite.with(partner->rewrite);
  CHECK(p.envelope_from == "bounce@example.com");  // inherited
  CHECK(p.masquerade_domains == std::vector<std::string>{"corp.example"});
  Rewrite lab = c.rewrite.with(c.route_for("lab.test")->rewrite);
  CHECK(lab.envelope_from == "lab@example.com");
  CHECK(lab.masquerade_domains.empty());  // an empty list turns masquerading off
  CHECK(c.rewrite.with(c.route_for("other.example")->rewrite) == c.rewrite);
  const auto* corp = c.relay("corp");
  REQUIRE(corp != nullptr);
  REQUIRE(corp->servers.size() == 2);
  CHECK(corp->servers[0].rewrite.envelope_from == std::optional<std::string>(""));  // "" keeps the sender
  CHECK_FALSE(corp->servers[0].rewrite.masquerade_domains.has_value());
  CHECK(corp->servers[1].rewrite == RewriteOverride{});
  CHECK(p.with(corp->servers[0].rewrite).envelope_from.empty());
}

TEST_CASE("rewrite errors on routes and relay servers name their key") {
  struct Case {
    std::string yaml, expect;
  };
  const std::vector<Case> cases = {
      {"routes:\n  - { match: [x.org], mx: true, rewrite: { envelope_from: nobody } }\n",
       "t.yaml:2:59: routes[0].rewrite.envelope_from: 'nobody' is not a mailbox (local@domain)"},
      {"routes:\n  - { match: [x.org], mx: true, rewrite: { masquerade_domains: [\"a..b\"] } }\n",
       "t.yaml:2:65: routes[0].rewrite.masquerade_domains: 'a..b' is not a domain name"},
      {"routes:\n  - { match: [x.org], mx: true, rewrite: { from: a@b.c } }\n",
       "t.yaml:2:44: routes[0].rewrite.from: unknown key"},
      {"routes:\n  - { match: [x.org], mx: true, rewrite: yes }\n",
       "t.yaml:2:42: routes[0].rewrite: expected a mapping"},
      {"relays:\n  corp:\n    servers:\n      - host: a\n        rewrite: { envelope_from: \"x@\" }\n",
       "t.yaml:5:35: relays.corp.servers[0].rewrite.envelope_from: 'x@' is not a mailbox (local@domain)"},
  };
  for (const auto& c : cases) {
    INFO("yaml:\n" << c.yaml);
    auto r = load_string(c.yaml, "t.yaml");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == c.expect);
  }
}

TEST_CASE("route policy and bind_address: values, defaults, one address per family") {
  auto r = load_string(
      "delivery:\n  bind_address: [\"127.0.0.1\", \"::1\"]\n"
      "routes:\n"
      "  - { match: [a.test], mx: true, tls: verify, max_sessions: 2, rate_limit: 0.5, bind_address: "
      "127.0.0.1 }\n"
      "  - { match: [b.test], hosts: [\"127.0.0.1:2525\"], bind_address: \"::1\" }\n"
      "  - { match: [\"*\"], mx: true }\n",
      "t.yaml");
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->delivery.bind_address.v4 == "127.0.0.1");
  CHECK(r->delivery.bind_address.v6 == "::1");
  CHECK(r->delivery.bind_address.for_peer("192.0.2.7") == "127.0.0.1");
  CHECK(r->delivery.bind_address.for_peer("2001:db8::7") == "::1");
  const auto& a = r->routes[0].policy;
  CHECK(a.tls == TlsPolicy::verify);
  CHECK(a.max_sessions == 2);
  CHECK(a.rate_limit == 0.5);
  REQUIRE(a.bind_address);
  CHECK(a.bind_address->v4 == "127.0.0.1");
  CHECK(a.bind_address->v6.empty());  // an IPv6 peer gets the kernel's choice, not delivery's
  CHECK(r->routes[1].policy.bind_address->v6 == "::1");
  CHECK_FALSE(r->routes[1].policy.tls);
  CHECK(r->routes[2].policy.empty());
  auto fb = load_string(
      "relays:\n  fb:\n    servers: [{ host: 127.0.0.1 }]\n"
      "routes:\n  - { match: [a.test], hosts: [\"127.0.0.1:2525\"], fallback_relay: fb }\n",
      "t.yaml");
  REQUIRE(fb.ok());
  CHECK(fb->routes[0].policy.fallback_relay == "fb");
  CHECK_FALSE(fb->routes[0].policy.empty());
  auto plain = load_string("delivery:\n  bind_address: \"\"\n", "t.yaml");
  REQUIRE(plain.ok());
  CHECK(plain->delivery.bind_address.empty());
}

TEST_CASE("route policy and bind_address errors name their key") {
  struct Case {
    std::string yaml, expect;
  };
  const std::vector<Case> cases = {
      {"delivery:\n  bind_address: 192.0.2.1\n",
       "t.yaml:2:17: delivery.bind_address: '192.0.2.1' is not an address of this host"},
      {"delivery:\n  bind_address: [127.0.0.1, 127.0.0.2]\n",
       "t.yaml:2:29: delivery.bind_address: a second IPv4 address; give one per family"},
      {"delivery:\n  bind_address: mail.example\n",
       "t.yaml:2:17: delivery.bind_address: 'mail.example' is not an IPv4 or IPv6 address"},
      {"routes:\n  - { match: [x.org], mx: true, bind_address: \"2001:db8::1\" }\n",
       "t.yaml:2:47: routes[0].bind_address: '2001:db8::1' is not an address of this host"},
      {"routes:\n  - { match: [x.org], mx: true, tls: sometimes }\n",
       "t.yaml:2:38: routes[0].tls: 'sometimes' is not one of none | opportunistic"},
      {"relays:\n  g:\n    servers: [{ host: a }]\nroutes:\n  - { match: [x.org], relay: g, tls: verify }\n",
       "t.yaml:5:38: routes[0].tls: a relay group's servers set their own tls"},
      {"delivery:\n  max_sessions: 10\nroutes:\n  - { match: [x.org], mx: true, max_sessions: 11 }\n",
       "t.yaml:4:47: routes[0].max_sessions: must not exceed delivery.max_sessions (10)"},
      {"routes:\n  - { match: [x.org], mx: true, max_sessions: 0 }\n",
       "t.yaml:2:47: routes[0].max_sessions: must be between 1 and 100000, got 0"},
      {"routes:\n  - { match: [x.org], mx: true, rate_limit: -1 }\n", "t.yaml:2:45: routes[0].rate_limit:"},
      {"routes:\n  - { match: [x.org], mx: true, fallback_relay: nope }\n",
       "t.yaml:2:49: routes[0].fallback_relay: unknown relay group 'nope'"},
      {"relays:\n  g:\n    servers: [{ host: a }]\nroutes:\n  - { match: [x.org], relay: g, fallback_relay: "
       "g }\n",
       "t.yaml:5:49: routes[0].fallback_relay: a relay route fails over within its group"},
  };
  for (const auto& c : cases) {
    INFO("yaml:\n" << c.yaml);
    auto r = load_string(c.yaml, "t.yaml");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(c.expect) == 0);
  }
}

TEST_CASE("CIDR networks: parsing and matching") {
  struct Match {
    const char* network;
    const char* ip;
    bool in;
  };
  const std::vector<Match> table = {
      // IPv4
      {"127.0.0.0/8", "127.0.0.1", true},
      {"127.0.0.0/8", "127.255.255.255", true},
      {"127.0.0.0/8", "126.255.255.255", false},
      {"127.0.0.0/8", "128.0.0.0", false},
      {"127.0.0.0/8", "::ffff:127.0.0.1", true},  // IPv4-mapped IPv6 is the IPv4 address
      {"127.0.0.0/8", "[::ffff:127.0.0.1]", true},
      {"127.0.0.0/8", "::FFFF:7f00:1", true},
      {"127.0.0.0/8", "::127.0.0.1", false},  // IPv4-compatible (deprecated) is not
      {"127.0.0.0/8", "::1", false},
      {"127.0.0.0/8", "", false},
      {"127.0.0.0/8", "localhost", false},
      {"127.0.0.0/8", "127.0.0.1/8", false},
      {"127.0.0.0/8", "127.1", false},
      {"172.16.0.0/12", "172.31.255.255", true},
      {"172.16.0.0/12", "172.32.0.0", false},
      {"172.16.0.0/12", "172.15.255.255", false},
      {"10.0.0.0/31", "10.0.0.1", true},
      {"10.0.0.0/31", "10.0.0.2", false},
      {"0.0.0.0/0", "1.2.3.4", true},  // /0: every IPv4 address, no IPv6 one
      {"0.0.0.0/0", "255.255.255.255", true},
      {"0.0.0.0/0", "::ffff:1.2.3.4", true},
      {"0.0.0.0/0", "::1", false},
      {"0.0.0.0/0", "2001:db8::1", false},
      {"192.0.2.1/32", "192.0.2.1", true},  // /32: that address only
      {"192.0.2.1/32", "192.0.2.0", false},
      {"192.0.2.1/32", "192.0.2.2", false},
      {"192.0.2.1", "192.0.2.1", true},  // a bare address is /32
      {"192.0.2.1", "192.0.2.2", false},
      {"192.0.2.1", "::ffff:192.0.2.1", true},
      // IPv6
      {"::1/128", "::1", true},  // /128: that address only
      {"::1/128", "0:0:0:0:0:0:0:1", true},
      {"::1/128", "[::1]", true},
      {"::1/128", "::2", false},
      {"::1/128", "::", false},
      {"::1/128", "127.0.0.1", false},
      {"::1", "::1", true},  // a bare address is /128
      {"::1", "::0:1", true},
      {"2001:db8::1", "2001:db8::2", false},
      {"::/0", "::1", true},  // /0: every IPv6 address, no IPv4 one
      {"::/0", "2001:db8::1", true},
      {"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
      {"::/0", "127.0.0.1", false},
      {"::/0", "::ffff:127.0.0.1", false},
      {"2001:db8::/32", "2001:db8:ffff:ffff::1", true},
      {"2001:db8::/32", "2001:DB8::1", true},
      {"2001:db8::/32", "2001:db9::", false},
      {"2001:db8::/32", "2001:db7:ffff::", false},
      {"fe80::/10", "fe80::1%eth0", true},  // a zone index is not part of the address
      {"fe80::/10", "febf:ffff::1", true},
      {"fe80::/10", "fec0::1", false},
      {"2001:db8::/127", "2001:db8::1", true},
      {"2001:db8::/127", "2001:db8::2", false},
      {"[::1]/128", "::1", true},
      // IPv6 networks inside ::ffff:0:0/96 are IPv4 networks written the other way
      {"::ffff:127.0.0.0/104", "127.0.0.1", true},
      {"::ffff:127.0.0.0/104", "::ffff:127.1.2.3", true},
      {"::ffff:127.0.0.0/104", "128.0.0.1", false},
      {"::ffff:0:0/96", "8.8.8.8", true},
      {"::ffff:0:0/96", "::1", false},
  };
  for (const auto& m : table) {
    INFO(m.network << " contains " << m.ip << " = " << m.in);
    std::string why;
    auto n = parse_network(m.network, &why);
    INFO(why);
    REQUIRE(n);
    CHECK(n->contains(m.ip) == m.in);
  }

  struct Text {
    const char* in;
    const char* canonical;
  };
  for (auto [in, canonical] : std::vector<Text>{{"127.0.0.0/8", "127.0.0.0/8"},
                                                {"192.0.2.1", "192.0.2.1/32"},
                                                {"0.0.0.0/0", "0.0.0.0/0"},
                                                {"::1", "::1/128"},
                                                {"[::1]/128", "::1/128"},
                                                {"[::1]", "::1/128"},
                                                {"2001:DB8:0::/32", "2001:db8::/32"},
                                                {"::/0", "::/0"},
                                                {"::ffff:127.0.0.0/104", "::ffff:127.0.0.0/104"}}) {
    INFO(in);
    auto n = parse_network(in);
    REQUIRE(n);
    CHECK(n->to_string() == canonical);
  }

  struct Bad {
    const char* in;
    const char* why;
  };
  for (auto [in, why] : std::vector<Bad>{
           {"10.1.0.0/8", "has host bits set beyond /8 (the network is 10.0.0.0/8)"},
           {"127.0.0.1/8", "has host bits set beyond /8 (the network is 127.0.0.0/8)"},
           {"192.0.2.1/31", "has host bits set beyond /31 (the network is 192.0.2.0/31)"},
           {"1.2.3.4/0", "has host bits set beyond /0 (the network is 0.0.0.0/0)"},
           {"2001:db8::1/32", "has host bits set beyond /32 (the network is 2001:db8::/32)"},
           {"::1/0", "has host bits set beyond /0 (the network is ::/0)"},
           {"10.0.0.0/33", "has a prefix length over /32"},
           {"::/129", "has a prefix length over /128"},
           {"10.0.0.0/", "has a bad prefix length (use e.g. 10.0.0.0/8 or 2001:db8::/32)"},
           {"10.0.0.0/-8", "has a bad prefix length (use e.g. 10.0.0.0/8 or 2001:db8::/32)"},
           {"10.0.0.0/8/8", "has a bad prefix length (use e.g. 10.0.0.0/8 or 2001:db8::/32)"},
           {"10.0.0.0/0008", "has a bad prefix length (use e.g. 10.0.0.0/8 or 2001:db8::/32)"},
           {"10.0.0.0/ 8", "has a bad prefix length (use e.g. 10.0.0.0/8 or 2001:db8::/32)"},
           {"", "is not an IPv4 or IPv6 address or network"},
           {"/8", "is not an IPv4 or IPv6 address or network"},
           {"localhost", "is not an IPv4 or IPv6 address or network"},
           {"10.0.0", "is not an IPv4 or IPv6 address or network"},
           {"10.0.0.256", "is not an IPv4 or IPv6 address or network"},
           {"010.0.0.0/8", "is not an IPv4 or IPv6 address or network"},
           {"[127.0.0.1]", "is not an IPv4 or IPv6 address or network"},
           {"fe80::1%eth0", "is not an IPv4 or IPv6 address or network"},
           {"2001:db8:::/32", "is not an IPv4 or IPv6 address or network"},
       }) {
    INFO(in);
    std::string got;
    CHECK_FALSE(parse_network(in, &got));
    CHECK(got == why);
  }
}

TEST_CASE("listener addresses") {
  struct Good {
    const char* in;
    const char* host;
    int port;
    const char* canonical;
  };
  for (const auto& g : std::vector<Good>{{"127.0.0.1:25", "127.0.0.1", 25, "127.0.0.1:25"},
                                         {"[::1]:25", "::1", 25, "[::1]:25"},
                                         {"[0:0::1]:2525", "::1", 2525, "[::1]:2525"},
                                         {"[::]:587", "::", 587, "[::]:587"},
                                         {"0.0.0.0:25", "0.0.0.0", 25, "0.0.0.0:25"},
                                         {"25", "", 25, "*:25"},
                                         {"1", "", 1, "*:1"},
                                         {"65535", "", 65535, "*:65535"},
                                         {"192.0.2.1:65535", "192.0.2.1", 65535, "192.0.2.1:65535"}}) {
    INFO(g.in);
    std::string why;
    auto a = parse_listen_address(g.in, &why);
    INFO(why);
    REQUIRE(a);
    CHECK(a->host == g.host);
    CHECK(a->port == g.port);
    CHECK(a->to_string() == g.canonical);
  }
  struct Bad {
    const char* in;
    const char* why;
  };
  for (auto [in, why] : std::vector<Bad>{
           {"0", "has a bad port (1 to 65535)"},
           {"65536", "has a bad port (1 to 65535)"},
           {"99999999999", "has a bad port (1 to 65535)"},
           {"127.0.0.1:0", "has a bad port (1 to 65535)"},
           {"127.0.0.1:65536", "has a bad port (1 to 65535)"},
           {"127.0.0.1:", "has a bad port (1 to 65535)"},
           {"127.0.0.1:smtp", "has a bad port (1 to 65535)"},
           {"127.0.0.1:-25", "has a bad port (1 to 65535)"},
           {"[::1]:0", "has a bad port (1 to 65535)"},
           {"[::1]:", "has a bad port (1 to 65535)"},
           {"127.0.0.1", "needs a port, e.g. 127.0.0.1:25"},
           {"[::1]", "needs a port, e.g. [::1]:25"},
           {"::1:25", "needs brackets around an IPv6 address, e.g. [::1]:25"},
           {"::1", "needs brackets around an IPv6 address, e.g. [::1]:25"},
           {"localhost:25",
            "is not an IP address with a port (host names are not accepted), e.g. 127.0.0.1:25"},
           {"*:25", "is not an IP address with a port (host names are not accepted), e.g. 127.0.0.1:25"},
           {"localhost", "is not an IP address with a port, e.g. 127.0.0.1:25"},
           {"", "is not an IP address with a port, e.g. 127.0.0.1:25"},
           {"[127.0.0.1]:25", "is not [IPv6 address]:port"},
           {"[::1:25", "is not [IPv6 address]:port"},
       }) {
    INFO(in);
    std::string got;
    CHECK_FALSE(parse_listen_address(in, &got));
    CHECK(got == why);
  }
}

// Each kind of bad value of the listener and local-mail keys, with its whole error message.
TEST_CASE("listener and local-mail errors: the exact message, line and column") {
  test::TempDir dir;
  test::write_file(dir / "cert.pem", "x\n");
  test::write_file(dir / "key.pem", "x\n");
  std::filesystem::create_directory(dir / "sub");
  const std::string cert = dir / "cert.pem", key = dir / "key.pem", sub = dir / "sub";
  struct Case {
    std::string yaml;
    std::string expect;  // the whole error message
  };
  const std::vector<Case> cases = {
      // listen
      {"listen: { address: 25 }\n", "t.yaml:1:9: listen: expected a list of listeners"},
      {"listen: 25\n", "t.yaml:1:9: listen: expected a list of listeners"},
      {"listen:\n  - 25\n", "t.yaml:2:5: listen[0]: expected a mapping"},
      {"listen:\n  - max_sessions: 5\n", "t.yaml:2:5: listen[0]: missing 'address'"},
      {"listen:\n  - { address: \"25\", relay: [] }\n",
       "t.yaml:2:22: listen[0].relay: unknown key (did you mean 'relay_from'?)"},
      {"listen:\n  - { address: \"25\", timout: 5m }\n",
       "t.yaml:2:22: listen[0].timout: unknown key (did you mean 'timeout'?)"},
      {"listen:\n  - address: [\"25\"]\n",
       "t.yaml:2:14: listen[0].address: expected an address like 127.0.0.1:25, [::1]:25 or 25"},
      {"listen:\n  - address: 127.0.0.1\n",
       "t.yaml:2:14: listen[0].address: '127.0.0.1' needs a port, e.g. 127.0.0.1:25"},
      {"listen:\n  - address: \"127.0.0.1:0\"\n",
       "t.yaml:2:14: listen[0].address: '127.0.0.1:0' has a bad port (1 to 65535)"},
      {"listen:\n  - address: 0\n", "t.yaml:2:14: listen[0].address: '0' has a bad port (1 to 65535)"},
      {"listen:\n  - address: 65536\n",
       "t.yaml:2:14: listen[0].address: '65536' has a bad port (1 to 65535)"},
      {"listen:\n  - address: \"[::1]:70000\"\n",
       "t.yaml:2:14: listen[0].address: '[::1]:70000' has a bad port (1 to 65535)"},
      {"listen:\n  - address: \"localhost:25\"\n",
       "t.yaml:2:14: listen[0].address: 'localhost:25' is not an IP address with a port (host names are not "
       "accepted), e.g. 127.0.0.1:25"},
      {"listen:\n  - address: \"::1:25\"\n",
       "t.yaml:2:14: listen[0].address: '::1:25' needs brackets around an IPv6 address, e.g. [::1]:25"},
      {"listen:\n  - address: \"[127.0.0.1]:25\"\n",
       "t.yaml:2:14: listen[0].address: '[127.0.0.1]:25' is not [IPv6 address]:port"},
      {"listen:\n  - address: \"127.0.0.1:25\"\n  - address: \"127.0.0.1:25\"\n",
       "t.yaml:3:14: listen[1].address: '127.0.0.1:25' is the same address as listen[0] ('127.0.0.1:25')"},
      {"listen:\n  - address: \"[::1]:25\"\n  - address: \"127.0.0.1:25\"\n  - address: \"[0::1]:25\"\n",
       "t.yaml:4:14: listen[2].address: '[0::1]:25' is the same address as listen[0] ('[::1]:25')"},
      {"listen:\n  - address: 25\n  - address: \"127.0.0.1:25\"\n",
       "t.yaml:3:14: listen[1].address: '127.0.0.1:25' overlaps listen[0] ('25') on port 25"},
      {"listen:\n  - address: \"[::1]:25\"\n  - address: 25\n",
       "t.yaml:3:14: listen[1].address: '25' overlaps listen[0] ('[::1]:25') on port 25"},
      {"listen:\n  - address: \"0.0.0.0:25\"\n  - address: \"127.0.0.1:25\"\n",
       "t.yaml:3:14: listen[1].address: '127.0.0.1:25' overlaps listen[0] ('0.0.0.0:25') on port 25"},
      {"listen:\n  - address: \"[::1]:25\"\n  - address: \"[::]:25\"\n",
       "t.yaml:3:14: listen[1].address: '[::]:25' overlaps listen[0] ('[::1]:25') on port 25"},
      // listen[].relay_from
      {"listen:\n  - address: 25\n    relay_from: [\"10.1.0.0/8\"]\n",
       "t.yaml:3:18: listen[0].relay_from: '10.1.0.0/8' has host bits set beyond /8 (the network is "
       "10.0.0.0/8)"},
      {"listen:\n  - address: 25\n    relay_from: [\"::1/128\", \"2001:db8::1/32\"]\n",
       "t.yaml:3:29: listen[0].relay_from: '2001:db8::1/32' has host bits set beyond /32 (the network is "
       "2001:db8::/32)"},
      {"listen:\n  - address: 25\n    relay_from: 127.0.0.1/33\n",
       "t.yaml:3:17: listen[0].relay_from: '127.0.0.1/33' has a prefix length over /32"},
      {"listen:\n  - address: 25\n    relay_from: [\"::/200\"]\n",
       "t.yaml:3:18: listen[0].relay_from: '::/200' has a prefix length over /128"},
      {"listen:\n  - address: 25\n    relay_from: [localhost]\n",
       "t.yaml:3:18: listen[0].relay_from: 'localhost' is not an IPv4 or IPv6 address or network"},
      {"listen:\n  - address: 25\n    relay_from: [\"10.0.0.0/x\"]\n",
       "t.yaml:3:18: listen[0].relay_from: '10.0.0.0/x' has a bad prefix length (use e.g. 10.0.0.0/8 or "
       "2001:db8::/32)"},
      {"listen:\n  - address: 25\n    relay_from: { a: b }\n",
       "t.yaml:3:17: listen[0].relay_from: expected a list of strings"},
      // listen[].auth
      {"listen:\n  - address: 25\n    auth: { users_file: /nonexistent/users }\n",
       "t.yaml:3:25: listen[0].auth.users_file: cannot read '/nonexistent/users': No such file or directory"},
      {"listen:\n  - address: 25\n    auth: { users_file: " + sub + " }\n",
       "t.yaml:3:25: listen[0].auth.users_file: '" + sub + "' is not a regular file"},
      {"listen:\n  - address: 25\n    auth: { users_file: [a] }\n",
       "t.yaml:3:25: listen[0].auth.users_file: expected a path"},
      {"listen:\n  - address: 25\n    auth: { user: x }\n",
       "t.yaml:3:13: listen[0].auth.user: unknown key (did you mean 'users_file'?)"},
      {"listen:\n  - address: 25\n    auth: /etc/users\n", "t.yaml:3:11: listen[0].auth: expected a mapping"},
      // listen[].tls
      {"listen:\n  - address: 25\n    tls: { cert_file: " + cert + " }\n",
       "t.yaml:3:10: listen[0].tls: cert_file needs key_file too"},
      {"listen:\n  - address: 25\n    tls: { key_file: " + key + " }\n",
       "t.yaml:3:10: listen[0].tls: key_file needs cert_file too"},
      {"listen:\n  - address: 25\n    tls: { implicit: true }\n",
       "t.yaml:3:22: listen[0].tls.implicit: needs cert_file and key_file"},
      {"listen:\n  - address: 25\n    tls: { cert_file: \"\", key_file: \"\", implicit: yes }\n",
       "t.yaml:3:51: listen[0].tls.implicit: needs cert_file and key_file"},
      {"listen:\n  - address: 25\n    tls: { cert_file: /nonexistent/c.pem, key_file: " + key + " }\n",
       "t.yaml:3:23: listen[0].tls.cert_file: cannot read '/nonexistent/c.pem': No such file or directory"},
      {"listen:\n  - address: 25\n    tls: { cert_file: " + cert + ", key_file: " + sub + " }\n",
       "t.yaml:3:" + std::to_string(35 + cert.size()) + ": listen[0].tls.key_file: '" + sub +
           "' is not a regular file"},
      {"listen:\n  - address: 25\n    tls: { implicit: maybe }\n",
       "t.yaml:3:22: listen[0].tls.implicit: expected true or false, got 'maybe'"},
      {"listen:\n  - address: 25\n    tls: { starttls: true }\n",
       "t.yaml:3:12: listen[0].tls.starttls: unknown key"},
      {"listen:\n  - address: 25\n    tls: true\n", "t.yaml:3:10: listen[0].tls: expected a mapping"},
      // listen[] limits
      {"listen:\n  - address: 25\n    max_sessions: 0\n",
       "t.yaml:3:19: listen[0].max_sessions: must be between 1 and 100000, got 0"},
      {"listen:\n  - address: 25\n    max_sessions: 100001\n",
       "t.yaml:3:19: listen[0].max_sessions: must be between 1 and 100000, got 100001"},
      {"listen:\n  - address: 25\n    max_sessions: many\n",
       "t.yaml:3:19: listen[0].max_sessions: expected an integer, got 'many'"},
      {"listen:\n  - address: 25\n    max_sessions_per_client: 0\n",
       "t.yaml:3:30: listen[0].max_sessions_per_client: must be between 1 and 100000, got 0"},
      {"listen:\n  - address: 25\n    tls: { new_sessions_per_minute: -1 }\n",
       "t.yaml:3:37: listen[0].tls.new_sessions_per_minute: must be between 0 and 1000000, got -1"},
      {"listen:\n  - address: 25\n    min_data_rate: -1\n",
       "t.yaml:3:20: listen[0].min_data_rate: must be between 0 and 1000000000, got -1"},
      {"listen:\n  - address: 25\n    max_recipients: 0\n",
       "t.yaml:3:21: listen[0].max_recipients: must be between 1 and 100000, got 0"},
      {"listen:\n  - address: 25\n    max_recipients: -5\n",
       "t.yaml:3:21: listen[0].max_recipients: must be between 1 and 100000, got -5"},
      {"listen:\n  - address: 25\n    timeout: 500ms\n",
       "t.yaml:3:14: listen[0].timeout: must be at least 1000ms, got '500ms'"},
      {"listen:\n  - address: 25\n    timeout: 0\n",
       "t.yaml:3:14: listen[0].timeout: must be at least 1000ms, got '0'"},
      {"listen:\n  - address: 25\n    timeout: 2h\n",
       "t.yaml:3:14: listen[0].timeout: must be at most 3600000ms, got '2h'"},
      {"listen:\n  - address: 25\n    timeout: never\n",
       "t.yaml:3:14: listen[0].timeout: bad duration 'never' (use e.g. 90, 90s, 500ms, 30m, 4h, 2d)"},
      // aliases
      {"alias: {}\n", "t.yaml:1:1: alias: unknown key (did you mean 'aliases'?)"},
      {"aliases: [root]\n", "t.yaml:1:10: aliases: expected a mapping of local names to addresses"},
      {"aliases: { root@example.com: admin@example.com }\n",
       "t.yaml:1:12: aliases.root@example.com: an alias is a local name, without '@'"},
      {"aliases: { \"ro ot\": admin@example.com }\n",
       "t.yaml:1:12: aliases.ro ot: 'ro ot' is not a local name"},
      {"aliases: { .root: admin@example.com }\n", "t.yaml:1:12: aliases..root: '.root' is not a local name"},
      {"aliases:\n  root: a@example.com\n  Root: b@example.com\n",
       "t.yaml:3:3: aliases.Root: duplicate alias (names are compared without case)"},
      {"aliases: { root: \"a@@example.com\" }\n",
       "t.yaml:1:18: aliases.root: 'a@@example.com' is not a mailbox (local@domain) or a local name"},
      {"aliases: { root: \"admin@\" }\n",
       "t.yaml:1:18: aliases.root: 'admin@' is not a mailbox (local@domain) or a local name"},
      {"aliases: { root: [a@example.com, \"b c\"] }\n",
       "t.yaml:1:34: aliases.root: 'b c' is not a mailbox (local@domain) or a local name"},
      {"aliases: { root: [] }\n", "t.yaml:1:18: aliases.root: expected at least one address"},
      {"aliases:\n  root:\n", "t.yaml:2:3: aliases.root: expected an address or a list of addresses"},
      {"aliases: { root: { a: b } }\n",
       "t.yaml:1:18: aliases.root: expected an address or a list of addresses"},
      {"aliases:\n  root: postmaster\n  postmaster: [a@example.com, root]\n",
       "t.yaml:2:3: aliases.root: alias loop: root -> postmaster -> root"},
      {"aliases: { a: b, b: c, c: A, d: a }\n", "t.yaml:1:12: aliases.a: alias loop: a -> b -> c -> a"},
      {"aliases: { root: Root }\n", "t.yaml:1:12: aliases.root: alias loop: root -> root"},
      {"aliases: { x: a, a: [b, x@example.com], b: a, p: q, q: [p] }\n",
       "t.yaml:1:18: aliases.a: alias loop: a -> b -> a\n"
       "t.yaml:1:47: aliases.p: alias loop: p -> q -> p"},
      // aliases_file, admin_address, rewrite
      {"aliases_file: /nonexistent/aliases\n",
       "t.yaml:1:15: aliases_file: cannot read '/nonexistent/aliases': No such file or directory"},
      {"aliases_file: " + sub + "\n", "t.yaml:1:15: aliases_file: '" + sub + "' is not a regular file"},
      {"admin_address: admin\n", "t.yaml:1:16: admin_address: 'admin' is not a mailbox (local@domain)"},
      {"admin_address: \"<admin@example.com>\"\n",
       "t.yaml:1:16: admin_address: '<admin@example.com>' is not a mailbox (local@domain)"},
      {"admin_address: [a@example.com]\n",
       "t.yaml:1:16: admin_address: expected a mailbox (local@domain) or \"\""},
      {"rewrite: { envelope_from: \"bounce@\" }\n",
       "t.yaml:1:27: rewrite.envelope_from: 'bounce@' is not a mailbox (local@domain)"},
      {"rewrite: { envelope_from: \"<>\" }\n",
       "t.yaml:1:27: rewrite.envelope_from: '<>' is not a mailbox (local@domain)"},
      {"rewrite: { masquerade_domains: [example.com, \"!host.example.com\"] }\n",
       "t.yaml:1:46: rewrite.masquerade_domains: '!host.example.com' is not a domain name"},
      {"rewrite: { masquerade_domains: \"example..com\" }\n",
       "t.yaml:1:32: rewrite.masquerade_domains: 'example..com' is not a domain name"},
      {"rewrite: { masquerade_domains: [\"-x.example\"] }\n",
       "t.yaml:1:33: rewrite.masquerade_domains: '-x.example' is not a domain name"},
      {"rewrite: { from: a@example.com }\n", "t.yaml:1:12: rewrite.from: unknown key"},
      {"rewrite: a@example.com\n", "t.yaml:1:10: rewrite: expected a mapping"},
      // hooks
      {"hooks: { on_outcome: { exec: \"bin/hook\" } }\n",
       "t.yaml:1:30: hooks.on_outcome.exec: 'bin/hook' must be an absolute path"},
      {"hooks: { on_outcome: { exec: \"/nonexistent/hook --x\" } }\n",
       "t.yaml:1:30: hooks.on_outcome.exec: '/nonexistent/hook' is not an executable file"},
      {"hooks: { on_outcome: { exec: \"" + cert + "\" } }\n",
       "t.yaml:1:30: hooks.on_outcome.exec: '" + cert + "' is not an executable file"},
      {"hooks: { on_outcome: { exec: \"/bin/sh -c 'x\" } }\n",
       "t.yaml:1:30: hooks.on_outcome.exec: unterminated single quote"},
      {"hooks: { on_outcome: { statuses: [bounced, lost] } }\n",
       "t.yaml:1:44: hooks.on_outcome.statuses: 'lost' is not sent, deferred, bounced or expired"},
      {"hooks: { on_outcome: { statuses: [] } }\n",
       "t.yaml:1:34: hooks.on_outcome.statuses: expected at least one status"},
      {"hooks: { on_outcome: { max_running: 0 } }\n",
       "t.yaml:1:37: hooks.on_outcome.max_running: must be between 1 and 64, got 0"},
      {"hooks: { on_outcome: { timeout: 0s } }\n",
       "t.yaml:1:33: hooks.on_outcome.timeout: must be at least 1000ms, got '0s'"},
      {"hooks: { on_result: {} }\n", "t.yaml:1:10: hooks.on_result: unknown key"},
      // usage_log
      {"usage_log: { file: usage.log }\n",
       "t.yaml:1:20: usage_log.file: 'usage.log' must be an absolute path"},
      {"usage_log: { file: [a] }\n", "t.yaml:1:20: usage_log.file: expected a file name"},
      {"usage_log: { interval: 500ms }\n",
       "t.yaml:1:24: usage_log.interval: must be at least 1000ms, got '500ms'"},
      {"usage_log: { interval: 32d }\n",
       "t.yaml:1:24: usage_log.interval: must be at most 2678400000ms, got '32d'"},
      {"usage_log: { save_interval: 2h }\n",
       "t.yaml:1:29: usage_log.save_interval: must be at most 3600000ms, got '2h'"},
      {"usage_log: { save_intervall: 2s }\n",
       "t.yaml:1:14: usage_log.save_intervall: unknown key (did you mean 'save_interval'?)"},
      {"usage_log: /var/log/usage\n", "t.yaml:1:12: usage_log: expected a mapping"},
  };
  for (const auto& c : cases) {
    INFO("yaml:\n" << c.yaml);
    auto r = load_string(c.yaml, "t.yaml");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == c.expect);
  }
}

TEST_CASE("errors in several listeners and aliases are all reported") {
  auto r = load_string(
      "listen:\n  - address: 0\n  - address: 25\n    max_sessions: 0\naliases: { root: x@ }\nadmin_address: "
      "y\n",
      "t.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        "t.yaml:2:14: listen[0].address: '0' has a bad port (1 to 65535)\n"
        "t.yaml:4:19: listen[1].max_sessions: must be between 1 and 100000, got 0\n"
        "t.yaml:5:18: aliases.root: 'x@' is not a mailbox (local@domain) or a local name\n"
        "t.yaml:6:16: admin_address: 'y' is not a mailbox (local@domain)");
}

TEST_CASE("a long chain of aliases is no loop") {
  std::string yaml = "aliases:\n";
  for (int i = 0; i < 3000; ++i) yaml += "  a" + std::to_string(i) + ": a" + std::to_string(i + 1) + "\n";
  yaml += "  a3000: admin@example.com\n";
  auto r = load_string(yaml, "t.yaml");
  INFO((r.ok() ? "" : r.error().message.substr(0, 300)));
  REQUIRE(r.ok());
  CHECK(r->aliases.size() == 3001);
  CHECK(*r->alias("A0") == std::vector<std::string>{"a1"});
  auto loop = load_string(yaml + "  a3001: a0\n  zz: x@example.com\n", "t.yaml");
  REQUIRE(loop.ok());  // a3001 leads into the chain, not back to itself
  auto closed = load_string(yaml.substr(0, yaml.rfind("  a3000:")) + "  a3000: a0\n", "t.yaml");
  REQUIRE_FALSE(closed.ok());
  CHECK(closed.error().message.rfind("t.yaml:2:3: aliases.a0: alias loop: a0 -> a1 -> a2 -> ", 0) == 0);
  CHECK(closed.error().message.find("\n") == std::string::npos);  // one loop, one error
}

TEST_CASE("files named by listen[] and aliases_file must be readable by the loader") {
  if (geteuid() == 0) return;  // root reads every file: nothing to test
  test::TempDir dir;
  test::write_file(dir / "users", "u:x\n");
  REQUIRE(chmod((dir / "users").c_str(), 0) == 0);
  auto r =
      load_string("listen:\n  - address: 25\n    auth: { users_file: " + (dir / "users") + " }\n", "t.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        "t.yaml:3:25: listen[0].auth.users_file: cannot read '" + (dir / "users") + "': Permission denied");
}

TEST_CASE("aliases_file: its bad lines are config errors at the file's line:col") {
  test::TempDir dir;
  std::string file = dir / "aliases";
  test::write_file(file, "postmaster: root\nwww: |/usr/bin/handler\nbad line\n");
  std::string yaml = "hostname: mail.example.com\naliases_file: " + file + "\n";
  auto r = load_string(yaml, "t.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == file +
                                 ":2:6: '|/usr/bin/handler': delivery to a command is not supported (spoold "
                                 "only forwards mail)\n" +
                                 file + ":3:1: expected 'name: address, ...'");
  // sendmail, mailq and spoolctl do not read it: a bad line must not stop mail being submitted.
  auto skipped = load_string(yaml, "t.yaml", LoadOptions{.read_aliases_file = false});
  REQUIRE(skipped.ok());
  CHECK(skipped->aliases.empty());
  CHECK(skipped->aliases_file == file);
}

TEST_CASE("aliases_file: loops across the config and the file, through @hostname") {
  test::TempDir dir;
  std::string file = dir / "aliases";
  test::write_file(file, "# x\npostmaster: Root@Mail.Example.com\nteam: a@example.com\n");
  auto r = load_string(
      "hostname: mail.example.com\naliases: { root: [team, postmaster] }\naliases_file: " + file + "\n",
      "t.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "t.yaml:2:12: aliases.root: alias loop: root -> postmaster -> root");
  test::write_file(file, "a: b@localhost\nb: a\n");
  auto f = load_string("aliases_file: " + file + "\n", "t.yaml");
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().message == file + ":1:1: alias loop: a -> b -> a");
  test::write_file(file, "a: b@localhost\nb: a@elsewhere.example\n");
  auto ok = load_string("hostname: mail.example.com\naliases_file: " + file + "\n", "t.yaml");
  INFO((ok.ok() ? "" : ok.error().message));
  REQUIRE(ok.ok());
  CHECK(ok->aliases_from_file == 2);
  CHECK(ok->warnings.empty());
}

TEST_CASE("hooks.on_outcome: defaults, a command line split into words") {
  auto d = load_string("{}\n");
  REQUIRE(d.ok());
  CHECK_FALSE(d->hooks.on_outcome.enabled());
  CHECK(d->hooks.on_outcome.statuses == std::vector<std::string>{"bounced", "expired"});
  CHECK(d->hooks.on_outcome.max_running == 4);
  CHECK(d->hooks.on_outcome.timeout == std::chrono::seconds(10));
  CHECK_FALSE(d->hooks.on_outcome.wants("bounced"));  // no program: nothing wanted
  auto c = load_string(
      "hooks:\n  on_outcome: { exec: \"/bin/sh -c 'cat >> \\\"/tmp/o u t\\\"' hook\", statuses: [sent, "
      "bounced], "
      "max_running: 2, timeout: 3s }\n");
  REQUIRE(c.ok());
  const auto& h = c->hooks.on_outcome;
  CHECK(h.argv == std::vector<std::string>{"/bin/sh", "-c", "cat >> \"/tmp/o u t\"", "hook"});
  CHECK(h.wants("sent"));
  CHECK_FALSE(h.wants("deferred"));
  CHECK(h.max_running == 2);
  CHECK(h.timeout == std::chrono::seconds(3));
}

TEST_CASE("split_command: words, quotes, escapes") {
  using V = std::vector<std::string>;
  CHECK(*split_command("") == V{});
  CHECK(*split_command("  /bin/x   a\tb ") == V{"/bin/x", "a", "b"});
  CHECK(*split_command("/bin/x \"a b\" 'c d' e\"f g\"h") == V{"/bin/x", "a b", "c d", "ef gh"});
  CHECK(*split_command("/bin/x \"a\\\"b\" 'a\\b' \"\"") == V{"/bin/x", "a\"b", "a\\b", ""});
  CHECK_FALSE(split_command("/bin/x \"a").ok());
  CHECK_FALSE(split_command("/bin/x 'a").ok());
}
