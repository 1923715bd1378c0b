// daemon/hook_spawner.cpp — see hook_spawner.h.
#include "daemon/hook_spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

#include "daemon/event_file.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): posix_spawn's envp

namespace spoold::daemon {

namespace {

int open_pidfd(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

void wake(int eventfd) {
  const std::uint64_t one = 1;
  (void)!::write(eventfd, &one, sizeof one);  // a full counter still wakes the reader
}

void drain(int eventfd) {
  std::uint64_t n = 0;
  (void)!::read(eventfd, &n, sizeof n);
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string errno_text(const char* what) {
  return fmt::format("{}: {}", what, std::strerror(errno));
}

// posix_spawn's two argument objects, destroyed on every return.
struct FileActions {
  posix_spawn_file_actions_t fa{};
  FileActions() { ::posix_spawn_file_actions_init(&fa); }
  ~FileActions() { ::posix_spawn_file_actions_destroy(&fa); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
};
struct SpawnAttr {
  posix_spawnattr_t a{};
  SpawnAttr() { ::posix_spawnattr_init(&a); }
  ~SpawnAttr() { ::posix_spawnattr_destroy(&a); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
};

}  // namespace

struct HookSpawner::Child {
  std::uint64_t key = 0;
  pid_t pid = 0;
  UniqueFd pidfd;  // readable once the program has exited
  UniqueFd err;    // its stderr; reset at end of file
  std::string err_text;
  std::chrono::steady_clock::time_point deadline;
  bool timed_out = false;
  bool exited = false;
  std::string mark_path;
  std::size_t mark_offset = 0;

  // What the pipe holds now; the first kMaxStderr bytes are kept, the rest read and dropped so a
  // chatty program does not block on a full pipe.
  void read_err() {
    char buf[4096];
    while (err.valid()) {
      ssize_t n = ::read(err.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) return err.reset();
      const auto got = static_cast<std::size_t>(n);
      if (err_text.size() < kMaxStderr) err_text.append(buf, std::min(got, kMaxStderr - err_text.size()));
    }
  }
};

HookSpawner::HookSpawner(uv_loop_t* loop, std::function<void(std::vector<Report>)> on_reports)
    : on_reports_(std::move(on_reports)) {
  wake_thread_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  wake_loop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_thread_.valid() || !wake_loop_.valid()) {
    status_ = make_error(errno_text("eventfd"), errno);
    return;
  }
  loop_poll_ = uv::Poll(loop, wake_loop_.get());
  int rc = loop_poll_.start(UV_READABLE, [this](int, int) {
    drain(wake_loop_.get());
    std::vector<Report> got;
    {
      std::lock_guard<std::mutex> lock(mu_);
      got.swap(reports_);
    }
    // A copy: the reports may lead the owner to destroy this spawner (the stop is complete).
    auto fn = on_reports_;
    if (!got.empty()) fn(std::move(got));
  });
  if (rc != 0) {
    status_ = make_error(fmt::format("uv_poll: {}", uv_strerror(rc)));
    return;
  }
  try {
    thread_ = std::thread([this] { thread_main(); });
  } catch (const std::system_error& e) {
    status_ = make_error(fmt::format("thread: {}", e.what()));
    return;
  }
  // nice_error_ is written by the thread before it runs anything.
  std::unique_lock<std::mutex> lock(nice_mu_);
  nice_cv_.wait(lock, [this] { return nice_set_; });
}

HookSpawner::~HookSpawner() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  wake(wake_thread_.get());
  thread_.join();
}

void HookSpawner::post(Command c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    commands_.push_back(std::move(c));
  }
  wake(wake_thread_.get());
}

void HookSpawner::run(Request r) {
  if (!thread_.joinable()) {  // no thread: said as a run that cannot start
    Report rep;
    rep.key = r.key;
    rep.error = status_.ok() ? "no spawner thread" : status_.error().message;
    std::lock_guard<std::mutex> lock(mu_);
    reports_.push_back(std::move(rep));
    if (wake_loop_.valid()) wake(wake_loop_.get());
    return;
  }
  Command c;
  c.kind = Command::Kind::run;
  c.request = std::move(r);
  post(std::move(c));
}

void HookSpawner::signal_all(int sig) {
  Command c;
  c.kind = Command::Kind::signal;
  c.sig = sig;
  post(std::move(c));
}

void HookSpawner::unlink(std::string path) {
  Command c;
  c.kind = Command::Kind::unlink;
  c.path = std::move(path);
  post(std::move(c));
}

void HookSpawner::report(std::vector<Report> done) {
  if (done.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : done) reports_.push_back(std::move(r));
  }
  wake(wake_loop_.get());
}

void HookSpawner::start_child(Request r, std::vector<Child>& children, std::vector<Report>& done) {
  auto fail = [&](std::string why) {
    Report rep;
    rep.key = r.key;
    rep.error = std::move(why);
    done.push_back(std::move(rep));
  };
  if (r.argv.empty()) return fail("no program");
  UniqueFd in(::memfd_create("spoold-hook-input", MFD_CLOEXEC));
  if (!in.valid()) return fail(errno_text("memfd_create"));
  if (!write_all(in.get(), r.input) || ::lseek(in.get(), 0, SEEK_SET) != 0) return fail(errno_text("memfd"));
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail(errno_text("pipe"));
  UniqueFd err_read(p[0]), err_write(p[1]);
  // Only our end: the program's stderr stays a blocking pipe, as programs expect.
  if (::fcntl(err_read.get(), F_SETFL, O_NONBLOCK) != 0) return fail(errno_text("fcntl"));

  FileActions fa;
  ::posix_spawn_file_actions_adddup2(&fa.fa, in.get(), 0);
  ::posix_spawn_file_actions_addopen(&fa.fa, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_adddup2(&fa.fa, err_write.get(), 2);
  SpawnAttr at;
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  // What the daemon ignores (SIGPIPE) would stay ignored across exec.
  for (int s = 1; s < 32; ++s)
    if (s != SIGKILL && s != SIGSTOP) sigaddset(&defaults, s);
  ::posix_spawnattr_setsigmask(&at.a, &none);
  ::posix_spawnattr_setsigdefault(&at.a, &defaults);
  ::posix_spawnattr_setflags(&at.a, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  args.reserve(r.argv.size() + 1);
  for (auto& a : r.argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  if (int rc = ::posix_spawn(&pid, args[0], &fa.fa, &at.a, args.data(), environ); rc != 0)
    return fail(std::strerror(rc));
  err_write.reset();

  Child c;
  c.key = r.key;
  c.pid = pid;
  c.pidfd.reset(open_pidfd(pid));
  if (!c.pidfd.valid()) {  // it could not be watched: it must not run unwatched
    std::string why = errno_text("pidfd_open");
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return fail(std::move(why));
  }
  c.err = std::move(err_read);
  c.deadline = std::chrono::steady_clock::now() + r.timeout;
  c.mark_path = std::move(r.mark_path);
  c.mark_offset = r.mark_offset;
  children.push_back(std::move(c));
}

void HookSpawner::thread_main() {
  std::string nice_error;
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kNice) != 0)
    nice_error = errno_text("setpriority");
  // SCHED_IDLE on top: a waking delivery thread preempts such a task at once, and the kernel
  // places wake-ups on a core that runs only such tasks as if it were idle, which nice 19 alone
  // does not promise. Lowering one's own class needs no privilege.
  sched_param sp{};
  if (::sched_setscheduler(0, SCHED_IDLE, &sp) != 0)
    nice_error += (nice_error.empty() ? "" : "; ") + errno_text("sched_setscheduler(SCHED_IDLE)");
  {
    std::lock_guard<std::mutex> lock(nice_mu_);
    nice_error_ = std::move(nice_error);
    nice_set_ = true;
  }
  nice_cv_.notify_all();

  std::vector<Child> children;
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({wake_thread_.get(), POLLIN, 0});
    int timeout = -1;
    const auto now = std::chrono::steady_clock::now();
    for (const auto& c : children) {
      fds.push_back({c.pidfd.get(), POLLIN, 0});
      fds.push_back({c.err.valid() ? c.err.get() : -1, POLLIN, 0});
      if (!c.timed_out) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(c.deadline - now).count();
        ms = std::max<decltype(ms)>(ms, 0);
        if (timeout < 0 || ms < timeout) timeout = static_cast<int>(std::min<decltype(ms)>(ms, 3'600'000));
      }
    }
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      // Not expected with valid descriptors; a short pause instead of spinning.
      ::usleep(10'000);
    }

    std::vector<Report> done;
    const std::size_t watched = (fds.size() - 1) / 2;
    for (std::size_t i = 0; i < watched; ++i) {
      Child& c = children[i];
      if (fds[2 + 2 * i].revents != 0) c.read_err();
      if (fds[1 + 2 * i].revents == 0) continue;
      int st = 0;
      pid_t w = ::waitpid(c.pid, &st, WNOHANG);
      if (w == 0) continue;
      c.read_err();  // what it wrote before it exited (not waiting for a child that keeps it open)
      c.exited = true;
      Report rep;
      rep.key = c.key;
      rep.timed_out = c.timed_out;
      rep.err_text = std::move(c.err_text);
      if (w != c.pid)
        rep.status = -1;  // reaped by someone else: its status is unknown, so it did not succeed
      else if (WIFEXITED(st))
        rep.status = WEXITSTATUS(st);
      else if (WIFSIGNALED(st))
        rep.signal = WTERMSIG(st);
      if (rep.status == 0 && rep.signal == 0 && !rep.timed_out && !c.mark_path.empty()) {
        // Before the report, so that once the loop knows, the file knows too.
        UniqueFd f(::open(c.mark_path.c_str(), O_WRONLY | O_CLOEXEC));
        if (f.valid()) (void)!::pwrite(f.get(), &events::kRan, 1, static_cast<off_t>(c.mark_offset));
      }
      done.push_back(std::move(rep));
    }
    std::erase_if(children, [](const Child& c) { return c.exited; });
    const auto after = std::chrono::steady_clock::now();
    for (auto& c : children)
      if (!c.timed_out && after >= c.deadline) {
        c.timed_out = true;
        ::kill(-c.pid, SIGKILL);
      }

    drain(wake_thread_.get());
    std::vector<Command> commands;
    bool quit = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      commands.swap(commands_);
      quit = quit_;
    }
    if (quit) {
      for (const auto& c : children) ::kill(-c.pid, SIGKILL);
      return;
    }
    for (auto& cmd : commands) switch (cmd.kind) {
        case Command::Kind::run:
          start_child(std::move(cmd.request), children, done);
          break;
        case Command::Kind::signal:
          for (const auto& c : children) ::kill(-c.pid, cmd.sig);
          break;
        case Command::Kind::unlink:
          ::unlink(cmd.path.c_str());
          break;
      }
    report(std::move(done));
  }
}

}  // namespace spoold::daemon
