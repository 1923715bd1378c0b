// tests/config/fast_yaml_test.cpp — the fast YAML subset parser against yaml-cpp: whatever it
// accepts must be exactly yaml-cpp's tree; what it does not know it must leave to yaml-cpp; and the
// configs people actually write (the shipped file, the documented example) must take the fast path.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "config/config.h"
#include "config/fast_yaml.h"

using spoold::config::fast_load;
using spoold::config::same_tree;

namespace {

// True if fast_load accepted `text`; then yaml-cpp must parse it to the same tree.
bool accepted_and_same(const std::string& text) {
  auto fast = fast_load(text);
  if (!fast) return false;
  YAML::Node slow;
  try {
    slow = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    FAIL_CHECK("fast path accepted what yaml-cpp refuses (" << e.what() << "):\n" << text);
    return true;
  }
  INFO(text);
  CHECK(same_tree(*fast, slow));
  return true;
}

std::string read_source(const std::string& rel) {
  std::ifstream in(std::string(SPOOLD_SOURCE_DIR) + "/" + rel);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The shipped file with every key uncommented ("#key:" → "key:"), i.e. every default spelled out.
std::string uncommented(const std::string& text) {
  std::string out, line;
  std::istringstream in(text);
  while (std::getline(in, line)) {
    size_t i = line.find_first_not_of(' ');
    if (i != std::string::npos && line[i] == '#' && i + 1 < line.size() && line[i + 1] != ' ' &&
        line[i + 1] != '#')
      line.erase(i, 1);
    out += line + "\n";
  }
  return out;
}

const char* kExample = R"(hostname: mail.example.com        # EHLO name
instance: ""
spool_dir: /var/spool/spoold
control_socket: /run/spoold/control.sock

queue:
  scan_interval: 20s              # Mail::Spool dequeue_timeout
  tiers:                          # Mail::Spool dequeue_periods / dequeue_priority
    - { delay: 0,   priority: 1 }     # tier k is scanned every priority*scan_interval;
    - { delay: 30m, priority: 3 }
    - { delay: 48h, priority: 200 }
  max_message_size: 50MB
  lock_stale_after: 10m           # a lock not refreshed for this long may be broken

delivery:
  max_sessions: 20
  tls: opportunistic              # none | opportunistic | required | verify
  ca_file: ""                     # default: the system store
  timeouts: { connect: 30s, greeting: 5m, ehlo: 5m, mail: 5m, rcpt: 5m, data: 2m, block: 3m, dot: 10m }

dns:
  servers: []                     # e.g. ["127.0.0.1:5353"]; default: /etc/resolv.conf
  address_preference: any

relays:
  corp:
    strategy: round_robin
    servers:
      - host: smtp1.example.org
        port: 587
        tls: starttls
        auth: { mechanism: auto, user: mailer, password_file: /etc/spoold/corp.pw }
        sleep_length: 0s
      - host: smtp2.example.org

routes:                           # first match wins; unmatched domains go by MX
  - { match: ["example.org", "*.example.org"], relay: corp }
  - { match: ["lab.test"], hosts: ["127.0.0.1:2525"] }   # static next hop, no MX lookup
  - { match: ["*"], mx: true }

logging: { level: info, format: text }   # format: text | json
)";

}  // namespace

TEST_CASE("the documented and shipped configs take the fast path, giving yaml-cpp's tree", "[config][yaml]") {
  CHECK(accepted_and_same(kExample));
  std::string shipped = read_source("packaging/spoold.yaml");
  REQUIRE_FALSE(shipped.empty());
  CHECK(accepted_and_same(shipped));
  CHECK(accepted_and_same(uncommented(shipped)));
  // What the benchmark's sendmail loads once per message.
  CHECK(
      accepted_and_same("hostname: spoold-bench.test\nspool_dir: /var/tmp/x/spool\ncontrol_socket: "
                        "/var/tmp/x/control.sock\ndelivery: { tls: none }\nlogging: { level: info, format: "
                        "text }\nroutes:\n  - { match: [\"*\"], hosts: [\"127.0.0.1:2525\"] }\n"));
  // And the loader's result is the same either way (without auth: its password file must exist).
  std::string no_pw = kExample;
  size_t a = no_pw.find("        auth: {");
  no_pw.erase(a, no_pw.find('\n', a) + 1 - a);
  auto fast = spoold::config::load_string(no_pw, "x.yaml");
  INFO((fast.ok() ? "" : fast.error().message));
  REQUIRE(fast.ok());
  CHECK(fast->relays.size() == 1);
  CHECK(fast->routes.size() == 3);
}

