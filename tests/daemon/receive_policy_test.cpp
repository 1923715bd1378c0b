// tests/daemon/receive_policy_test.cpp — the listener's pure decisions: who may relay, which
// recipients are the local postmaster, how a client is named; and the socket-activation rules.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

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
      {true, false, "a@b.test", "j\xc3\xb6rg@example.test", 553, "5.6.7"},  // until the spool stores UTF-8
      {true, false, "j\xc3\xb6rg@b.test", "x@example.test", 553, "5.6.7"},
  };
  for (const auto& r : rows) {
    INFO(r.relay << r.auth << " " << r.sender << " -> " << r.rcpt);
    auto v = rcpt_policy(RcptContext{r.relay, r.auth, "mx.test"}, r.sender, r.rcpt);
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
  CHECK(client_name("127.0.0.1") == "localhost");
  CHECK(client_name("127.0.0.2") == "localhost");
  CHECK(client_name("::1") == "localhost");
  CHECK(client_name("192.0.2.1") == "unknown");
  CHECK(client_name("1270::1") == "unknown");
  CHECK(client_ip_literal("2001:db8::1", true) == "IPv6:2001:db8::1");
  CHECK(client_ip_literal("2001:db8::1", false) == "2001:db8::1");
  CHECK(client_ip_literal("192.0.2.1", true) == "192.0.2.1");
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
