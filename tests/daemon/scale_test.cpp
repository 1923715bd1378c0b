// tests/daemon/scale_test.cpp — guarantee 4 (bounded): with tens of thousands of entries waiting in
// later tiers, the daemon delivers what is due promptly and its memory does not follow the queue.
// The waiting entries are written with the spool's own format (format_entry) but without fsync, so
// the test builds a large queue in seconds.
#include <signal.h>

#include <catch2/catch.hpp>
#include <ctime>
#include <fstream>

#include "spool/spool.h"
#include "tests/daemon/harness.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

long vm_hwm_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

TEST_CASE("memory follows concurrency, not queue length", "[daemon][scale]") {
  Env env;
  namespace sp = spoold::spool;
  sp::Options o;
  o.dir = env.spool();
  o.tier_delays = {std::chrono::seconds(0), std::chrono::seconds(1), std::chrono::seconds(2)};
  o.hostname = "spoold.test";
  auto spool = sp::Spool::open(o);
  REQUIRE(spool.ok());
  const int waiting = 30000;
  const std::string message = "Subject: waiting\r\n\r\nbody\r\n";
  int64_t later = static_cast<int64_t>(std::time(nullptr)) + 3600;
  for (int i = 0; i < waiting; ++i) {
    sp::Entry e;
    e.id = spool->new_id();
    e.sender = "a@example.com";
    e.recipients.push_back({"b@example.net", sp::RcptState::pending, 1, "451 4.3.0 later", {}});
    e.arrived = later - 7200;
    e.last_attempt = later - 3600;
    e.attempts = 1;
    e.body_size = message.size();
    int tier = 1 + i % 2;
    write_file(spool->body_path(e.id), message);
    write_file(spool->entry_path(sp::EntryRef{sp::Place::queue, tier, later, e.id}), sp::format_entry(e));
  }
  const int due = 300;
  for (int i = 0; i < due; ++i)
    env.drop("d" + std::to_string(i), envelope_message("a@example.com", {"b@example.net"}, "due"));
  auto t0 = std::chrono::steady_clock::now();
  env.start();
  REQUIRE(env.sink().wait_count(due, 60s));
  auto took = std::chrono::steady_clock::now() - t0;
  long hwm = vm_hwm_kb(env.daemon_pid());
  INFO("peak RSS " << hwm << " kB, " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                   << " ms for the due ones");
  CHECK(hwm > 0);
#ifdef __SANITIZE_ADDRESS__
  const long limit_kb = 300 * 1024;  // ASan's shadow memory and quarantine
#else
  const long limit_kb = 40 * 1024;  // ~9 MB measured; 30,000 entries held in memory would be ~60 MB
#endif
  CHECK(hwm < limit_kb);
  CHECK(took < 30s);
  CHECK(env.stop(SIGTERM) == 0);
  CHECK(env.sink().count() == static_cast<size_t>(due));  // nothing not due was sent
  CHECK(env.entries("queue/1").size() + env.entries("queue/2").size() == static_cast<size_t>(waiting));
}
