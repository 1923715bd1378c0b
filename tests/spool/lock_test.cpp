// tests/spool/lock_test.cpp — NFS-safe locks with real processes: many forked holders hammering
// one lock must never overlap, and two processes breaking one stale lock at once must produce
// exactly one winner — for a provably dead owner and for a lock aged by the file system's clock.
// The "provably dead" rule itself (instance, boot, PID namespace, pid, start time) is a table test
// of the pure owner_provably_dead(); other PID namespaces for real are in tests/reliability.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "spool/fs_util.h"
#include "spool/lock.h"
#include "tests/support/fixtures.h"

using namespace spoold::spool;
using namespace std::chrono_literals;
using spoold::test::read_file;
using spoold::test::TempDir;
using spoold::test::write_file;

namespace {

LockOptions opts(const std::string& instance = "inst-a", std::chrono::seconds stale = 600s) {
  return LockOptions{instance, stale, nullptr};
}

std::optional<Lock> acquire(const std::string& path, const LockOptions& o) {
  auto r = Lock::try_acquire(path, o);
  if (!r.ok()) FAIL(r.error().message);
  return std::move(*r);
}

// Forks `n` children running fn(i) → exit code; returns the exit codes (-1 for a signal).
std::vector<int> run_children(int n, const std::function<int(int)>& fn) {
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(fn(i));
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : pids) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    codes.push_back(WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  }
  return codes;
}

long dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

// A lock line as this version writes it, naming `pid` in our PID namespace (or `pidns`).
std::string lock_line(long pid, uint64_t start_time = 0, std::optional<std::string> pidns = std::nullopt,
                      const std::string& instance = "inst-a") {
  LockOwner o = lock_owner_self(instance);
  o.pid = pid;
  o.start_time = start_time;
  if (pidns) o.pidns = *pidns;
  o.time = static_cast<int64_t>(::time(nullptr));
  o.token = fmt::format("test.{}", ::getpid());
  return format_lock_owner(o);
}

size_t count_lines(const std::string& text, const std::string& prefix) {
  size_t n = 0, pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    ++n;
    pos += prefix.size();
  }
  return n;
}

// A gate children wait on so they start breaking at the same moment.
struct Gate {
  int fds[2];
  Gate() { REQUIRE(::pipe(fds) == 0); }
  ~Gate() {
    ::close(fds[0]);
    if (fds[1] >= 0) ::close(fds[1]);
  }
  void wait_in_child() {
    ::close(fds[1]);
    char c;
    (void)::read(fds[0], &c, 1);  // returns at EOF, when the parent closes its end
  }
  void open_gate() {
    ::close(fds[1]);
    fds[1] = -1;
  }
};

// Two processes try once at the same moment; each winner appends "W" and holds the lock a while.
size_t winners_of_race(const std::string& lock, const std::string& log, const LockOptions& o) {
  Gate gate;
  std::vector<pid_t> pids;
  for (int i = 0; i < 2; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      gate.wait_in_child();
      auto r = Lock::try_acquire(lock, o);
      if (!r.ok()) ::_exit(2);
      if (r->has_value()) {
        int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0600);
        (void)::write(fd, "W\n", 2);
        ::close(fd);
        std::this_thread::sleep_for(400ms);  // hold it while the other one is still trying
      }
      ::_exit(0);
    }
    pids.push_back(pid);
  }
  std::this_thread::sleep_for(50ms);
  gate.open_gate();
  for (pid_t pid : pids) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
  }
  return count_lines(read_file(log), "W\n");
}

}  // namespace

