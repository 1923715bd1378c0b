// tests/daemon/delivery_pieces_test.cpp — the pure pieces the delivery engine is made of, by table:
// what a reply means (classify.h), what a closed session means for its server, the rate limit
// (token_bucket.h), a relay group's message counts (relay_quota.h) and the session settings made
// from the config (smtp_options.h).
#include <catch2/catch.hpp>

#include "daemon/classify.h"
#include "daemon/mx_site.h"
#include "daemon/relay_quota.h"
#include "daemon/router.h"
#include "daemon/smtp_options.h"
#include "daemon/token_bucket.h"

using namespace spoold;
using namespace spoold::daemon;
using smtp::Outcome;
using smtp::Status;
using namespace std::chrono_literals;

TEST_CASE("classify: only a failure without a verdict goes on to the next address", "[pieces][classify]") {
  struct Row {
    Outcome o;
    Disposition want;
  };
  const Row rows[] = {
      {{Status::sent, 250, "2.0.0", "ok", false}, Disposition::final},
      {{Status::temporary, 450, "4.2.0", "greylisted", false}, Disposition::final},
      {{Status::temporary, 452, "4.5.3", "too many recipients", false}, Disposition::final},
      {{Status::permanent, 550, "5.1.1", "no such user", false}, Disposition::final},
      {{Status::temporary, 421, "4.4.2", "closing", false}, Disposition::next_address},
      {{Status::temporary, 0, "4.4.2", "timeout", false}, Disposition::next_address},
      {{Status::temporary, 0, "4.5.0", "garbage reply", false}, Disposition::next_address},
      // After the final dot: the first server may have delivered it. Never to another one now.
      {{Status::temporary, 0, "4.4.2", "reset after the dot", true}, Disposition::final},
      {{Status::temporary, 421, "4.4.2", "421 after the dot", true}, Disposition::final},
      {{Status::permanent, 0, "5.0.0", "permanent without a code", false}, Disposition::final},
  };
  for (const auto& r : rows) {
    INFO(r.o.code << " " << r.o.text << " duplicate=" << r.o.possible_duplicate);
    CHECK(to_string(classify(r.o)) == std::string(to_string(r.want)));
  }
}

TEST_CASE("a closed session: plaintext retry, a failure of the server, or nothing", "[pieces][classify]") {
  const Outcome refused{Status::temporary, 0, "4.4.1", "connection refused", false};
  const Outcome reset{Status::temporary, 0, "4.4.2", "connection reset", false};
  const Outcome closing{Status::temporary, 421, "4.4.2", "closing", false};
  const Outcome greet5{Status::permanent, 554, "5.7.1", "go away", false};
  const Outcome quit{Status::sent, 221, "2.0.0", "bye", false};
  const Outcome rejected{Status::permanent, 550, "5.0.0", "rejected in a transaction", false};
  SessionEnd connecting;
  connecting.never_ready = true;
  connecting.opportunistic = true;
  SessionEnd tls_failed = connecting;
  tls_failed.starttls_failed = true;
  SessionEnd busy;
  busy.busy = true;
  SessionEnd idle;
  struct Row {
    const char* what;
    SessionEnd end;
    Outcome why;
    CloseAction want;
  };
  auto with = [](SessionEnd e, auto f) {
    f(e);
    return e;
  };
  const Row rows[] = {
      {"refused before ready", connecting, refused, CloseAction::server_failed},
      {"5xx greeting", connecting, greet5, CloseAction::server_failed},
      {"TLS handshake failed, opportunistic", tls_failed, refused, CloseAction::plaintext_retry},
      {"TLS failed on the plaintext retry", with(tls_failed, [](auto& e) { e.plaintext = true; }), refused,
       CloseAction::server_failed},
      {"TLS failed, required", with(tls_failed, [](auto& e) { e.opportunistic = false; }), refused,
       CloseAction::server_failed},
      {"TLS failed to a relay", with(tls_failed, [](auto& e) { e.relay = true; }), refused,
       CloseAction::server_failed},
      {"TLS failed while stopping", with(tls_failed, [](auto& e) { e.stopping = true; }), refused,
       CloseAction::server_failed},
      {"cut by us while connecting", with(connecting, [](auto& e) { e.cut_by_us = true; }), refused,
       CloseAction::none},
      {"reset in a transaction", busy, reset, CloseAction::server_failed},
      {"421 in a transaction", busy, closing, CloseAction::server_failed},
      {"cut by us in a transaction", with(busy, [](auto& e) { e.cut_by_us = true; }), reset,
       CloseAction::none},
      {"5xx in a transaction", busy, rejected, CloseAction::none},
      {"idle, closed by the server", idle, reset, CloseAction::none},
      {"clean QUIT", idle, quit, CloseAction::none},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    CHECK(std::string(to_string(on_session_end(r.end, r.why))) == to_string(r.want));
  }
}

