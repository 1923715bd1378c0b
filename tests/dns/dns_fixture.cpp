// tests/dns/dns_fixture.cpp — see dns_fixture.h.
#include "tests/dns/dns_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace spoold::dns::test {

using spoold::test::Process;

Dnsmasq::Dnsmasq(std::vector<std::string> extra_args) : port_(spoold::test::free_port()) {
  std::vector<std::string> argv = {"/usr/sbin/dnsmasq",
                                   // Not --no-daemon: in that (debug) mode dnsmasq serves a TCP
                                   // connection in its main process and answers no UDP query until
                                   // the client closes it — c-ares keeps it open after a TC fallback.
                                   "--keep-in-foreground", "--port=" + std::to_string(port_),
                                   "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                                   "--no-hosts", "--conf-file=/dev/null", "--user=root",
                                   "--pid-file=", "--local=/test/", "--local-ttl=300", "--cache-size=0",
                                   "--log-queries", "--log-facility=" + (dir_ / "queries.log")};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  proc_ = std::make_unique<Process>(argv, dir_ / "stdout", dir_ / "stderr");
  if (!spoold::test::wait_for_port("127.0.0.1", port_, 5s))
    throw std::runtime_error("dnsmasq did not start: " + spoold::test::read_file(dir_ / "stderr"));
}

int Dnsmasq::queries(const std::string& name, const std::string& type) const {
  std::istringstream log(spoold::test::read_file(dir_ / "queries.log"));
  std::string needle = "query[" + type + "] " + name + " from";
  int n = 0;
  for (std::string line; std::getline(log, line);)
    if (line.find(needle) != std::string::npos) ++n;
  return n;
}

int Dnsmasq::all_queries() const {
  std::istringstream log(spoold::test::read_file(dir_ / "queries.log"));
  int n = 0;
  for (std::string line; std::getline(log, line);)
    if (line.find(": query[") != std::string::npos) ++n;
  return n;
}

Responder::Responder(const std::string& mode) : port_(spoold::test::free_port()) {
  std::string script = std::string(SPOOLD_SOURCE_DIR) + "/tests/dns/responder.py";
  proc_ = std::make_unique<Process>(
      std::vector<std::string>{spoold::test::system_python(), script, std::to_string(port_), mode});
  if (!spoold::test::wait_for_port("127.0.0.1", port_, 5s))
    throw std::runtime_error("responder did not start");
}

BlackHole::BlackHole() {
  fd_ = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    throw std::runtime_error("black hole: bind failed");
  socklen_t len = sizeof sa;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  port_ = ntohs(sa.sin_port);
}

BlackHole::~BlackHole() {
  if (fd_ >= 0) close(fd_);
}

Loop::Loop() {
  if (uv_loop_init(&loop_) != 0) throw std::runtime_error("uv_loop_init failed");
}

Loop::~Loop() {
  if (!closed_) drain_and_close();
}

bool Loop::run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  // A heartbeat timer so UV_RUN_ONCE never blocks longer than a few ms.
  uv_timer_t beat;
  uv_timer_init(&loop_, &beat);
  uv_timer_start(
      &beat, [](uv_timer_t*) {}, 5, 5);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool ok = pred();
  while (!ok && std::chrono::steady_clock::now() < deadline) {
    uv_run(&loop_, UV_RUN_ONCE);
    ok = pred();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&beat), nullptr);
  uv_run(&loop_, UV_RUN_NOWAIT);  // lets the heartbeat's close finish while `beat` is alive
  return ok;
}

void Loop::drain() {
  for (int i = 0; i < 10; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
}

int Loop::drain_and_close() {
  drain();
  int rc = uv_loop_close(&loop_);
  closed_ = rc == 0;
  if (!closed_) {  // leave nothing behind even when a test failed: close what is left
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
    for (int i = 0; i < 10; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
    closed_ = uv_loop_close(&loop_) == 0;
  }
  return rc;
}

Options test_options(const std::string& server) {
  Options o;
  o.servers = {server};
  o.timeout = 300ms;
  o.tries = 2;
  return o;
}

NextHops next_hops(Loop& loop, Resolver& r, const std::string& domain) {
  std::optional<NextHops> got;
  r.resolve_next_hops(domain, [&](NextHops h) { got = std::move(h); });
  if (!loop.run_until([&] { return got.has_value(); }, 10s))
    throw std::runtime_error("lookup never finished");
  return std::move(*got);
}

NextHops host(Loop& loop, Resolver& r, const std::string& name, uint16_t port) {
  std::optional<NextHops> got;
  r.resolve_host(name, port, [&](NextHops h) { got = std::move(h); });
  if (!loop.run_until([&] { return got.has_value(); }, 10s))
    throw std::runtime_error("lookup never finished");
  return std::move(*got);
}

ClientName client_name(Loop& loop, Resolver& r, const std::string& ip) {
  std::optional<ClientName> got;
  r.resolve_client_name(ip, [&](ClientName n) { got = std::move(n); });
  if (!loop.run_until([&] { return got.has_value(); }, 10s))
    throw std::runtime_error("lookup never finished");
  return std::move(*got);
}

std::vector<std::string> hosts_of(const NextHops& r) {
  std::vector<std::string> out;
  for (const auto& h : r.hops) out.push_back(h.host);
  return out;
}

std::vector<int> preferences_of(const NextHops& r) {
  std::vector<int> out;
  for (const auto& h : r.hops) out.push_back(h.preference);
  return out;
}

int open_fd_count() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

}  // namespace spoold::dns::test