TEST_CASE("a lock is exclusive, names its owner and is released", "[lock]") {
  TempDir dir;
  std::string path = dir / "E1.lock";
  {
    auto a = acquire(path, opts());
    REQUIRE(a.has_value());
    auto owner = read_lock_owner(path);
    REQUIRE(owner.ok());
    CHECK(owner->instance == "inst-a");
    CHECK(owner->pid == ::getpid());
    CHECK(owner->boot_id == boot_id());
    CHECK(std::abs(owner->time - static_cast<int64_t>(::time(nullptr))) <= 2);
    // Where the pid means something: our PID and time namespace, and when we started.
    CHECK_FALSE(owner->pidns.empty());
    CHECK(owner->pidns == lock_owner_self("x").pidns);
    CHECK(owner->timens == lock_owner_self("x").timens);
    CHECK(owner->start_time != 0);
    CHECK(owner->start_time == lock_owner_self("x").start_time);
    CHECK_FALSE(acquire(path, opts()).has_value());
    CHECK_FALSE(acquire(path, opts("inst-b")).has_value());
    CHECK(a->still_held());
  }
  CHECK_FALSE(spoold::spool::path_exists(path));
  auto again = acquire(path, opts());
  CHECK(again.has_value());
  // Only the lock itself is left in the directory: the link temp file is gone.
  CHECK(spoold::test::list_dir(dir.path()).size() <= 3);
}

TEST_CASE("refresh touches the lock; a lock taken over is not released by its old holder", "[lock]") {
  TempDir dir;
  std::string path = dir / "E2.lock";
  auto a = acquire(path, opts());
  REQUIRE(a.has_value());
  struct timespec old[2] = {{::time(nullptr) - 100, 0}, {::time(nullptr) - 100, 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), old, 0) == 0);
  REQUIRE(a->refresh().ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(std::abs(st.st_mtim.tv_sec - ::time(nullptr)) <= 2);
  // Someone breaks it (as if it went stale) and takes it.
  REQUIRE(::rename(path.c_str(), (path + ".aside").c_str()) == 0);
  auto b = acquire(path, opts("inst-b"));
  REQUIRE(b.has_value());
  CHECK_FALSE(a->still_held());
  CHECK_FALSE(a->refresh().ok());
  CHECK_FALSE(a->release().ok());
  CHECK(b->still_held());  // a's release did not remove b's lock
  auto owner = read_lock_owner(path);
  REQUIRE(owner.ok());
  CHECK(owner->instance == "inst-b");
}

TEST_CASE("a live lock is never broken", "[lock]") {
  TempDir dir;
  std::string path = dir / "E3.lock";
  // Another host, fresh: not stale.
  write_file(path, fmt::format("other-host 12345 some-boot {}\n", ::time(nullptr)));
  CHECK_FALSE(acquire(path, opts()).has_value());
  // Same host, boot and PID namespace, owner alive (our parent process; start time not recorded).
  write_file(path, lock_line(::getppid()));
  CHECK_FALSE(acquire(path, opts()).has_value());
  // Same instance but another boot: not provably dead (could be a misconfigured twin).
  write_file(path, fmt::format("inst-a {} other-boot {}\n", dead_pid(), ::time(nullptr)));
  CHECK_FALSE(acquire(path, opts()).has_value());
  // Same instance and boot, pid gone here, but another PID namespace: another container's daemon.
  write_file(path, lock_line(dead_pid(), 0, std::string("4:4026500000")));
  CHECK_FALSE(acquire(path, opts()).has_value());
  // The same from an older spoold, which recorded no namespace: it could be that container too.
  write_file(path, fmt::format("inst-a {} {} {} old.token\n", dead_pid(), boot_id(), ::time(nullptr)));
  CHECK_FALSE(acquire(path, opts()).has_value());
  // Our own pid and start time: this process is alive (another thread's private lock).
  write_file(path, lock_line(::getpid(), lock_owner_self("inst-a").start_time));
  CHECK_FALSE(acquire(path, opts()).has_value());
  // Unreadable contents: judged by age only, and it is fresh.
  write_file(path, "garbage");
  CHECK_FALSE(acquire(path, opts()).has_value());
  CHECK(read_file(path) == "garbage");
}