TEST_CASE("a relay that refuses us before a transaction defers, never bounces", "[pieces][classify]") {
  const Outcome auth535{Status::permanent, 535, "5.7.8", "authentication failed", false};
  const Outcome no_code{Status::permanent, 554, "", "go away", false};
  CHECK(server_failure(auth535, true, true).status == Status::temporary);
  CHECK(server_failure(auth535, true, true).enhanced == "4.7.8");
  CHECK(server_failure(no_code, true, true).enhanced == "4.0.0");
  CHECK(server_failure(auth535, true, false).status == Status::permanent);  // an MX may refuse for good
  CHECK(server_failure(auth535, false, true).status == Status::permanent);  // inside a transaction
  CHECK(server_failure(no_code, true, false).enhanced == "5.0.0");
}

TEST_CASE("token bucket: a second's burst, then the rate", "[pieces][rate]") {
  using C = TokenBucket::Clock;
  const C::time_point t0 = C::time_point{} + 1h;
  SECTION("no limit") {
    TokenBucket b(0);
    for (int i = 0; i < 1000; ++i) CHECK(b.take(t0));
  }
  SECTION("2 per second") {
    TokenBucket b(2);
    CHECK(b.take(t0));
    CHECK(b.take(t0));
    CHECK_FALSE(b.take(t0));
    CHECK(b.wait_ms() == 501);
    CHECK_FALSE(b.take(t0 + 400ms));
    CHECK(b.take(t0 + 500ms));
    // A long pause refills only up to the burst.
    CHECK(b.take(t0 + 60s));
    CHECK(b.take(t0 + 60s));
    CHECK_FALSE(b.take(t0 + 60s));
  }
  SECTION("below one per second: a burst of one") {
    TokenBucket b(0.5);
    CHECK(b.take(t0));
    CHECK_FALSE(b.take(t0 + 1s));
    CHECK(b.wait_ms() == 1001);
    CHECK(b.take(t0 + 2s));
  }
}

TEST_CASE("relay quota: retired, next in the robin, asleep", "[pieces][relay]") {
  using C = RelayQuota::Clock;
  const C::time_point t0 = C::time_point{} + 1h;
  config::RelayGroup g;
  g.strategy = config::RelayStrategy::round_robin;
  g.servers.resize(3);
  g.servers[0].max_messages = 2;
  g.servers[1].max_messages_per_robin = 3;
  g.servers[2].max_messages_while_awake = 2;
  g.servers[2].sleep_length = 10s;
  RelayQuota q(g);
  CHECK(q.size() == 3);
  CHECK(q.round_robin());
  CHECK_FALSE(q.can_take(3, t0));  // no such server

  // max_messages: retired for good once reached.
  REQUIRE(q.can_take(0, t0));
  q.take(0);
  CHECK(q.can_take(0, t0));  // room for the second behind the first one's dot
  CHECK_FALSE(q.settle(0, true, t0));
  q.take(0);
  CHECK_FALSE(q.can_take(0, t0));  // the one in flight would be the last
  CHECK(q.settle(0, true, t0));
  CHECK_FALSE(q.can_take(0, t0 + 24h));

  // per robin: the connection ends, the server stays usable and the robin count starts again.
  for (int i = 0; i < 2; ++i) {
    q.take(1);
    CHECK_FALSE(q.settle(1, true, t0));
  }
  q.take(1);
  CHECK(q.settle(1, true, t0));
  CHECK(q.can_take(1, t0));
  q.take(1);
  CHECK_FALSE(q.settle(1, true, t0));

  // while awake: asleep for sleep_length, then counting again.
  q.take(2);
  CHECK_FALSE(q.settle(2, true, t0));
  q.take(2);
  CHECK(q.settle(2, true, t0));
  CHECK_FALSE(q.can_take(2, t0 + 9s));
  CHECK(q.can_take(2, t0 + 10s));
  q.take(2);
  CHECK_FALSE(q.settle(2, true, t0 + 10s));  // awake count reset on waking
}

