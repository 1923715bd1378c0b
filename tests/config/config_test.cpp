// tests/config/config_test.cpp — the config loader: defaults, the full example configuration, and a
// table of bad files, each with the exact line:col and key its error must name.
#include <sys/stat.h>
#include <catch2/catch.hpp>

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
