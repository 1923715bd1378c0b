// daemon/hook_runner.cpp — see hook_runner.h.
#include "daemon/hook_runner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "daemon/log.h"
#include "spool/atomic_write.h"
#include "spool/fs_util.h"

namespace spoold::daemon {

namespace {

constexpr std::size_t kMaxStderr = 1024;           // of a failed run, for its log line
constexpr std::uint64_t kFirstRetryMs = 10'000;    // then doubling
constexpr std::uint64_t kLastRetryMs = 3'600'000;  // at most
constexpr std::uint64_t kStopKillMs = 2'000;       // SIGTERM at stop, then SIGKILL
constexpr std::uint64_t kStopGiveUpMs = 3'000;     // and then no more waiting

std::uint64_t retry_after(int tries) {
  std::uint64_t ms = kFirstRetryMs;
  for (int i = 1; i < tries && ms < kLastRetryMs; ++i) ms *= 2;
  return std::min(ms, kLastRetryMs);
}

bool owned(const std::string& name, const std::string& tag) {
  return name.size() > tag.size() + 1 && name.compare(name.size() - tag.size(), tag.size(), tag) == 0 &&
         name[name.size() - tag.size() - 1] == '.';
}

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  return log::sanitize(line);
}

}  // namespace

std::string event_tag(const std::string& instance) {
  std::string t;
  for (unsigned char c : instance) t += std::isalnum(c) ? static_cast<char>(c) : '_';
  return t.empty() ? "spoold" : t;
}

Result<std::vector<std::string>> write_events(const std::string& spool_dir, const std::string& tag,
                                              std::vector<control::Json> records) {
  static std::atomic<std::uint64_t> counter{0};
  const std::string dir = spool_dir + "/events";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return make_error(fmt::format("{}: {}", dir, std::strerror(errno)), errno);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::vector<std::string> names;
  for (auto& r : records) {
    std::string name = fmt::format("{:013d}-{}-{:012x}.{}", ms, ::getpid(), counter++, tag);
    r.set("id", name);
    auto tmp = spool::TempFile::create(spool_dir + "/tmp");
    if (!tmp) return tmp.error();
    if (auto w = tmp->write(r.dump() + "\n"); !w) return w.error();
    if (auto w = tmp->sync(); !w) return w.error();
    std::string target = dir;
    target += '/';
    target += name;
    if (auto w = tmp->place(target); !w) return w.error();
    names.push_back(std::move(name));
  }
  if (auto f = spool::fsync_dir(dir); !f) return f.error();
  return names;
}

struct HookRunner::Run {
  Pending p;
  uv::Process proc;
  uv::Timer timer;
  uv::Pipe err;
  std::string err_text;
  bool timed_out = false;
  bool stopped = false;  // killed because the daemon stops: not a failure of the program
  explicit Run(uv_loop_t* loop) : timer(loop), err(loop) {}
};

HookRunner::HookRunner(uv_loop_t* loop, std::string spool_dir, std::string tag)
    : loop_(loop),
      dir_(std::move(spool_dir) + "/events"),
      tag_(std::move(tag)),
      retry_timer_(loop),
      stop_timer_(loop) {}

HookRunner::~HookRunner() {
  *alive_ = false;
  for (auto& [key, r] : runs_) r->proc.kill_group(SIGKILL);
}

void HookRunner::configure(const config::OutcomeHook& hook) {
  hook_ = hook;
  pump();
}

void HookRunner::start() {
  rescan_ = true;
  pump();
}

void HookRunner::added(const std::vector<std::string>& names) {
  for (const auto& n : names) {
    if (waiting() >= kMaxInMemory) {
      rescan_ = true;  // on disk; a later scan finds it
      break;
    }
    ready_.push_back({n, 0});
  }
  pump();
}

void HookRunner::pump() {
  if (stopping_ || !hook_.enabled()) return;
  while (runs_.size() < static_cast<std::size_t>(hook_.max_running) && !ready_.empty()) {
    Pending p = std::move(ready_.front());
    ready_.pop_front();
    if (!spawn(std::move(p))) break;  // the program cannot be run now: the rest waits too
  }
  // Scanned again once room is made, also while some event waits for its retry.
  if (rescan_ && !scanning_ && waiting() < kMaxInMemory / 2) scan();
}

// A run that cannot start (the program gone, no file descriptors): the event waits like a failed
// run, and so does everything behind it; said once until a run starts again.
void HookRunner::cannot_run(Pending p, const std::string& why) {
  if (!failing_)
    log::warning("hook on_outcome: cannot run {}: {}; tried again later", hook_.argv.front(), why);
  failing_ = true;
  ++p.tries;
  later_.emplace(uv_now(loop_) + retry_after(p.tries), std::move(p));
  arm_retry();
}

// What earlier runs left, oldest first (the names sort by time), up to kMaxInMemory at a time.
void HookRunner::scan() {
  scanning_ = true;
  rescan_ = false;
  auto found = std::make_shared<std::vector<std::string>>();
  auto more = std::make_shared<bool>(false);
  std::string dir = dir_, tag = tag_;
  int rc = uv::run_in_pool(
      loop_,
      [dir, tag, found, more] {
        auto rd = spool::DirReader::open(dir);
        if (!rd) return;
        while (auto name = rd->next())
          if (owned(*name, tag)) found->push_back(*name);
        std::sort(found->begin(), found->end());
        if (found->size() > kMaxInMemory) {
          found->resize(kMaxInMemory);
          *more = true;
        }
      },
      [this, alive = alive_, found, more] {
        if (!*alive) return;
        scanning_ = false;
        std::set<std::string> known;
        for (const auto& p : ready_) known.insert(p.name);
        for (const auto& [due, p] : later_) known.insert(p.name);
        for (const auto& [key, r] : runs_) known.insert(r->p.name);
        known.insert(removing_.begin(), removing_.end());
        for (auto& n : *found)
          if (!known.count(n)) ready_.push_back({std::move(n), 0});
        rescan_ = rescan_ || *more;
        pump();
      });
  if (rc != 0) scanning_ = false;
}