TEST_CASE("relay quota: messages in flight on several connections never overshoot", "[pieces][relay]") {
  using C = RelayQuota::Clock;
  const C::time_point t0 = C::time_point{} + 1h;
  config::RelayGroup g;
  g.strategy = config::RelayStrategy::failover;
  g.servers.resize(2);
  g.servers[0].max_messages = 3;
  g.servers[1].max_messages_while_awake = 2;
  g.servers[1].sleep_length = 10s;
  RelayQuota q(g);

  // Four connections each want a message: only three are taken, all before any has ended.
  int taken = 0;
  for (int conn = 0; conn < 4; ++conn)
    if (q.can_take(0, t0)) q.take(0), ++taken;
  CHECK(taken == 3);
  CHECK(q.in_flight(0) == 3);
  // One failed before the server judged it: given back, so one more may go.
  CHECK_FALSE(q.settle(0, false, t0));
  CHECK(q.can_take(0, t0));
  q.take(0);
  CHECK_FALSE(q.can_take(0, t0));
  // Settling the others: the connections end once the counts leave no room.
  CHECK(q.settle(0, true, t0));
  CHECK(q.settle(0, true, t0));
  CHECK(q.settle(0, true, t0));
  CHECK(q.in_flight(0) == 0);
  CHECK_FALSE(q.can_take(0, t0 + 24h));  // three counted: retired

  // while_awake with two in flight: the sleep starts when the second one is counted.
  q.take(1);
  q.take(1);
  CHECK_FALSE(q.can_take(1, t0));
  CHECK(q.settle(1, true, t0));  // no room for a third while the second is in flight
  CHECK(q.settle(1, true, t0));
  CHECK_FALSE(q.can_take(1, t0 + 9s));
  CHECK(q.can_take(1, t0 + 10s));
}

TEST_CASE("talk_attempts: which refusals are tried again on the session", "[pieces][talk]") {
  struct Row {
    smtp::Status status;
    int code;
    bool duplicate;
    bool again;
  };
  const Row rows[] = {
      {smtp::Status::temporary, 450, false, true},  {smtp::Status::temporary, 451, false, true},
      {smtp::Status::temporary, 452, false, true},  {smtp::Status::temporary, 499, false, true},
      {smtp::Status::temporary, 421, false, false},  // the session is over
      {smtp::Status::temporary, 0, false, false},    // a local reason: no reply to repeat
      {smtp::Status::temporary, 451, true, false},   // may have been delivered
      {smtp::Status::permanent, 550, false, false}, {smtp::Status::sent, 250, false, false},
      {smtp::Status::temporary, 554, false, false},  // a 5xx made temporary by policy stays as it is
  };
  for (const auto& r : rows) {
    smtp::Outcome o{r.status, r.code, "", "text"};
    o.possible_duplicate = r.duplicate;
    INFO(r.code << " duplicate " << r.duplicate);
    CHECK(worth_talking_again(o) == r.again);
  }
}

