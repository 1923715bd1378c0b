// tests/daemon/receive_policy_test.cpp — the listener's pure decisions: who may relay, which
// recipients are the local postmaster, how a client is named; and the socket-activation rules.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "daemon/client_rates.h"
#include "daemon/receive_policy.h"
#include "daemon/socket_activation.h"

using namespace spoold::daemon;

TEST_CASE("rcpt_policy: never an open relay", "[listener][policy]") {
  struct Row {
    bool relay, auth;
    const char* sender;
    const char* rcpt;
    int code;
    const char* enhanced;
  };
  const Row rows[] = {
      {true, false, "a@b.test", "x@example.test", 250, "2.1.5"},   // inside relay_from
      {false, true, "a@b.test", "x@example.test", 250, "2.1.5"},   // authenticated
      {true, true, "", "x@example.test", 250, "2.1.5"},            // null sender
      {false, false, "a@b.test", "x@example.test", 554, "5.7.1"},  // outside, anonymous
      {false, false, "", "x@example.test", 554, "5.7.1"},
      {false, false, "a@b.test", "x@mx.test", 554, "5.7.1"},  // our own domain: only postmaster is open
      {false, false, "a@b.test", "postmaster", 250, "2.1.5"},
      {false, false, "a@b.test", "PostMaster@MX.test", 250, "2.1.5"},
      {false, false, "a@b.test", "postmaster@localhost", 250, "2.1.5"},
      {false, false, "a@b.test", "postmaster@example.test", 554, "5.7.1"},  // someone else's
      {false, false, "a@b.test", "postmaster.x@mx.test", 554, "5.7.1"},
      {true, false, "a@b.test", "j\xc3\xb6rg@example.test", 250, "2.1.5"},  // SMTPUTF8: stored as it is
      {true, false, "j\xc3\xb6rg@b.test",
       "x@b\xc3\xbc"
       "cher.test",
       250, "2.1.5"},
      {false, false, "a@b.test", "j\xc3\xb6rg@example.test", 554, "5.7.1"},  // and never relayed
  };
  for (const auto& r : rows) {
    INFO(r.relay << r.auth << " " << r.sender << " -> " << r.rcpt);
    auto v = rcpt_policy(RcptContext{r.relay, r.auth, "mx.test"}, r.rcpt);
    CHECK(v.code == r.code);
    CHECK(v.enhanced == r.enhanced);
  }
}

TEST_CASE("spool_address qualifies a bare postmaster only", "[listener][policy]") {
  CHECK(spool_address("postmaster", "mx.test") == "postmaster@mx.test");
  CHECK(spool_address("Postmaster", "mx.test") == "postmaster@mx.test");
  CHECK(spool_address("a@b.test", "mx.test") == "a@b.test");
}

TEST_CASE("client names and address literals", "[listener][policy]") {
  CHECK_FALSE(needs_name_lookup("127.0.0.1"));
  CHECK_FALSE(needs_name_lookup("::1"));
  CHECK_FALSE(needs_name_lookup("::ffff:127.0.0.1"));
  CHECK(needs_name_lookup("127.0.1.1"));
  CHECK(needs_name_lookup("127.0.0.2"));
  CHECK(needs_name_lookup("192.0.2.1"));
  CHECK(needs_name_lookup("2001:db8::1"));
  CHECK(client_name("127.0.0.1") == "localhost");
  CHECK(client_name("127.0.0.2") == "localhost");
  CHECK(client_name("::1") == "localhost");
  CHECK(client_name("192.0.2.1") == "unknown");
  CHECK(client_name("1270::1") == "unknown");
  CHECK(client_ip_literal("2001:db8::1", true) == "IPv6:2001:db8::1");
  CHECK(client_ip_literal("2001:db8::1", false) == "2001:db8::1");
  CHECK(client_ip_literal("192.0.2.1", true) == "192.0.2.1");
}

