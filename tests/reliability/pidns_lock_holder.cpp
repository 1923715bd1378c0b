// tests/reliability/pidns_lock_holder.cpp — the spool lock library in a process of its own, for
// pidns_lock_test.cpp to run inside `unshare -pf --mount-proc` (another PID namespace).
//
//   pidns_lock_holder [--pid N] hold LOCK OWNER_DIR INSTANCE STALE_S READY_FILE
//       takes LOCK (through a shared owner file in OWNER_DIR, as the daemon does), writes our pid
//       to READY_FILE, then refreshes the lock every STALE_S/4 like the daemon until it is killed;
//       exits 3 if the lock was lost (broken by someone else) meanwhile.
//   pidns_lock_holder [--pid N] try LOCK OWNER_DIR INSTANCE STALE_S
//       one try_acquire: exit 0 if we got it (then released), 1 if it is busy, 2 on an error.
//
// --pid N (only as pid 1 of a fresh PID namespace): do the work in a child whose pid is N, chosen
// through /proc/sys/kernel/ns_last_pid, so the test can pick a pid that means something else (or
// nothing) in its own namespace. Its exit status is passed on.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "spool/atomic_write.h"
#include "spool/lock.h"

using namespace spoold::spool;

namespace {

LockOptions options(const std::string& owner_dir, const std::string& instance, long stale_s) {
  std::chrono::seconds stale(stale_s);
  return LockOptions{instance, stale, std::make_shared<LockOwnerFile>(owner_dir, instance, stale)};
}

// Written whole by rename, so the test never reads half a pid.
bool write_ready(const std::string& path) {
  auto r = atomic_write(path.substr(0, path.rfind('/')), path, {fmt::format("{}\n", ::getpid())});
  return r.ok();
}

int hold(const std::string& lock, const LockOptions& o, const std::string& ready) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::optional<Lock> held;
  while (!held) {
    auto r = Lock::try_acquire(lock, o);
    if (!r.ok()) return 2;
    held = std::move(*r);
    if (!held && std::chrono::steady_clock::now() > deadline) return 1;
    if (!held) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!write_ready(ready)) return 2;
  auto every = std::chrono::milliseconds(std::max<long>(100, o.stale_after.count() * 1000 / 4));
  for (;;) {  // like the daemon's refresh timer (lock_stale_after / 4)
    std::this_thread::sleep_for(every);
    if (!held->refresh().ok()) return 3;
  }
}

int try_once(const std::string& lock, const LockOptions& o) {
  auto r = Lock::try_acquire(lock, o);
  if (!r.ok()) return 2;
  if (!r->has_value()) return 1;
  return (*r)->release().ok() ? 0 : 2;
}

int run(const std::vector<std::string>& a) {
  if (a.size() == 6 && a[0] == "hold") return hold(a[1], options(a[2], a[3], std::stol(a[4])), a[5]);
  if (a.size() == 5 && a[0] == "try") return try_once(a[1], options(a[2], a[3], std::stol(a[4])));
  std::fprintf(stderr,
               "usage: pidns_lock_holder [--pid N] hold|try LOCK OWNER_DIR INSTANCE STALE_S [READY]\n");
  return 64;
}

// The next fork in our namespace gets pid `want` (nothing else runs here: we are its pid 1).
int run_as_pid(long want, const std::vector<std::string>& a) {
  FILE* f = std::fopen("/proc/sys/kernel/ns_last_pid", "w");
  if (!f) return 65;
  bool written = std::fprintf(f, "%ld", want - 1) > 0;
  if (std::fclose(f) != 0 || !written) return 65;
  pid_t pid = ::fork();
  if (pid < 0) return 65;
  if (pid == 0) ::_exit(::getpid() == want ? run(a) : 66);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() >= 2 && a[0] == "--pid") {
    long want = std::stol(a[1]);
    return run_as_pid(want, std::vector<std::string>(a.begin() + 2, a.end()));
  }
  return run(a);
}