TEST_CASE("session options: a relay server's TLS and AUTH replace delivery.tls", "[pieces][options]") {
  config::Config cfg;
  cfg.hostname = "mail.test";
  cfg.delivery.tls = config::TlsPolicy::opportunistic;
  config::RelayGroup g;
  g.name = "corp";
  g.servers.resize(3);
  g.servers[0].tls = config::RelayTls::none;
  g.servers[0].auth = config::Auth{config::AuthMechanism::plain, "u", "", "secret"};
  g.servers[1].tls = config::RelayTls::starttls;
  g.servers[1].verify = false;
  g.servers[1].auth = config::Auth{config::AuthMechanism::login, "u", "", "secret"};
  g.servers[2].tls = config::RelayTls::smtps;
  cfg.relays.push_back(g);
  HopKey relay;
  relay.kind = config::RouteKind::relay;
  relay.name = "corp";
  HopKey mx;
  mx.name = "example.org";
  dns::Address addr{"127.0.0.1"};
  auto hop = [](int preference) {
    dns::NextHop h;
    h.host = "relay.test";
    h.port = 2525;
    h.preference = preference;
    return h;
  };
  struct Row {
    HopKey key;
    int server;
    smtp::TlsPolicy tls;
    bool implicit;
    bool auth_plaintext;
    bool auth;
    smtp::AuthMechanism mechanism;  // the configured one, passed as is; none without `auth:`
  };
  const Row rows[] = {
      {mx, 0, smtp::TlsPolicy::opportunistic, false, false, false, smtp::AuthMechanism::none},
      {relay, 0, smtp::TlsPolicy::none, false, true, true, smtp::AuthMechanism::plain},
      {relay, 1, smtp::TlsPolicy::required, false, false, true, smtp::AuthMechanism::login},
      {relay, 2, smtp::TlsPolicy::verify, true, false, false, smtp::AuthMechanism::none},
  };
  for (const auto& r : rows) {
    INFO(r.key.str() << " server " << r.server);
    auto o = session_options(cfg, r.key, hop(r.server), addr);
    CHECK(o.ip == "127.0.0.1");
    CHECK(o.port == 2525);
    CHECK(o.tls_host == "relay.test");
    CHECK(o.engine.ehlo_name == "mail.test");
    CHECK(o.engine.tls == r.tls);
    CHECK(o.engine.implicit_tls == r.implicit);
    CHECK(o.engine.auth.allow_plaintext == r.auth_plaintext);
    CHECK(o.engine.auth.user.empty() == !r.auth);
    CHECK(o.engine.auth.mechanism == r.mechanism);
  }
  // delivery.tls reaches the session unmapped, every value of it.
  for (auto tls : {config::TlsPolicy::none, config::TlsPolicy::opportunistic, config::TlsPolicy::required,
                   config::TlsPolicy::verify}) {
    cfg.delivery.tls = tls;
    CHECK(session_options(cfg, mx, hop(0), addr).engine.tls == tls);
  }
}

TEST_CASE("session options: a route's tls and bind_address replace delivery's", "[pieces][options]") {
  config::Config cfg;
  cfg.hostname = "mail.test";
  cfg.delivery.tls = config::TlsPolicy::opportunistic;
  cfg.delivery.bind_address = config::BindAddress{"127.0.0.1", "::1"};
  config::Route plain, strict;
  plain.match = {"plain.test"};
  strict.match = {"strict.test"};
  strict.policy.tls = config::TlsPolicy::verify;
  strict.policy.bind_address = config::BindAddress{"127.0.0.2", ""};
  strict.policy.max_sessions = 1;
  cfg.routes = {plain, strict};
  dns::NextHop h;
  h.host = "mx.test";
  h.port = 25;
  struct Row {
    std::string domain, peer;
    smtp::TlsPolicy tls;
    std::string bind;
  };
  const Row rows[] = {
      {"plain.test", "192.0.2.1", smtp::TlsPolicy::opportunistic, "127.0.0.1"},
      {"plain.test", "2001:db8::1", smtp::TlsPolicy::opportunistic, "::1"},
      {"strict.test", "192.0.2.1", smtp::TlsPolicy::verify, "127.0.0.2"},
      {"strict.test", "2001:db8::1", smtp::TlsPolicy::verify, ""},  // the route's own: no IPv6 one
      {"other.test", "192.0.2.1", smtp::TlsPolicy::opportunistic, "127.0.0.1"},  // no route: by MX
  };
  for (const auto& r : rows) {
    INFO(r.domain << " " << r.peer);
    HopKey key = route(cfg, r.domain);
    auto o = session_options(cfg, key, h, dns::Address{r.peer});
    CHECK(o.engine.tls == r.tls);
    CHECK(o.bind_address == r.bind);
  }
  // Only a route with a policy of its own makes its next hops distinct.
  CHECK(route(cfg, "plain.test").route == -1);
  CHECK(route(cfg, "strict.test").route == 1);
  CHECK(route(cfg, "strict.test").policy.max_sessions == 1);
}

TEST_CASE("route: two routes to one relay group are one next hop unless one has a policy",
          "[pieces][router]") {
  config::Config cfg;
  config::RelayGroup g;
  g.name = "corp";
  g.servers.resize(1);
  cfg.relays.push_back(g);
  config::Route a, b, c;
  a.match = {"a.test"};
  b.match = {"b.test"};
  c.match = {"c.test"};
  for (auto* r : {&a, &b, &c}) {
    r->kind = config::RouteKind::relay;
    r->relay = "corp";
  }
  c.policy.rate_limit = 1;
  cfg.routes = {a, b, c};
  CHECK(route(cfg, "a.test") == route(cfg, "b.test"));
  CHECK(route(cfg, "a.test").str() == "relay:corp");
  CHECK_FALSE(route(cfg, "a.test") == route(cfg, "c.test"));
  CHECK(route(cfg, "c.test").str() == "relay:corp#2");
}