bool HookRunner::spawn(Pending p) {
  const std::string path = dir_ + "/" + p.name;
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    if (errno == ENOENT) return true;  // gone: run and removed by an earlier run of ours
    cannot_run(std::move(p), fmt::format("{}: {}", path, std::strerror(errno)));
    return false;
  }
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(in);
    cannot_run(std::move(p), fmt::format("pipe: {}", std::strerror(errno)));
    return false;
  }
  const std::uint64_t key = next_run_++;
  auto run = std::make_unique<Run>(loop_);
  run->p = std::move(p);
  if (run->err.open(err[0]) != 0) ::close(err[0]);
  std::vector<char*> args;
  for (auto& a : hook_.argv) args.push_back(a.data());
  args.push_back(nullptr);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_INHERIT_FD;
  stdio[0].data.fd = in;
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = err[1];
  uv_process_options_t o{};
  o.file = hook_.argv.front().c_str();
  o.args = args.data();
  o.stdio_count = 3;
  o.stdio = stdio;
  o.flags = UV_PROCESS_DETACHED;  // a session of its own: its whole group is killed at the timeout
  int rc = run->proc.spawn(loop_, o, [this, key](std::int64_t status, int sig) {
    auto it = runs_.find(key);
    if (it == runs_.end()) return;
    Run& r = *it->second;
    const bool ok = status == 0 && sig == 0 && !r.timed_out;
    if (ok) {
      // Known until its file is gone, so a scan meanwhile does not run it again.
      std::string file = dir_ + "/" + r.p.name;
      removing_.insert(r.p.name);
      int rc = uv::run_in_pool(
          loop_, [file] { ::unlink(file.c_str()); },
          [this, alive = alive_, name = r.p.name] {
            if (*alive) removing_.erase(name);
          });
      if (rc != 0) removing_.erase(r.p.name);
    } else if (r.stopped) {
      log::info("hook on_outcome: event {} stopped with the daemon; it runs at the next start", r.p.name);
    } else {
      std::string what = r.timed_out ? fmt::format("timed out after {} ms", hook_.timeout.count())
                         : sig != 0  ? fmt::format("killed by signal {}", sig)
                                     : fmt::format("exit status {}", status);
      std::string detail = first_line(r.err_text);
      const std::uint64_t after = retry_after(r.p.tries + 1);
      log::warning("hook on_outcome: event {}: {}{}; tried again in {} s", r.p.name, what,
                   detail.empty() ? "" : ": " + detail, after / 1000);
      Pending again = std::move(r.p);
      ++again.tries;
      later_.emplace(uv_now(loop_) + after, std::move(again));
    }
    finished(key);
  });
  ::close(in);
  ::close(err[1]);
  if (rc != 0) {
    cannot_run(std::move(run->p), uv_strerror(rc));
    return false;
  }
  failing_ = false;
  Run* r = run.get();
  run->err.read_start(4096, [r](int status, std::string_view bytes) {
    if (status < 0) return r->err.read_stop();
    if (r->err_text.size() < kMaxStderr) r->err_text.append(bytes.substr(0, kMaxStderr - r->err_text.size()));
  });
  run->timer.start(static_cast<std::uint64_t>(hook_.timeout.count()), 0, [r] {
    r->timed_out = true;
    r->proc.kill_group(SIGKILL);
  });
  runs_.emplace(key, std::move(run));
  return true;
}

void HookRunner::finished(std::uint64_t key) {
  runs_.erase(key);
  arm_retry();
  pump();
  maybe_stopped();
}

void HookRunner::arm_retry() {
  if (later_.empty() || stopping_) return retry_timer_.stop();
  const std::uint64_t now = uv_now(loop_);
  const std::uint64_t due = later_.begin()->first;
  retry_timer_.start(due > now ? due - now : 0, 0, [this] {
    const std::uint64_t t = uv_now(loop_);
    while (!later_.empty() && later_.begin()->first <= t) {
      ready_.push_back(std::move(later_.begin()->second));
      later_.erase(later_.begin());
    }
    arm_retry();
    pump();
  });
}

void HookRunner::stop(std::function<void()> done) {
  stopping_ = true;
  on_stopped_ = std::move(done);
  retry_timer_.stop();
  for (auto& [key, r] : runs_) {
    r->stopped = true;
    r->proc.kill_group(SIGTERM);
    Run* run = r.get();
    run->timer.start(kStopKillMs, 0, [run] { run->proc.kill_group(SIGKILL); });
  }
  // A program that does not go even then (stuck in the kernel) does not hold the stop for ever.
  if (!runs_.empty())
    stop_timer_.start(kStopKillMs + kStopGiveUpMs, 0, [this] {
      log::warning("hook on_outcome: {} programs did not exit after SIGKILL; not waiting for them",
                   runs_.size());
      runs_.clear();
      maybe_stopped();
    });
  maybe_stopped();
}

void HookRunner::maybe_stopped() {
  if (!stopping_ || !runs_.empty() || !on_stopped_) return;
  stop_timer_.stop();
  auto done = std::move(on_stopped_);
  on_stopped_ = nullptr;
  done();
}

}  // namespace spoold::daemon
