// tests/dns/resolver_test.cpp — Resolver against a real dnsmasq (and, for answers dnsmasq will
// not give, tests/dns/responder.py) on 127.0.0.1. One section per delivery rule or failure mode.
// Rule: every lookup is bounded (300 ms DNS timeout, 2 tries); loopback only.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <thread>

#include "dns/channel.h"
#include "tests/dns/dns_fixture.h"

using namespace spoold::dns;
using namespace spoold::dns::test;

namespace {

std::unique_ptr<Resolver> make_resolver(Loop& loop, Options o) {
  auto r = Resolver::create(loop.get(), std::move(o));
  REQUIRE(r.ok());
  return std::move(r.value());
}

std::vector<std::string> ips_of(const NextHop& h) {
  std::vector<std::string> out;
  for (const auto& a : h.addresses) out.push_back(a.ip);
  return out;
}

// Query counts reach the log a moment after the answer; wait (bounded) for them to settle.
int settled(const std::function<int()>& count) {
  spoold::test::wait_until([&] { return count() > 0; }, 1000ms);
  std::this_thread::sleep_for(100ms);
  return count();
}

// "127.0.0.1:port" as dnsmasq's --server wants it: "127.0.0.1#port".
std::string hole_upstream(const BlackHole& hole) {
  std::string s = hole.server();
  s[s.rfind(':')] = '#';
  return s;
}

}  // namespace