TEST_CASE("the fast path accepts only what it parses exactly like yaml-cpp", "[config][yaml]") {
  struct Case {
    const char* text;
    bool fast;  // expected to be taken by the fast path
  };
  const Case cases[] = {
      {"", true},
      {"# only a comment\n\n", true},
      {"a: 1\n", true},
      {"a:\n", true},  // null
      {"a: ~\nb: null\nc: Null\nd: NULL\ne: nulls\n", true},
      {"a: 'it''s'\nb: \"q\\\"x\\\\y\\n\"\nc: \"\"\n", true},
      {"a: b:c\n", true},
      {"a: x # c\nb: y  # d\n", true},
      {"b: y#z\n", false},      // '#' (and ? & * ! ...) inside a plain scalar: yaml-cpp
      {"a: [20?  ]\n", false},  // yaml-cpp refuses this one (found by fuzz/config_fuzz)
      {"a:\n  b:\n    c: 1\n  d: [1, 2, [3]]\n", true},
      {"a:\n- 1\n- 2\n", true},
      {"a:\n  - x: 1\n    y: 2\n  - z\n  -\n    w: 3\n", true},
      {"a: { b: 1, c: { d: [] }, e: {} }\n", true},
      {"a: [ \"x\", 'y', z ]\n", true},
      {"  a: 1\n  b: 2\n", true},
      {"a: 1   \n", true},
      {"- a\n- b\n", true},
      {"a: 1\n a: 2\n", false},           // bad indentation
      {"a: 1\na: 2\n", false},            // a duplicate key: yaml-cpp and the loader's error
      {"a: &x 1\nb: *x\n", false},        // anchors
      {"a: !!str 1\n", false},            // tags
      {"a: |\n  text\n", false},          // block scalars
      {"a: long\n  line\n", false},       // a multi-line plain scalar
      {"a: \"open\n", false},             // unterminated
      {"a: \"\\x41\"\n", false},          // escapes beyond the simple ones
      {"a:\tb\n", false},                 // tabs
      {"a: 1\r\n", false},                // CR
      {"# \x01\na: 1\n", false},          // control characters, in a comment too
      {"# \u00e9t\u00e9\na: 1\n", true},  // non-ASCII in a comment is fine
      {"---\na: 1\n", false},             // documents
      {"? a\n: b\n", false},              // complex keys
      {"a: {b: 1,}\n", false},            // trailing comma
      {"a: [b: 1]\n", false},             // a pair in a flow sequence
      {"a: [x:1]\n", false},              // ':' in a flow scalar
      {"a: b: c\n", false},               // a mapping as a scalar value
      {"- - a\n", false},
      {"null: 1\n", false},  // a null key
      {"a: -1\n", false},    // indicators at a scalar's start are yaml-cpp's
      {"a: [1, 2\n", false},
      {"a: { b: 1 } x\n", false},
      {"a: h\u00e9\n", false},  // non-ASCII
  };
  for (const auto& c : cases) {
    INFO(c.text);
    CHECK(accepted_and_same(c.text) == c.fast);
  }
  // A NUL in a comment ends yaml-cpp's stream: that file is yaml-cpp's (found by fuzz/config_fuzz).
  CHECK_FALSE(accepted_and_same(std::string("#\0\0\nhostname: mail.example.com\n", 31)));
}

TEST_CASE("a config error found on the fast tree is reported with yaml-cpp's line and column",
          "[config][yaml]") {
  auto r = spoold::config::load_string("queue:\n  scan_interval: banana\n", "x.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.rfind("x.yaml:2:18:", 0) == 0);
  auto u = spoold::config::load_string("delivery: { tls: none, max_sesions: 3 }\n", "y.yaml");
  REQUIRE_FALSE(u.ok());
  CHECK(u.error().message.rfind("y.yaml:1:24:", 0) == 0);
}