TEST_CASE("many processes hammering one lock never hold it together", "[lock][processes]") {
  bool shared = GENERATE(false, true);  // a private file per lock, or one owner file per process
  INFO("shared owner file " << shared);
  TempDir dir;
  std::string path = dir / "HOT.lock";
  std::string holder = dir / "holder";
  std::string log = dir / "log";
  std::string pool_dir = dir / "pool";
  ::mkdir(pool_dir.c_str(), 0700);
  constexpr int kProcs = 5, kRounds = 40;
  auto codes = run_children(kProcs, [&](int i) {
    auto o = opts(i % 2 ? "inst-a" : "inst-b");
    if (shared) o.owner = std::make_shared<LockOwnerFile>(pool_dir, o.instance, o.stale_after);
    auto deadline = std::chrono::steady_clock::now() + 60s;
    for (int round = 0; round < kRounds; ++round) {
      std::optional<Lock> lock;
      while (!lock) {
        if (std::chrono::steady_clock::now() > deadline) return 3;
        auto r = Lock::try_acquire(path, o);
        if (!r.ok()) return 4;
        lock = std::move(*r);
        if (!lock) std::this_thread::sleep_for(std::chrono::microseconds(200 + 100 * i));
      }
      // Inside the critical section: the holder file must not exist yet.
      int fd = ::open(holder.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
      if (fd < 0) return 5;  // two holders at once
      ::close(fd);
      int logfd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0600);
      std::string line = fmt::format("{} {}\n", i, round);
      (void)::write(logfd, line.data(), line.size());
      ::close(logfd);
      std::this_thread::sleep_for(std::chrono::microseconds(300));
      ::unlink(holder.c_str());
      if (!lock->release().ok()) return 6;
    }
    return 0;
  });
  for (int c : codes) CHECK(c == 0);
  auto text = read_file(log);
  CHECK(static_cast<int>(std::count(text.begin(), text.end(), '\n')) == kProcs * kRounds);
  CHECK_FALSE(spoold::spool::path_exists(path));
}

std::string owner_file_in(const std::string& dir) {
  for (const auto& n : spoold::test::list_dir(dir))
    if (n.rfind("t.lock-owner.", 0) == 0) return dir + "/" + n;
  return "";
}

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST_CASE("a process's locks are hard links of one owner file: no inode per lock", "[lock]") {
  TempDir dir;
  std::string owner_dir = dir / "tmp";
  ::mkdir(owner_dir.c_str(), 0700);
  std::string a = dir / "A.lock", b = dir / "B.lock";
  {
    auto o = opts();
    o.owner = std::make_shared<LockOwnerFile>(owner_dir, o.instance, o.stale_after);
    auto la = acquire(a, o);
    REQUIRE(la.has_value());
    // The very first lock of the owner file is ours alone too (it once was not: the held set was
    // reset when the file was made, after the path had been marked).
    CHECK_FALSE(acquire(a, o).has_value());
    auto lb = acquire(b, o);
    REQUIRE(lb.has_value());
    std::string owner = owner_file_in(owner_dir);
    REQUIRE_FALSE(owner.empty());
    CHECK(inode_of(a) == inode_of(owner));
    CHECK(inode_of(b) == inode_of(owner));
    struct stat st {};
    REQUIRE(::stat(owner.c_str(), &st) == 0);
    CHECK(st.st_nlink == 3);
    // The contents name this process, as a per-lock file does (other processes judge by them).
    auto who = read_lock_owner(a);
    REQUIRE(who.ok());
    CHECK(who->pid == ::getpid());
    CHECK(who->instance == "inst-a");
    CHECK(la->still_held());
    // One lock released: the other is untouched; a second lock on a held path is refused even
    // though the path names our own inode.
    REQUIRE(la->release().ok());
    CHECK_FALSE(path_exists(a));
    CHECK(lb->still_held());
    CHECK_FALSE(acquire(b, o).has_value());
    CHECK(lb->still_held());
    REQUIRE(lb->refresh().ok());
    // And the path is free again once released.
    REQUIRE(lb->release().ok());
    auto again = acquire(b, o);
    CHECK(again.has_value());
  }
  // The owner file goes with its holder; no lock or temp file is left.
  CHECK(spoold::test::list_dir(owner_dir).empty());
  CHECK_FALSE(path_exists(a));
  CHECK_FALSE(path_exists(b));
}