TEST_CASE("MX hosts come back sorted by preference with their addresses", "[dns][integration]") {
  Dnsmasq dns({"--mx-host=order.test,mx30.order.test,30", "--mx-host=order.test,mx10.order.test,10",
               "--mx-host=order.test,mx20a.order.test,20", "--mx-host=order.test,mx20b.order.test,20",
               "--host-record=mx10.order.test,127.0.0.10", "--host-record=mx20a.order.test,127.0.0.21",
               "--host-record=mx20b.order.test,127.0.0.22", "--host-record=mx30.order.test,127.0.0.30,::1"});
  Loop loop;
  auto o = test_options(dns.server());
  o.mx_port = 2525;
  o.address_preference = AddressPreference::ipv6;
  auto r = make_resolver(loop, o);

  NextHops res = next_hops(loop, *r, "order.test");
  REQUIRE(res.status == Status::ok);
  CHECK(preferences_of(res) == std::vector<int>{10, 20, 20, 30});
  CHECK(res.hops[0].host == "mx10.order.test");
  CHECK(ips_of(res.hops[0]) == std::vector<std::string>{"127.0.0.10"});
  CHECK(ips_of(res.hops[3]) == std::vector<std::string>{"::1", "127.0.0.30"});
  CHECK(res.hops[3].addresses[0].family == Family::ipv6);
  for (const auto& h : res.hops) CHECK(h.port == 2525);

  SECTION("equal preferences are shuffled from one lookup to the next") {
    std::set<std::string> seconds;
    for (int i = 0; i < 40 && seconds.size() < 2; ++i) {
      NextHops again = next_hops(loop, *r, "order.test");
      REQUIRE(again.ok());
      CHECK(again.hops[0].host == "mx10.order.test");
      CHECK(again.hops[3].host == "mx30.order.test");
      seconds.insert(again.hops[1].host);
    }
    CHECK(seconds == std::set<std::string>{"mx20a.order.test", "mx20b.order.test"});
  }
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("address_preference orders each host's families", "[dns][integration]") {
  Dnsmasq dns({"--host-record=both.test,127.0.0.8,::1"});  // no MX: implicit MX
  Loop loop;
  auto o = test_options(dns.server());

  o.address_preference = AddressPreference::ipv4;
  auto r4 = make_resolver(loop, o);
  CHECK(ips_of(next_hops(loop, *r4, "both.test").hops.at(0)) == std::vector<std::string>{"127.0.0.8", "::1"});

  o.address_preference = AddressPreference::any;
  auto rany = make_resolver(loop, o);
  std::set<std::string> firsts;
  for (int i = 0; i < 40 && firsts.size() < 2; ++i) {
    auto res = next_hops(loop, *rany, "both.test");
    REQUIRE(res.hops.at(0).addresses.size() == 2);
    firsts.insert(res.hops[0].addresses[0].ip);
  }
  CHECK(firsts.size() == 2);  // "any" does not always start with the same family
  r4.reset();
  rany.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("NODATA for MX falls back to the domain's own addresses (implicit MX)", "[dns][integration]") {
  Dnsmasq dns({"--host-record=implicit.test,127.0.0.6,::1", "--txt-record=nothing.test,hello"});
  Loop loop;
  auto r = make_resolver(loop, test_options(dns.server()));

  NextHops res = next_hops(loop, *r, "implicit.test.");  // a trailing dot is fine
  REQUIRE(res.status == Status::ok);
  REQUIRE(res.hops.size() == 1);
  CHECK(res.hops[0].host == "implicit.test");
  CHECK(res.hops[0].preference == 0);
  CHECK(res.hops[0].port == 25);
  std::vector<std::string> ips = ips_of(res.hops[0]);
  std::sort(ips.begin(), ips.end());
  CHECK(ips == std::vector<std::string>{"127.0.0.6", "::1"});

  SECTION("a domain with neither MX nor addresses is permanent") {
    NextHops none = next_hops(loop, *r, "nothing.test");
    CHECK(none.status == Status::permanent);
    CHECK_THAT(none.reason, Catch::Contains("no MX and no A/AAAA"));
  }
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("MX hosts without addresses are skipped; never fall back to the domain's A", "[dns][integration]") {
  Dnsmasq dns({"--mx-host=ghost.test,nowhere.ghost.test,10", "--host-record=ghost.test,127.0.0.66",
               "--mx-host=half.test,nowhere.half.test,5", "--mx-host=half.test,mx.half.test,20",
               "--host-record=mx.half.test,127.0.0.20"});
  Loop loop;
  auto r = make_resolver(loop, test_options(dns.server()));

  NextHops ghost = next_hops(loop, *r, "ghost.test");
  CHECK(ghost.status == Status::temporary);
  CHECK_THAT(ghost.reason, Catch::Contains("nowhere.ghost.test"));
  CHECK(ghost.hops.empty());

  NextHops half = next_hops(loop, *r, "half.test");
  REQUIRE(half.status == Status::ok);
  CHECK(hosts_of(half) == std::vector<std::string>{"mx.half.test"});
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("null MX (RFC 7505) and NXDOMAIN are permanent", "[dns][integration]") {
  Dnsmasq dns({"--mx-host=nullmx.test,.,0", "--host-record=nullmx.test,127.0.0.9"});
  Loop loop;
  auto r = make_resolver(loop, test_options(dns.server()));

  NextHops nullmx = next_hops(loop, *r, "nullmx.test");
  CHECK(nullmx.status == Status::permanent);
  CHECK_THAT(nullmx.reason, Catch::Contains("null MX"));
  CHECK(dns.queries("nullmx.test", "A") == 0);  // no fallback to the domain's address

  NextHops nx = next_hops(loop, *r, "does-not-exist.test");
  CHECK(nx.status == Status::permanent);
  CHECK_THAT(nx.reason, Catch::Contains("NXDOMAIN"));

  NextHops bad = next_hops(loop, *r, "bad name..test");
  CHECK(bad.status == Status::permanent);
  CHECK(dns.all_queries() == 2);  // the invalid name never reached the server
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("SERVFAIL, REFUSED, garbled answers and timeouts are temporary", "[dns][integration]") {
  Responder servfail("servfail");
  Responder refused("refused");
  Responder garbled("garbled");
  BlackHole hole;
  int dead_port = spoold::test::free_port(true);
  Dnsmasq dns({"--server=/servfail.test/" + std::string("127.0.0.1#") + std::to_string(servfail.port()),
               "--server=/dead.test/127.0.0.1#" + std::to_string(dead_port)});
  Loop loop;

  SECTION("SERVFAIL forwarded by dnsmasq from its upstream") {
    auto r = make_resolver(loop, test_options(dns.server()));
    NextHops res = next_hops(loop, *r, "x.servfail.test");
    CHECK(res.status == Status::temporary);
    CHECK_THAT(res.reason, Catch::Contains("MX lookup for x.servfail.test failed"));
  }
  SECTION("SERVFAIL straight from the server: no waiting for a timeout") {
    auto r = make_resolver(loop, test_options(servfail.server()));
    auto t0 = std::chrono::steady_clock::now();
    NextHops res = next_hops(loop, *r, "example.test");
    CHECK(std::chrono::steady_clock::now() - t0 < 800ms);  // a timeout would take 300 + 600 ms
    CHECK(res.status == Status::temporary);
    CHECK_THAT(res.reason, Catch::Contains("SERVFAIL"));
  }
  SECTION("REFUSED") {
    auto r = make_resolver(loop, test_options(refused.server()));
    NextHops res = next_hops(loop, *r, "example.test");
    CHECK(res.status == Status::temporary);
    CHECK_THAT(res.reason, Catch::Contains("REFUSED"));
  }
  SECTION("an answer that runs past the end of its packet") {
    auto r = make_resolver(loop, test_options(garbled.server()));
    NextHops res = next_hops(loop, *r, "example.test");
    CHECK(res.status == Status::temporary);
    CHECK_THAT(res.reason, Catch::Contains("malformed answer"));
  }
  SECTION("dnsmasq forwarding to a dead upstream: bounded wait") {
    auto r = make_resolver(loop, test_options(dns.server()));
    auto t0 = std::chrono::steady_clock::now();
    NextHops res = next_hops(loop, *r, "x.dead.test");
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(res.status == Status::temporary);
    CHECK(took < 3s);
  }
  SECTION("a server that never answers: timeout after about timeout * (1 + 2) for 2 tries") {
    auto r = make_resolver(loop, test_options(hole.server()));
    auto t0 = std::chrono::steady_clock::now();
    NextHops res = next_hops(loop, *r, "example.test");
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(res.status == Status::temporary);
    CHECK_THAT(res.reason, Catch::Contains("timeout"));
    CHECK(took >= 250ms);
    CHECK(took < 3s);
  }
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("a CNAME'd MX host resolves through its CNAME", "[dns][integration]") {
  Dnsmasq dns({"--mx-host=cn.test,alias.cn.test,10", "--cname=alias.cn.test,real.cn.test",
               "--host-record=real.cn.test,127.0.0.44"});
  Loop loop;
  auto r = make_resolver(loop, test_options(dns.server()));
  NextHops res = next_hops(loop, *r, "cn.test");
  REQUIRE(res.status == Status::ok);
  REQUIRE(res.hops.size() == 1);
  CHECK(res.hops[0].host == "alias.cn.test");
  CHECK(ips_of(res.hops[0]) == std::vector<std::string>{"127.0.0.44"});
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("our own hostname among the MX hosts drops it and every less preferred host",
          "[dns][integration]") {
  Dnsmasq dns({"--mx-host=loop.test,mx1.loop.test,10", "--mx-host=loop.test,me.loop.test,20",
               "--mx-host=loop.test,peer.loop.test,20", "--mx-host=loop.test,mx3.loop.test,30",
               "--host-record=mx1.loop.test,127.0.0.1", "--host-record=me.loop.test,127.0.0.2",
               "--host-record=peer.loop.test,127.0.0.3", "--host-record=mx3.loop.test,127.0.0.4",
               "--mx-host=self.test,ME.loop.test.,5", "--mx-host=self.test,peer.loop.test,7"});
  Loop loop;
  auto o = test_options(dns.server());
  o.our_hostname = "me.loop.test";
  auto r = make_resolver(loop, o);

  NextHops res = next_hops(loop, *r, "loop.test");
  REQUIRE(res.status == Status::ok);
  CHECK(hosts_of(res) == std::vector<std::string>{"mx1.loop.test"});

  NextHops self = next_hops(loop, *r, "self.test");
  CHECK(self.status == Status::permanent);
  CHECK_THAT(self.reason, Catch::Contains("MX loops back to us"));
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("answers are cached for their TTL and concurrent lookups share one query", "[dns][integration]") {
  Dnsmasq dns({"--mx-host=cache.test,mx.cache.test,10", "--host-record=mx.cache.test,127.0.0.12"});
  Loop loop;
  auto o = test_options(dns.server());

  SECTION("a second lookup is answered from the cache") {
    auto r = make_resolver(loop, o);
    REQUIRE(next_hops(loop, *r, "cache.test").ok());
    REQUIRE(next_hops(loop, *r, "CACHE.test").ok());  // names are case-insensitive
    CHECK(settled([&] { return dns.queries("cache.test", "MX"); }) == 1);
    CHECK(dns.queries("mx.cache.test", "A") == 1);
    CHECK(dns.queries("mx.cache.test", "AAAA") == 1);

    NextHops nx1 = next_hops(loop, *r, "missing.test");
    NextHops nx2 = next_hops(loop, *r, "missing.test");
    CHECK(nx1.status == Status::permanent);
    CHECK(nx2.status == Status::permanent);
    CHECK(settled([&] { return dns.queries("missing.test", "MX"); }) == 1);  // negative caching
  }
  SECTION("concurrent lookups of one name share a single query") {
    auto r = make_resolver(loop, o);
    int done = 0;
    for (int i = 0; i < 20; ++i)
      r->resolve_next_hops("cache.test", [&](NextHops h) {
        CHECK(h.ok());
        ++done;
      });
    CHECK(r->in_flight() == 20);
    REQUIRE(loop.run_until([&] { return done == 20; }));
    CHECK(r->in_flight() == 0);
    CHECK(settled([&] { return dns.queries("cache.test", "MX"); }) == 1);
    CHECK(dns.queries("mx.cache.test", "A") == 1);
  }
  SECTION("the TTL cap bounds how long an answer is kept") {
    o.max_cache_ttl = 1s;  // dnsmasq says 300 s
    auto r = make_resolver(loop, o);
    REQUIRE(next_hops(loop, *r, "cache.test").ok());
    REQUIRE(next_hops(loop, *r, "cache.test").ok());
    CHECK(settled([&] { return dns.queries("cache.test", "MX"); }) == 1);
    std::this_thread::sleep_for(1100ms);
    uv_update_time(loop.get());
    REQUIRE(next_hops(loop, *r, "cache.test").ok());
    CHECK(settled([&] { return dns.queries("cache.test", "MX") == 2 ? 2 : 0; }) == 2);
  }
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("a truncated UDP answer is retried over TCP", "[dns][integration]") {
  std::vector<std::string> args;
  for (int i = 1; i <= 40; ++i) {
    std::string host = "mx" + std::to_string(i) + ".a-rather-long-label-to-fill-the-packet.big.test";
    args.push_back("--mx-host=big.test," + host + "," + std::to_string(i));
    args.push_back("--host-record=" + host + ",127.0.1." + std::to_string(i));
  }
  Dnsmasq dns(args);
  Loop loop;
  int fds_before = open_fd_count();
  auto o = test_options(dns.server());
  o.max_mx_hosts = 100;
  auto r = make_resolver(loop, o);
  NextHops res = next_hops(loop, *r, "big.test");
  REQUIRE(res.status == Status::ok);
  CHECK(res.hops.size() == 40);
  CHECK(loop.run_until([&] { return open_fd_count() == fds_before; }, 2s));  // the TCP socket is closed
  CHECK(std::is_sorted(res.hops.begin(), res.hops.end(),
                       [](const NextHop& a, const NextHop& b) { return a.preference < b.preference; }));

  SECTION("max_mx_hosts bounds how many hosts are looked up") {
    o.max_mx_hosts = 3;
    auto small = make_resolver(loop, o);
    NextHops three = next_hops(loop, *small, "big.test");
    CHECK(preferences_of(three) == std::vector<int>{1, 2, 3});
  }
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("200 concurrent lookups finish and leak no file descriptors", "[dns][integration]") {
  std::vector<std::string> args;
  for (int i = 0; i < 100; ++i)
    args.push_back("--host-record=h" + std::to_string(i) + ".many.test,127.0.2." + std::to_string(i + 1));
  Dnsmasq dns(args);
  Loop loop;
  int fds_before = open_fd_count();
  {
    auto r = make_resolver(loop, test_options(dns.server()));
    int ok = 0, permanent = 0, other = 0;
    for (int i = 0; i < 200; ++i)  // half exist (implicit MX), half are NXDOMAIN
      r->resolve_next_hops("h" + std::to_string(i) + ".many.test", [&](NextHops h) {
        (h.ok() ? ok : h.status == Status::permanent ? permanent : other)++;
      });
    REQUIRE(loop.run_until([&] { return ok + permanent + other == 200; }, 30s));
    CHECK(ok == 100);
    CHECK(permanent == 100);
    CHECK(other == 0);
    CHECK(loop.run_until([&] { return open_fd_count() == fds_before; }, 2s));  // c-ares closed its sockets
  }
  loop.drain();
  CHECK(open_fd_count() == fds_before);
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("at most max_queries_in_flight queries are out at once; the rest wait and all finish",
          "[dns][integration]") {
  std::vector<std::string> args;
  for (int i = 0; i < 50; ++i)
    args.push_back("--host-record=q" + std::to_string(i) + ".cap.test,127.0.3." + std::to_string(i + 1));
  Dnsmasq dns(args);
  Loop loop;
  {
    detail::ChannelOptions co{{dns.server()}, 500ms, 2, 4};
    auto ch = detail::Channel::create(loop.get(), co);
    REQUIRE(ch.ok());
    auto& channel = **ch;
    int done = 0, ok = 0;
    size_t most = 0;
    for (int i = 0; i < 100; ++i) {  // 50 names x A and AAAA
      channel.query("q" + std::to_string(i / 2) + ".cap.test", i % 2 ? 28 : 1,
                    [&](int status, const unsigned char*, int) {
                      ++done;
                      ok += status == ARES_SUCCESS || status == ARES_ENODATA;
                    });
      most = std::max(most, channel.in_flight());
    }
    CHECK(channel.in_flight() == 4);
    CHECK(channel.waiting() == 96);
    REQUIRE(loop.run_until(
        [&] {
          most = std::max(most, channel.in_flight());
          return done == 100;
        },
        20s));
    CHECK(ok == 100);
    CHECK(most <= 4);
    CHECK(settled([&] { return dns.all_queries(); }) == 100);  // each sent once: none was lost
  }
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("destroying a channel ends the queries still waiting to be sent", "[dns][integration]") {
  BlackHole silent;
  Loop loop;
  int cancelled = 0;
  {
    detail::ChannelOptions co{{silent.server()}, 5s, 1, 2};
    auto ch = detail::Channel::create(loop.get(), co);
    REQUIRE(ch.ok());
    for (int i = 0; i < 10; ++i)
      (*ch)->query("x.test", 1,
                   [&](int status, const unsigned char*, int) { cancelled += status == ARES_EDESTRUCTION; });
    CHECK((*ch)->waiting() == 8);
  }
  CHECK(cancelled == 10);
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("destroying the resolver cancels every lookup in flight exactly once", "[dns][integration]") {
  BlackHole hole;
  Loop loop;
  int fds_before = open_fd_count();

  SECTION("from outside any callback") {
    auto r = make_resolver(loop, test_options(hole.server()));
    std::vector<int> calls(30, 0);
    std::vector<Status> statuses(30, Status::ok);
    for (int i = 0; i < 30; ++i) {
      auto cb = [&, i](NextHops h) {
        ++calls[i];
        statuses[i] = h.status;
      };
      if (i % 3 == 2)
        r->resolve_host("127.0.0.1", 25, cb);  // already answered, waiting for dispatch
      else
        r->resolve_next_hops("d" + std::to_string(i % 5) + ".test", cb);  // some share a query
    }
    loop.run_until([] { return false; }, 50ms);  // the queries are on the wire now
    r.reset();
    for (int i = 0; i < 30; ++i) {
      CHECK(calls[i] == 1);
      if (i % 3 != 2) CHECK(statuses[i] == Status::cancelled);
    }
  }
  SECTION("from inside a callback, with a new lookup started during shutdown") {
    auto r = make_resolver(loop, test_options(hole.server()));
    int cancelled = 0, late = 0;
    Resolver* raw = r.get();  // r is already null while reset() destroys the Resolver
    r->resolve_next_hops("slow.test", [&](NextHops h) {
      CHECK(h.status == Status::cancelled);
      ++cancelled;
      raw->resolve_next_hops("later.test", [&](NextHops h2) {  // during shutdown: cancelled at once
        CHECK(h2.status == Status::cancelled);
        ++late;
      });
    });
    r->resolve_host("127.0.0.1", 25, [&](NextHops h) {
      CHECK(h.ok());
      r.reset();  // the resolver dies inside its own callback
    });
    REQUIRE(loop.run_until([&] { return r == nullptr; }, 2s));
    CHECK(cancelled == 1);
    CHECK(late == 1);
  }
  loop.drain();
  CHECK(open_fd_count() == fds_before);
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("static route hosts resolve without MX; IP literals need no query", "[dns][integration]") {
  Dnsmasq dns({"--host-record=relay.static.test,127.0.0.55", "--mx-host=relay.static.test,other.test,10"});
  Loop loop;
  auto r = make_resolver(loop, test_options(dns.server()));

  NextHops lit = host(loop, *r, "127.0.0.1", 2525);
  REQUIRE(lit.ok());
  CHECK(lit.hops.at(0).port == 2525);
  CHECK(ips_of(lit.hops[0]) == std::vector<std::string>{"127.0.0.1"});
  NextHops lit6 = host(loop, *r, "::1", 25);
  REQUIRE(lit6.ok());
  CHECK(lit6.hops.at(0).addresses.at(0).family == Family::ipv6);
  CHECK(dns.all_queries() == 0);

  NextHops named = host(loop, *r, "relay.static.test", 587);
  REQUIRE(named.ok());
  CHECK(named.hops.at(0).host == "relay.static.test");
  CHECK(named.hops[0].port == 587);
  CHECK(ips_of(named.hops[0]) == std::vector<std::string>{"127.0.0.55"});
  CHECK(dns.queries("relay.static.test", "MX") == 0);

  std::optional<NextHops> list;
  r->resolve_hosts({{"gone.static.test", 25}, {"relay.static.test", 2526}, {"127.0.0.9", 2527}},
                   [&](NextHops h) { list = std::move(h); });
  REQUIRE(loop.run_until([&] { return list.has_value(); }));
  REQUIRE(list->ok());
  CHECK(hosts_of(*list) == std::vector<std::string>{"relay.static.test", "127.0.0.9"});
  CHECK(preferences_of(*list) == std::vector<int>{1, 2});

  NextHops gone = host(loop, *r, "gone.static.test", 25);
  CHECK(gone.status == Status::temporary);  // a typo in the config must not bounce mail
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("create() checks the server list; an empty host list fails", "[dns][integration]") {
  Loop loop;
  Options o;
  o.servers = {"127.0.0.1:5353", "[::1]:5353", "127.0.0.2"};
  CHECK(Resolver::create(loop.get(), o).ok());
  o.servers = {"dns.example:53"};  // c-ares takes addresses only
  auto bad = Resolver::create(loop.get(), o);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("dns.example"));

  o.servers = {"127.0.0.1:1"};
  auto r = make_resolver(loop, o);
  std::optional<NextHops> none;
  r->resolve_hosts({}, [&](NextHops h) { none = std::move(h); });
  CHECK_FALSE(none.has_value());  // never called back from inside the call
  REQUIRE(loop.run_until([&] { return none.has_value(); }));
  CHECK(none->status == Status::permanent);
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("client names: a PTR name counts only when it resolves back to the address", "[dns][integration]") {
  Responder servfail("servfail");
  std::vector<std::string> args = {
      "--local=/in-addr.arpa/",
      "--local=/ip6.arpa/",                    // reverse names without records: NXDOMAIN
      "--host-record=client2.test,127.0.0.2",  // A and PTR
      "--ptr-record=3.0.0.127.in-addr.arpa,liar.test",
      "--address=/liar.test/127.0.0.9",
      "--ptr-record=5.0.0.127.in-addr.arpa,wrong.test",
      "--ptr-record=5.0.0.127.in-addr.arpa,right.test",
      "--address=/wrong.test/127.0.0.50",
      "--address=/right.test/127.0.0.5",
      "--ptr-record=6.0.0.127.in-addr.arpa,x.servfail.test",
      "--server=/servfail.test/127.0.0.1#" + std::to_string(servfail.port()),
      "--host-record=client6.test,fd00::2",  // AAAA and PTR
      "--ptr-record=3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa,client6.test",
      "--ptr-record=4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa,client2.test"};
  for (int i = 1; i <= 7; ++i)  // names that do not exist (NXDOMAIN under .test)
    args.push_back("--ptr-record=7.0.0.127.in-addr.arpa,n" + std::to_string(i) + ".many.test");
  Dnsmasq dns(args);
  Loop loop;
  auto r = make_resolver(loop, test_options(dns.server()));

  SECTION("verified, also given as IPv4-mapped IPv6; the PTR answer is cached") {
    ClientName n = client_name(loop, *r, "127.0.0.2");
    CHECK(n.status == Status::ok);
    CHECK(n.name == "client2.test");
    CHECK(n.reason.empty());
    ClientName mapped = client_name(loop, *r, "::ffff:127.0.0.2");
    CHECK(mapped.status == Status::ok);
    CHECK(mapped.name == "client2.test");
    CHECK(settled([&] { return dns.queries("2.0.0.127.in-addr.arpa", "PTR"); }) == 1);
    CHECK(dns.queries("client2.test", "A") == 1);
    CHECK(dns.queries("client2.test", "AAAA") == 0);
  }
  SECTION("a PTR name resolving to another address is permanent \"unknown\"") {
    ClientName n = client_name(loop, *r, "127.0.0.3");
    CHECK(n.status == Status::permanent);
    CHECK(n.name == "unknown");
    CHECK_THAT(n.reason, Catch::Contains("name 'liar.test' does not resolve to 127.0.0.3"));
  }
  SECTION("no PTR record (NXDOMAIN) is permanent \"unknown\"") {
    ClientName n = client_name(loop, *r, "127.0.0.4");
    CHECK(n.status == Status::permanent);
    CHECK(n.name == "unknown");
    CHECK_THAT(n.reason, Catch::Contains("no PTR record"));
  }
  SECTION("of several PTR names the one that resolves back counts") {
    ClientName n = client_name(loop, *r, "127.0.0.5");
    CHECK(n.status == Status::ok);
    CHECK(n.name == "right.test");
  }
  SECTION("a forward lookup that fails for now is temporary, not a mismatch") {
    ClientName n = client_name(loop, *r, "127.0.0.6");
    CHECK(n.status == Status::temporary);
    CHECK(n.name == "unknown");
    CHECK_THAT(n.reason, Catch::Contains("x.servfail.test"));
  }
  SECTION("at most max_ptr_names names are looked up") {
    ClientName n = client_name(loop, *r, "127.0.0.7");
    CHECK(n.status == Status::permanent);
    CHECK_THAT(n.reason, Catch::Contains("does not resolve to 127.0.0.7"));
    auto forward = [&] {
      int sum = 0;
      for (int i = 1; i <= 7; ++i) sum += dns.queries("n" + std::to_string(i) + ".many.test", "A");
      return sum;
    };
    CHECK(settled(forward) == 5);
  }
  SECTION("IPv6: the PTR name needs an AAAA record holding the address") {
    ClientName n = client_name(loop, *r, "fd00::2");
    CHECK(n.status == Status::ok);
    CHECK(n.name == "client6.test");
    ClientName spelled = client_name(loop, *r, "FD00:0:0::2");
    CHECK(spelled.name == "client6.test");

    ClientName other = client_name(loop, *r, "fd00::3");
    CHECK(other.status == Status::permanent);
    CHECK_THAT(other.reason, Catch::Contains("name 'client6.test' does not resolve to fd00::3"));

    ClientName v4_only = client_name(loop, *r, "fd00::4");  // client2.test has an A record only
    CHECK(v4_only.status == Status::permanent);
    CHECK(v4_only.name == "unknown");
    CHECK(settled([&] { return dns.queries("client2.test", "AAAA"); }) == 1);
  }
  SECTION("text that is not an address: permanent, no query, never from inside the call") {
    std::optional<ClientName> got;
    r->resolve_client_name("client.example", [&](ClientName n) { got = std::move(n); });
    CHECK_FALSE(got.has_value());
    REQUIRE(loop.run_until([&] { return got.has_value(); }));
    CHECK(got->status == Status::permanent);
    CHECK(got->name == "unknown");
    CHECK_THAT(got->reason, Catch::Contains("not an IP address"));
    CHECK(dns.all_queries() == 0);
  }
  r.reset();
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("client names: SERVFAIL and timeouts of the PTR lookup are temporary \"unknown\"",
          "[dns][integration]") {
  Responder servfail("servfail");
  BlackHole hole;
  Loop loop;

  SECTION("SERVFAIL") {
    auto r = make_resolver(loop, test_options(servfail.server()));
    ClientName n = client_name(loop, *r, "192.0.2.1");
    CHECK(n.status == Status::temporary);
    CHECK(n.name == "unknown");
    CHECK_THAT(n.reason, Catch::Contains("SERVFAIL"));
    CHECK_THAT(n.reason, Catch::Contains("1.2.0.192.in-addr.arpa"));
  }
  SECTION("a server that never answers: bounded by the DNS timeouts") {
    auto r = make_resolver(loop, test_options(hole.server()));
    auto t0 = std::chrono::steady_clock::now();
    ClientName n = client_name(loop, *r, "2001:db8::1");
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(n.status == Status::temporary);
    CHECK(n.name == "unknown");
    CHECK_THAT(n.reason, Catch::Contains("timeout"));
    CHECK(took >= 250ms);
    CHECK(took < 3s);
  }
  CHECK(loop.drain_and_close() == 0);
}

TEST_CASE("destroying the resolver cancels client-name lookups exactly once", "[dns][integration]") {
  BlackHole hole;
  Dnsmasq dns(
      {"--ptr-record=8.0.0.127.in-addr.arpa,x.hole.test", "--server=/hole.test/" + hole_upstream(hole)});
  Loop loop;
  int fds_before = open_fd_count();

  SECTION("waiting for the PTR answer or for the forward one") {
    auto r = make_resolver(loop, test_options(dns.server()));
    auto silent = make_resolver(loop, test_options(hole.server()));
    int calls = 0, silent_calls = 0;
    ClientName got, silent_got;
    r->resolve_client_name("127.0.0.8", [&](ClientName n) {
      ++calls;
      got = std::move(n);
    });
    silent->resolve_client_name("127.0.0.8", [&](ClientName n) {
      ++silent_calls;
      silent_got = std::move(n);
    });
    // dnsmasq answers the PTR at once and forwards the A query of x.hole.test into the hole.
    REQUIRE(loop.run_until([&] { return dns.queries("x.hole.test", "A") == 1; }, 2s));
    CHECK(r->in_flight() == 1);
    CHECK(silent->in_flight() == 1);
    r.reset();
    silent.reset();
    CHECK(calls == 1);
    CHECK(got.status == Status::cancelled);
    CHECK(got.name == "unknown");
    CHECK(silent_calls == 1);
    CHECK(silent_got.status == Status::cancelled);
  }
  SECTION("from inside a callback, with a new client-name lookup started during shutdown") {
    auto r = make_resolver(loop, test_options(hole.server()));
    Resolver* raw = r.get();
    int cancelled = 0, late = 0;
    r->resolve_client_name("192.0.2.1", [&](ClientName n) {
      CHECK(n.status == Status::cancelled);
      ++cancelled;
      raw->resolve_client_name("192.0.2.2", [&](ClientName n2) {  // cancelled at once
        CHECK(n2.status == Status::cancelled);
        ++late;
      });
    });
    r->resolve_host("127.0.0.1", 25, [&](NextHops) { r.reset(); });
    REQUIRE(loop.run_until([&] { return r == nullptr; }, 2s));
    CHECK(cancelled == 1);
    CHECK(late == 1);
  }
  loop.drain();
  CHECK(open_fd_count() == fds_before);
  CHECK(loop.drain_and_close() == 0);
}