TEST_CASE("route: the first matching route names the next hop; its key carries what it needs",
          "[pieces][router]") {
  config::Config cfg;
  config::Route relay;
  relay.match = {"corp.example", "*.corp.example"};
  relay.kind = config::RouteKind::relay;
  relay.relay = "corp";
  config::Route hosts;
  hosts.match = {"lab.test"};
  hosts.kind = config::RouteKind::hosts;
  hosts.hosts = {"127.0.0.1:2525", "127.0.0.2"};
  config::Route all;
  all.match = {"*"};
  all.kind = config::RouteKind::mx;
  cfg.routes = {relay, hosts, all};
  struct Row {
    const char* domain;
    const char* key;
    bool local_ok;
    size_t hosts;
  };
  const Row rows[] = {
      {"corp.example", "relay:corp", true, 0},
      {"a.corp.example", "relay:corp", true, 0},
      {"lab.test", "hosts:127.0.0.1:2525,127.0.0.2", true, 2},
      {"example.org", "mx:example.org", false, 0},  // only the catch-all: restricted MX refused
  };
  for (const auto& r : rows) {
    INFO(r.domain);
    HopKey k = route(cfg, r.domain);
    CHECK(k.str() == r.key);
    CHECK(k.local_ok == r.local_ok);
    CHECK(k.hosts.size() == r.hosts);
  }
  cfg.routes.clear();
  CHECK(route(cfg, "example.org").str() == "mx:example.org");  // no routes: by MX
  CHECK(domain_of("Bob@Example.ORG.") == "example.org");
  CHECK(domain_of("bob@[192.0.2.1]") == "[192.0.2.1]");
  CHECK(domain_of("nobody") == "");
}

TEST_CASE("group_by_hop: one group per next hop and sender rewriting", "[pieces][router]") {
  config::Config cfg;
  cfg.rewrite.masquerade_domains = {"example.com"};
  config::RelayGroup corp;
  corp.name = "corp";
  cfg.relays = {corp};
  config::Route a;  // two routes to one relay group, different rewriting
  a.match = {"a.example"};
  a.kind = config::RouteKind::relay;
  a.relay = "corp";
  a.rewrite.envelope_from = "ops@example.com";
  config::Route b = a;
  b.match = {"b.example"};
  b.rewrite = {};
  config::Route c = a;
  c.match = {"c.example"};  // the same rewriting as a: one transaction
  config::Route all;
  all.match = {"*"};
  cfg.routes = {a, b, c, all};
  const std::vector<std::string> rcpts = {"x@a.example", "y@b.example", "z@c.example", "w@other.example",
                                          "v@a.example"};
  auto groups = group_by_hop(cfg, rcpts, {0, 1, 2, 3, 4});
  REQUIRE(groups.size() == 3);
  CHECK(groups[0].key.str() == "relay:corp");
  CHECK(groups[0].recipients == std::vector<size_t>{0, 2, 4});
  CHECK(groups[0].rewrite.envelope_from == "ops@example.com");
  CHECK(groups[0].rewrite.masquerade_domains == std::vector<std::string>{"example.com"});  // inherited
  CHECK(groups[1].key.str() == "relay:corp");
  CHECK(groups[1].recipients == std::vector<size_t>{1});
  CHECK(groups[1].rewrite == cfg.rewrite);
  CHECK(groups[2].key.str() == "mx:other.example");
  CHECK(groups[2].rewrite == cfg.rewrite);
  CHECK(route_rewrite(cfg, "A.Example") == groups[0].rewrite);
}

TEST_CASE("an MX site is named by its set of MX hosts and its route", "[pieces][site]") {
  using spoold::daemon::mx_site_name;
  struct Case {
    std::vector<std::string> hosts;
    int route;
    std::string name;
  };
  const std::vector<Case> cases = {
      {{"mx2.example.net", "mx1.example.net"}, -1, "mx1.example.net,mx2.example.net"},
      {{"MX1.Example.NET.", "mx2.example.net", "mx1.example.net"}, -1, "mx1.example.net,mx2.example.net"},
      {{"example.org"}, -1, "example.org"},  // no MX: the domain itself, a site of its own
      {{"mx1.example.net"}, 3, "mx1.example.net#3"},
      {{}, -1, ""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    CHECK(mx_site_name(c.hosts, c.route) == c.name);
  }
}
