// tests/reliability/pidns_lock_test.cpp — guarantee 3 across PID namespaces (containers): two
// processes with the same `instance` on one kernel, one of them inside `unshare -pf --mount-proc`,
// never break each other's live locks — a pid looked up in the wrong namespace names nobody (or
// somebody else) — and a lock whose holder was killed is broken only once lock_stale_after passed.
// In one namespace the dead-owner shortcut still works at once. The holder is the spool library
// in a small helper (pidns_lock_holder), refreshing its lock as the daemon does.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "spool/lock.h"
#include "tests/support/fixtures.h"

using namespace spoold::test;
using namespace std::chrono_literals;
namespace spool = spoold::spool;

namespace {

constexpr const char* kInstance = "twin";  // both sides: the default (hostname) shared by containers
constexpr long kStale = 2;                 // lock_stale_after, seconds

std::string helper() {
  return std::string(SPOOLD_BINARY_DIR) + "/tests/reliability/pidns_lock_holder";
}

// Root in a sandbox may still lack CAP_SYS_ADMIN; then this file has nothing to show.
bool unshare_works() {
  Process p({"unshare", "-pf", "--mount-proc", "true"});
  int st = p.wait(10s);
  return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// `helper --pid N …` inside a fresh PID namespace (the helper's pid 1 forks the worker as pid N).
std::vector<std::string> in_new_pidns(long pid, std::vector<std::string> args) {
  std::vector<std::string> argv{"unshare", "-pf",   "--mount-proc",     "--kill-child",
                                helper(),  "--pid", std::to_string(pid)};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// A pid that names no process in our namespace right now (a reaped child's).
long dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

struct Spool {
  TempDir dir;
  std::string lock = dir / "E.lock", owners = dir / "tmp", ready = dir / "ready";
  Spool() { ::mkdir(owners.c_str(), 0700); }
};

spool::LockOptions options(const Spool& s) {
  std::chrono::seconds stale(kStale);
  return spool::LockOptions{kInstance, stale,
                            std::make_shared<spool::LockOwnerFile>(s.owners, kInstance, stale)};
}

// One attempt from this process (the root namespace), as a second daemon's claim would be.
bool acquired_here(const Spool& s) {
  auto r = spool::Lock::try_acquire(s.lock, options(s));
  REQUIRE(r.ok());
  return r->has_value();
}

// The pid (in our namespace) of the first child of `parent`: the new namespace's pid 1 under
// unshare. Killing it kills everything in that namespace, as a container stop does.
pid_t first_child(pid_t parent) {
  std::ifstream in(fmt::format("/proc/{}/task/{}/children", parent, parent));
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

// While the holder lives (refreshing), no attempt from here succeeds for `watch`.
void never_acquired_while(const Spool& s, std::chrono::milliseconds watch, Process& holder) {
  auto until = std::chrono::steady_clock::now() + watch;
  int attempts = 0;
  while (std::chrono::steady_clock::now() < until) {
    REQUIRE(holder.running());
    INFO("attempt " << attempts);
    REQUIRE_FALSE(acquired_here(s));
    ++attempts;
    std::this_thread::sleep_for(100ms);
  }
  CHECK(attempts > 10);
}

// Polls until we get the lock; returns the seconds that took, or -1 after `timeout`.
double seconds_until_acquired(const Spool& s, std::chrono::seconds timeout) {
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < timeout) {
    if (acquired_here(s))
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::this_thread::sleep_for(50ms);
  }
  return -1;
}

}  // namespace

TEST_CASE("a lock held in another PID namespace is broken only by age, never by its pid", "[pidns]") {
  if (!unshare_works()) {
    WARN("unshare -pf --mount-proc is not permitted here: only the unit tests cover the rule");
    return;
  }
  Spool s;
  // The holder's pid in its namespace is one that names no process in ours: a pid lookup from
  // here says "dead" although the holder lives (the bug), unless it knows the namespaces differ.
  long inner = dead_pid();
  Process holder(in_new_pidns(inner, {"hold", s.lock, s.owners, kInstance, std::to_string(kStale), s.ready}));
  REQUIRE(wait_until([&] { return !read_file(s.ready).empty(); }, 10s));
  CHECK(std::stol(read_file(s.ready)) == inner);
  auto owner = spool::read_lock_owner(s.lock);
  REQUIRE(owner.ok());
  CHECK(owner->instance == kInstance);
  CHECK(owner->pid == inner);
  CHECK(owner->boot_id == spool::boot_id());
  CHECK(owner->pidns != spool::lock_owner_self(kInstance).pidns);

  // Two and a half times lock_stale_after: a break by age would have happened too.
  never_acquired_while(s, std::chrono::milliseconds(kStale * 2500), holder);
  CHECK(holder.running());  // its refreshes all found the lock still its own

  pid_t ns_init = first_child(holder.pid());
  REQUIRE(ns_init > 0);
  REQUIRE(::kill(ns_init, SIGKILL) == 0);  // the whole namespace dies, as a container does
  REQUIRE(holder.wait(10s) != -1);
  double waited = seconds_until_acquired(s, 15s);
  INFO("acquired " << waited << " s after the holder was killed");
  REQUIRE(waited >= 0);
  // Refreshed at most kStale/4 before the kill, stale after more than kStale whole seconds.
  CHECK(waited >= kStale - kStale / 4.0 - 0.2);
}

TEST_CASE("a lock held here is not broken from another PID namespace", "[pidns]") {
  if (!unshare_works()) {
    WARN("unshare -pf --mount-proc is not permitted here: only the unit tests cover the rule");
    return;
  }
  Spool s;
  auto mine = spool::Lock::try_acquire(s.lock, options(s));
  REQUIRE(mine.ok());
  REQUIRE(mine->has_value());
  // In a fresh namespace our pid names nobody (the helper runs as pid 2 there).
  for (int i = 0; i < 3; ++i) {
    Process other(in_new_pidns(2, {"try", s.lock, s.owners, kInstance, std::to_string(kStale)}));
    int st = other.wait(20s);
    REQUIRE(st != -1);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 1);  // busy, not broken
    REQUIRE((*mine)->refresh().ok());
  }
  CHECK((*mine)->still_held());
  REQUIRE((*mine)->release().ok());
  // And the same helper in that namespace does get a free lock (the check above is not vacuous).
  Process other(in_new_pidns(2, {"try", s.lock, s.owners, kInstance, std::to_string(kStale)}));
  int st = other.wait(20s);
  REQUIRE(st != -1);
  CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
}

TEST_CASE("in one PID namespace a killed holder's lock is broken at once", "[pidns]") {
  Spool s;
  Process holder({helper(), "hold", s.lock, s.owners, kInstance, std::to_string(kStale), s.ready});
  REQUIRE(wait_until([&] { return !read_file(s.ready).empty(); }, 10s));
  CHECK_FALSE(acquired_here(s));
  REQUIRE(::kill(holder.pid(), SIGKILL) == 0);
  REQUIRE(holder.wait(10s) != -1);  // reaped: kill(pid, 0) now says ESRCH
  double waited = seconds_until_acquired(s, 15s);
  INFO("acquired " << waited << " s after the holder was killed");
  REQUIRE(waited >= 0);
  CHECK(waited < 1.0);  // provably dead: no need to wait for lock_stale_after
}