TEST_CASE("client_key: IPv4 addresses, IPv4-mapped ones, IPv6 /64s", "[listener][policy]") {
  CHECK(client_key("192.0.2.1") == "192.0.2.1");
  CHECK(client_key("::ffff:192.0.2.1") == "192.0.2.1");
  CHECK(client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64");
  CHECK(client_key("2001:db8:1:2::99") == "2001:db8:1:2::/64");
  CHECK(client_key("2001:db8:1:3::1") == "2001:db8:1:3::/64");
  CHECK(client_key("fe80::1%eth0") == "fe80::/64");
  CHECK(client_key("::1") == "::/64");
  CHECK(client_key("not an address") == "not an address");
}

TEST_CASE("data_too_slow: timeout plus the time the bytes take at min_data_rate", "[listener][policy]") {
  struct Row {
    std::uint64_t elapsed_ms, bytes, timeout_ms;
    int rate;
    bool slow;
  };
  const Row rows[] = {
      {1'000, 0, 2'000, 500, false},    // within the timeout, nothing sent yet
      {2'001, 0, 2'000, 500, true},     // nothing in more than the timeout
      {2'500, 500, 2'000, 500, false},  // 500 bytes earn 1 s at 500 B/s
      {3'001, 500, 2'000, 500, true},
      {600'000, 8'192 * 2, 300'000, 500, true},   // 16 KiB in 10 min: the 8 KiB-per-timeout drip
      {600'000, 1'000'000, 300'000, 500, false},  // 1 MB in 10 min: 1.7 KB/s
      {10'000'000, 0, 300'000, 0, false},         // rate 0: only the per-block timeout
  };
  for (const auto& r : rows) {
    INFO(r.elapsed_ms << " ms, " << r.bytes << " bytes");
    CHECK(data_too_slow(r.elapsed_ms, r.bytes, r.timeout_ms, r.rate) == r.slow);
  }
}

TEST_CASE("ClientRates: a limit per key in fixed windows, bounded memory", "[listener][policy]") {
  using namespace std::chrono_literals;
  const auto t0 = ClientRates::Clock::time_point{} + 1h;
  ClientRates r(60s);
  CHECK_FALSE(r.over("a", 2, t0));
  r.count("a", t0);
  CHECK_FALSE(r.over("a", 2, t0 + 1s));
  r.count("a", t0 + 1s);
  CHECK(r.over("a", 2, t0 + 2s));
  CHECK(r.over("a", 2, t0 + 59s));
  CHECK_FALSE(r.over("a", 3, t0 + 2s));   // the limit is the caller's (a reload may change it)
  CHECK_FALSE(r.over("a", 0, t0 + 2s));   // 0: no limit
  CHECK_FALSE(r.over("b", 2, t0 + 2s));   // keys are apart
  CHECK_FALSE(r.over("a", 2, t0 + 60s));  // the window ended
  r.count("a", t0 + 61s);                 // a new window from here
  CHECK_FALSE(r.over("a", 2, t0 + 62s));
  r.count("a", t0 + 62s);
  CHECK(r.over("a", 2, t0 + 62s));
  SECTION("at kMaxKeys, ended windows make room; if none has ended a new key is not tracked") {
    ClientRates full(60s);
    for (std::size_t i = 0; i < ClientRates::kMaxKeys; ++i) full.count(std::to_string(i), t0);
    CHECK(full.size() == ClientRates::kMaxKeys);
    full.count("new", t0 + 1s);
    CHECK(full.size() == ClientRates::kMaxKeys);
    CHECK_FALSE(full.over("new", 1, t0 + 1s));  // fails open
    full.count("0", t0 + 1s);                   // a tracked key still counts
    CHECK(full.over("0", 2, t0 + 1s));
    full.count("new", t0 + 60s);  // the windows that began at t0 have ended: dropped
    CHECK(full.size() == 1);
    CHECK(full.over("new", 1, t0 + 60s));
  }
}

TEST_CASE("listen_fds: only LISTEN_PID's own, well-formed values count", "[listener][activation]") {
  CHECK(listen_fds("42", "2", 42) == std::vector<int>{3, 4});
  CHECK(listen_fds("42", "0", 42).empty());
  CHECK(listen_fds("41", "2", 42).empty());  // meant for another process
  CHECK(listen_fds(nullptr, "2", 42).empty());
  CHECK(listen_fds("42", nullptr, 42).empty());
  CHECK(listen_fds("42", "2x", 42).empty());
  CHECK(listen_fds("42", "-1", 42).empty());
  CHECK(listen_fds("x42", "1", 42).empty());
  CHECK(listen_fds("42", "99999", 42).empty());
}

TEST_CASE("serves: an inherited socket matches the listen entry bound to the same address",
          "[listener][activation]") {
  CHECK(serves({"127.0.0.1", 25}, "127.0.0.1", 25));
  CHECK_FALSE(serves({"127.0.0.1", 25}, "127.0.0.1", 2525));
  CHECK_FALSE(serves({"127.0.0.1", 25}, "::1", 25));
  CHECK(serves({"::1", 25}, "::1", 25));
  CHECK(serves({"0.0.0.0", 25}, "", 25));
  CHECK(serves({"::", 25}, "", 25));
  CHECK_FALSE(serves({"127.0.0.1", 25}, "", 25));
}

TEST_CASE("bound_address reads a real socket", "[listener][activation]") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  auto b = bound_address(fd);
  REQUIRE(b);
  CHECK(b->ip == "127.0.0.1");
  CHECK(b->port > 0);
  ::close(fd);
  CHECK_FALSE(bound_address(fd));
}