TEST_CASE("an owner file deleted meanwhile: held locks stay ours, the next lock makes a new one", "[lock]") {
  TempDir dir;
  std::string owner_dir = dir / "tmp";
  ::mkdir(owner_dir.c_str(), 0700);
  auto o = opts();
  o.owner = std::make_shared<LockOwnerFile>(owner_dir, o.instance, o.stale_after);
  auto la = acquire(dir / "A.lock", o);
  REQUIRE(la.has_value());
  std::string first = owner_file_in(owner_dir);
  ino_t first_ino = inode_of(first);
  // recover() of another process deletes owner files not touched for lock_stale_after.
  REQUIRE(::unlink(first.c_str()) == 0);
  CHECK(la->still_held());  // the inode lives on through the lock (and our open fd)
  auto lb = acquire(dir / "B.lock", o);
  REQUIRE(lb.has_value());
  std::string second = owner_file_in(owner_dir);
  REQUIRE_FALSE(second.empty());
  CHECK(inode_of(second) != first_ino);
  CHECK(inode_of(dir / "B.lock") == inode_of(second));
  CHECK(la->still_held());
  CHECK(read_lock_owner(dir / "B.lock")->token != read_lock_owner(dir / "A.lock")->token);
  REQUIRE(la->release().ok());
  REQUIRE(lb->release().ok());
}

