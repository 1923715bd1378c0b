// tests/dns/dns_fixture.h — real DNS peers on loopback for the dns/ tests: dnsmasq with records
// given on its command line, the Python responder for odd answers, a UDP socket that never
// answers, and a libuv loop that runs until a condition holds or a deadline passes.
// Rule: every wait is bounded; every server dies with its fixture.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dns/dns.h"
#include "tests/support/fixtures.h"

namespace spoold::dns::test {

using namespace std::chrono_literals;

// dnsmasq on 127.0.0.1:port(), authoritative for *.test (unknown names → NXDOMAIN),
// positive TTL 300 s unless records say otherwise, every query logged.
class Dnsmasq {
 public:
  explicit Dnsmasq(std::vector<std::string> extra_args);
  int port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  // How many queries of `type` ("MX", "A", "AAAA", "PTR") for `name` the server has logged.
  int queries(const std::string& name, const std::string& type) const;
  int all_queries() const;

 private:
  spoold::test::TempDir dir_;
  int port_;
  std::unique_ptr<spoold::test::Process> proc_;
};

// tests/dns/responder.py in the given mode ("servfail", "garbled").
class Responder {
 public:
  explicit Responder(const std::string& mode);
  int port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  std::unique_ptr<spoold::test::Process> proc_;
};

// A bound UDP socket nobody reads: queries sent there are never answered.
class BlackHole {
 public:
  BlackHole();
  ~BlackHole();
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A private uv loop. The destructor drains it and checks every handle was closed.
class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  uv_loop_t* get() { return &loop_; }
  // Runs the loop until pred() or timeout; true if pred() held.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s);
  // Runs a few non-blocking iterations so pending close callbacks fire.
  void drain();
  // drain(), then uv_loop_close(); returns its result (0 = every handle was closed).
  int drain_and_close();

 private:
  uv_loop_t loop_{};
  bool closed_ = false;
};

// Short timeouts so failure cases finish fast.
Options test_options(const std::string& server);

// One lookup, run to completion (bounded).
NextHops next_hops(Loop& loop, Resolver& r, const std::string& domain);
NextHops host(Loop& loop, Resolver& r, const std::string& host, uint16_t port);
ClientName client_name(Loop& loop, Resolver& r, const std::string& ip);

std::vector<std::string> hosts_of(const NextHops& r);
std::vector<int> preferences_of(const NextHops& r);
int open_fd_count();

}  // namespace spoold::dns::test