TEST_CASE("an owner file untouched for a while is touched before it is linked", "[lock]") {
  TempDir dir;
  std::string owner_dir = dir / "tmp";
  ::mkdir(owner_dir.c_str(), 0700);
  auto o = opts("inst-a", 2s);
  o.owner = std::make_shared<LockOwnerFile>(owner_dir, o.instance, o.stale_after);
  auto la = acquire(dir / "A.lock", o);
  REQUIRE(la.has_value());
  REQUIRE(la->release().ok());
  // As if time had passed with nothing touching the file: its mtime is old...
  std::string owner = owner_file_in(owner_dir);
  struct timespec old[2] = {{::time(nullptr) - 100, 0}, {::time(nullptr) - 100, 0}};
  REQUIRE(::utimensat(AT_FDCWD, owner.c_str(), old, 0) == 0);
  // ...and more than a quarter of lock_stale_after has passed since our last touch.
  std::this_thread::sleep_for(700ms);
  auto lb = acquire(dir / "B.lock", o);
  REQUIRE(lb.has_value());
  struct stat st {};
  REQUIRE(::stat((dir / "B.lock").c_str(), &st) == 0);
  CHECK(std::abs(st.st_mtim.tv_sec - ::time(nullptr)) <= 2);  // a new lock never starts out stale
  // Another process does not judge it stale.
  pid_t pid = ::fork();
  if (pid == 0) {
    auto r = Lock::try_acquire(dir / "B.lock", opts("inst-b", 2s));
    ::_exit(r.ok() && !r->has_value() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

TEST_CASE("a lock on the shared owner file that was broken meanwhile is not released", "[lock]") {
  TempDir dir;
  std::string owner_dir = dir / "tmp";
  ::mkdir(owner_dir.c_str(), 0700);
  std::string path = dir / "X.lock";
  auto o = opts("inst-a", 1s);
  o.owner = std::make_shared<LockOwnerFile>(owner_dir, o.instance, o.stale_after);
  auto mine = acquire(path, o);
  REQUIRE(mine.has_value());
  // Someone renames it aside and takes the lock (as a breaker of a stale lock would).
  REQUIRE(::rename(path.c_str(), (dir / "aside").c_str()) == 0);
  auto theirs = acquire(path, opts("inst-b"));
  REQUIRE(theirs.has_value());
  CHECK_FALSE(mine->still_held());
  CHECK_FALSE(mine->release().ok());  // not ours any more
  CHECK(theirs->still_held());        // their lock is untouched
  CHECK(read_lock_owner(path)->instance == "inst-b");
}

TEST_CASE("two processes breaking a dead owner's lock: one winner", "[lock][processes]") {
  for (int round = 0; round < 6; ++round) {
    TempDir dir;
    std::string path = dir / "DEAD.lock";
    write_file(path, lock_line(dead_pid()));
    CHECK(winners_of_race(path, dir / "log", opts()) == 1);
  }
}

TEST_CASE("two processes breaking a lock aged by the file system clock: one winner", "[lock][processes]") {
  for (int round = 0; round < 6; ++round) {
    TempDir dir;
    std::string path = dir / "OLD.lock";
    // Owner on another host (alive as far as we can know), but not refreshed for 2 minutes.
    write_file(path, fmt::format("other-host 1 other-boot {}\n", ::time(nullptr) - 120));
    struct timespec old[2] = {{::time(nullptr) - 120, 0}, {::time(nullptr) - 120, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), old, 0) == 0);
    CHECK_FALSE(acquire(path, opts("inst-a", 600s)).has_value());  // not stale under a 10 min limit
    CHECK(winners_of_race(path, dir / "log", opts("inst-a", 60s)) == 1);
    auto leftovers = spoold::test::list_dir(dir.path());
    for (auto& n : leftovers) CHECK(n.find(".stale.") == std::string::npos);
  }
}

namespace {

bool wait_until_exists(const std::string& path) {
  for (int i = 0; i < 500 && !path_exists(path); ++i) std::this_thread::sleep_for(10ms);
  return path_exists(path);
}

}  // namespace

TEST_CASE("a lock whose pid now belongs to another process is broken at once", "[lock]") {
  TempDir dir;
  std::string path = dir / "REUSED.lock";
  // Our own pid, but a start time that is not ours: a process before us had this pid, and died.
  uint64_t mine = lock_owner_self("inst-a").start_time;
  REQUIRE(mine > 1);
  write_file(path, lock_line(::getpid(), mine - 1));
  auto taken = acquire(path, opts());
  REQUIRE(taken.has_value());
  CHECK(read_lock_owner(path)->start_time == mine);
  REQUIRE(taken->release().ok());
  // A live child's lock, recorded by the lock code itself, is not broken; with its start time
  // changed it is (the pid would then name another process than the one that locked).
  std::string real = dir / "CHILD.lock";
  Gate gate;
  pid_t child = ::fork();
  if (child == 0) {
    auto r = Lock::try_acquire(real, opts());
    if (!r.ok() || !r->has_value()) ::_exit(1);
    gate.wait_in_child();
    ::_exit(0);  // without releasing
  }
  REQUIRE(wait_until_exists(real));
  CHECK_FALSE(acquire(real, opts()).has_value());
  auto owner = read_lock_owner(real);
  REQUIRE(owner.ok());
  CHECK(owner->pid == child);
  write_file(path, lock_line(child, owner->start_time));
  CHECK_FALSE(acquire(path, opts()).has_value());
  write_file(path, lock_line(child, owner->start_time + 7));
  CHECK(acquire(path, opts()).has_value());
  gate.open_gate();
  ::waitpid(child, nullptr, 0);
}

namespace {

struct Row {
  const char* what;
  LockOwner lock;
  PidProbe probe;
  bool dead;
  bool probed;  // the pid means something to the judge, so the kernel is asked about it
};

LockOwner owner(std::string instance, long pid, std::string boot, std::string pidns, std::string timens,
                uint64_t start) {
  LockOwner o;
  o.instance = std::move(instance);
  o.pid = pid;
  o.boot_id = std::move(boot);
  o.pidns = std::move(pidns);
  o.timens = std::move(timens);
  o.start_time = start;
  return o;
}

}  // namespace

TEST_CASE("owner_provably_dead: only a pid in our namespace proves anything", "[lock][rule]") {
  const LockOwner me = owner("inst-a", 10, "BOOT", "4:100", "4:200", 5000);
  const PidProbe gone{false, 0}, alive_same{true, 777}, alive_other{true, 778}, alive_unknown{true, 0};
  const std::vector<Row> rows = {
      {"same namespace, pid gone", owner("inst-a", 42, "BOOT", "4:100", "4:200", 777), gone, true, true},
      {"same namespace, pid gone, start unknown", owner("inst-a", 42, "BOOT", "4:100", "", 0), gone, true,
       true},
      {"same namespace, alive, same start", owner("inst-a", 42, "BOOT", "4:100", "4:200", 777), alive_same,
       false, true},
      {"same namespace, alive, other start: pid reused", owner("inst-a", 42, "BOOT", "4:100", "4:200", 777),
       alive_other, true, true},
      {"same namespace, alive, lock has no start", owner("inst-a", 42, "BOOT", "4:100", "4:200", 0),
       alive_other, false, true},
      {"same namespace, alive, no /proc to read a start", owner("inst-a", 42, "BOOT", "4:100", "4:200", 777),
       alive_unknown, false, true},
      {"same PID but other time namespace: starts not comparable",
       owner("inst-a", 42, "BOOT", "4:100", "4:201", 777), alive_other, false, true},
      {"another PID namespace, pid gone here", owner("inst-a", 42, "BOOT", "4:101", "4:200", 777), gone,
       false, false},
      {"older lock without a namespace, pid gone", owner("inst-a", 42, "BOOT", "", "", 0), gone, false,
       false},
      {"another instance", owner("inst-b", 42, "BOOT", "4:100", "4:200", 777), gone, false, false},
      {"another boot", owner("inst-a", 42, "OTHER", "4:100", "4:200", 777), gone, false, false},
      {"no pid", owner("inst-a", 0, "BOOT", "4:100", "4:200", 777), gone, false, false},
      {"our own pid and start: alive", owner("inst-a", 10, "BOOT", "4:100", "4:200", 5000),
       PidProbe{true, 5000}, false, true},
  };
  for (const auto& row : rows) {
    INFO(row.what);
    bool asked = false;
    bool dead = owner_provably_dead(row.lock, me, [&](long pid) {
      asked = true;
      CHECK(pid == row.lock.pid);
      return row.probe;
    });
    CHECK(dead == row.dead);
    CHECK(asked == row.probed);
  }
  // A judge that does not know its own namespace proves nothing, even against a lock without one.
  LockOwner blind = me;
  blind.pidns.clear();
  CHECK_FALSE(owner_provably_dead(owner("inst-a", 42, "BOOT", "", "", 0), blind, [](long) {
    return PidProbe{false, 0};
  }));
  CHECK_FALSE(owner_provably_dead(owner("inst-a", 42, "BOOT", "4:100", "", 0), blind, [](long) {
    return PidProbe{false, 0};
  }));
}

TEST_CASE("lock lines: written with the namespace, older ones still read", "[lock][rule]") {
  LockOwner o = owner("inst-a", 42, "b00t-1d", "4:100", "4:200", 777);
  o.time = 1700000000;
  o.token = "2a.0.00ff";
  std::string line = format_lock_owner(o);
  CHECK(line == "inst-a 42 b00t-1d,pidns=4:100,timens=4:200,start=777 1700000000 2a.0.00ff\n");
  auto back = parse_lock_owner(line);
  REQUIRE(back.has_value());
  CHECK(back->instance == "inst-a");
  CHECK(back->pid == 42);
  CHECK(back->boot_id == "b00t-1d");
  CHECK(back->pidns == "4:100");
  CHECK(back->timens == "4:200");
  CHECK(back->start_time == 777);
  CHECK(back->time == 1700000000);
  CHECK(back->token == "2a.0.00ff");
  // Unknown values are "-"; the line keeps five fields, so an older spoold still parses it — and
  // compares its third field with its own boot id: "another boot", judged by age only.
  o.pidns.clear();
  o.timens.clear();
  o.start_time = 0;
  line = format_lock_owner(o);
  CHECK(line == "inst-a 42 b00t-1d,pidns=-,timens=-,start=- 1700000000 2a.0.00ff\n");
  back = parse_lock_owner(line);
  REQUIRE(back.has_value());
  CHECK(back->pidns.empty());
  CHECK(back->timens.empty());
  CHECK(back->start_time == 0);
  // An older spoold's line (with or without a token): no namespace, so its pid proves nothing.
  for (std::string old : {"inst-a 42 b00t-1d 1700000000 2a.0\n", "inst-a 42 b00t-1d 1700000000\n"}) {
    INFO(old);
    back = parse_lock_owner(old);
    REQUIRE(back.has_value());
    CHECK(back->boot_id == "b00t-1d");
    CHECK(back->pidns.empty());
    CHECK(back->start_time == 0);
  }
  // Keys a later version may add are skipped.
  back = parse_lock_owner("inst-a 42 b00t-1d,pidns=4:100,cgroup=x,start=9 1 t\n");
  REQUIRE(back.has_value());
  CHECK(back->pidns == "4:100");
  CHECK(back->start_time == 9);
  CHECK_FALSE(parse_lock_owner("inst-a notapid b00t 1 t\n").has_value());
}
