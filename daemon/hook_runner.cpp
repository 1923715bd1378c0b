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

#include "common/unique_fd.h"
#include "daemon/event_file.h"
#include "daemon/log.h"
#include "spool/atomic_write.h"
#include "spool/fs_util.h"

namespace spoold::daemon {

namespace {

constexpr std::uint64_t kFirstRetryMs = 10'000;          // then doubling
constexpr std::uint64_t kLastRetryMs = 3'600'000;        // at most
constexpr std::uint64_t kStopKillMs = 2'000;             // SIGTERM at stop, then SIGKILL
constexpr std::uint64_t kStopGiveUpMs = 3'000;           // and then no more waiting
constexpr std::size_t kMaxEventFile = 64 * 1024 * 1024;  // a scan reads no more of one file

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

Result<std::string> read_whole(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return make_error(fmt::format("{}: {}", path, std::strerror(errno)), errno);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(fmt::format("{}: {}", path, std::strerror(errno)), errno);
    if (n == 0 || out.size() >= kMaxEventFile) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace

namespace {

// What the log calls an event: its id (an older daemon's file: the file's name).
std::string event_id(const EventRef& ref) {
  return ref.offset == events::kNoOffset ? ref.file : fmt::format("{}#{}", ref.file, ref.index);
}

}  // namespace

std::string event_tag(const std::string& instance) {
  std::string t;
  for (unsigned char c : instance) t += std::isalnum(c) ? static_cast<char>(c) : '_';
  return t.empty() ? "spoold" : t;
}

Result<std::vector<EventRef>> write_event_file(const std::string& spool_dir, const std::string& file,
                                               std::vector<control::Json>& records) {
  const std::string dir = spool_dir + "/events";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return make_error(fmt::format("{}: {}", dir, std::strerror(errno)), errno);
  std::vector<std::string> lines;
  lines.reserve(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    records[i].set("id", fmt::format("{}#{}", file, i));
    lines.push_back(records[i].dump());
  }
  events::Built built = events::build(lines);
  auto tmp = spool::TempFile::create(spool_dir + "/tmp");
  if (!tmp) return tmp.error();
  if (auto w = tmp->write(built.bytes); !w) return w.error();
  if (auto w = tmp->sync(); !w) return w.error();
  if (auto w = tmp->place(dir + "/" + file); !w) return w.error();
  if (auto f = spool::fsync_dir(dir); !f) return f.error();
  std::vector<EventRef> refs;
  refs.reserve(lines.size());
  for (std::size_t i = 0; i < lines.size(); ++i)
    refs.push_back({file, i, built.offsets[i], std::move(lines[i]) + "\n"});
  return refs;
}

void withdraw_events(const std::string& spool_dir, const std::vector<EventRef>& refs) {
  std::string open_path;
  UniqueFd fd;
  for (const auto& r : refs) {
    if (r.offset == events::kNoOffset) continue;
    std::string path = spool_dir + "/events/" + r.file;
    if (path != open_path) {
      fd.reset(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      open_path = std::move(path);
    }
    if (fd.valid()) (void)!::pwrite(fd.get(), &events::kWithdrawn, 1, static_cast<off_t>(r.offset));
  }
}

// ---- EventWriter

EventWriter::EventWriter(uv_loop_t* loop, std::string spool_dir)
    : loop_(loop), spool_dir_(std::move(spool_dir)), timer_(loop) {}

EventWriter::~EventWriter() {
  *alive_ = false;
}

void EventWriter::add(const std::string& tag, std::vector<control::Json> records,
                      std::function<void(WrittenEvents)> done) {
  pending_[tag].push_back({std::move(records), std::move(done)});
  if (!writing_ && !timer_.active()) timer_.start(0, 0, [this] { flush(); });  // next loop iteration
}

void EventWriter::flush() {
  if (writing_ || pending_.empty()) return;
  auto node = pending_.extract(pending_.begin());
  auto items = std::make_shared<std::vector<Item>>(std::move(node.mapped()));
  // Named here, on the loop, so that names sort in the order the outcomes finished. The counter
  // is the process's, as it was per file before: daemons in one process do not collide.
  static std::atomic<std::uint64_t> counter{0};
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::string file = fmt::format("{:013d}-{}-{:012x}.{}", ms, ::getpid(), counter++, node.key());
  auto result = std::make_shared<Result<std::vector<EventRef>>>(std::vector<EventRef>{});
  auto all = std::make_shared<std::vector<control::Json>>();
  for (auto& it : *items)
    for (auto& r : it.records) all->push_back(std::move(r));
  writing_ = true;
  int rc = uv::run_in_pool(
      loop_, [dir = spool_dir_, file, all, result] { *result = write_event_file(dir, file, *all); },
      [this, alive = alive_, items, all, result] {
        if (!*alive) return;
        writing_ = false;
        std::size_t next = 0;
        const std::size_t total = result->ok() ? (*result)->size() : 0;
        for (auto& it : *items) {
          WrittenEvents w;
          w.file_records = total;
          for (std::size_t i = 0; i < it.records.size(); ++i, ++next) {
            if (result->ok())
              w.refs.push_back(std::move((**result)[next]));
            else
              w.lost.push_back(std::move((*all)[next]));
          }
          if (!result->ok()) w.error = result->error().message;
          it.done(std::move(w));
        }
        flush();
      });
  if (rc != 0) {
    writing_ = false;
    std::size_t next = 0;
    for (auto& it : *items) {
      WrittenEvents w;
      w.error = fmt::format("cannot queue the event write: {}", uv_strerror(rc));
      for (std::size_t i = 0; i < it.records.size(); ++i) w.lost.push_back(std::move((*all)[next++]));
      it.done(std::move(w));
    }
  }
}

// ---- HookRunner

HookRunner::HookRunner(uv_loop_t* loop, std::string spool_dir, std::string tag)
    : loop_(loop),
      spool_dir_(std::move(spool_dir)),
      dir_(spool_dir_ + "/events"),
      tag_(std::move(tag)),
      retry_timer_(loop),
      stop_timer_(loop) {}

HookRunner::~HookRunner() {
  *alive_ = false;
  spawner_.reset();  // kills what still runs, before the members its reports would reach go
}

void HookRunner::configure(const config::OutcomeHook& hook) {
  hook_ = hook;
  pump();
}

void HookRunner::start() {
  rescan_ = true;
  pump();
}

void HookRunner::expect(const std::string& file, std::size_t records) {
  if (records == 0 || files_.count(file)) return;
  File f;
  f.fate.assign(records, Fate::expected);
  f.unfinished = records;
  files_.emplace(file, std::move(f));
}

void HookRunner::queue(EventRef ref) {
  auto it = files_.find(ref.file);
  if (it == files_.end() || ref.index >= it->second.fate.size()) return;
  Fate& fate = it->second.fate[ref.index];
  if (fate == Fate::finished || fate == Fate::queued) return;
  if (waiting() >= kMaxInMemory) {
    fate = Fate::unknown;  // on disk; a later scan finds it
    rescan_ = true;
    return;
  }
  fate = Fate::queued;
  ready_.push_back({std::move(ref), 0});
}

void HookRunner::added(const std::vector<EventRef>& refs) {
  for (const auto& r : refs) queue(r);
  pump();
}

void HookRunner::withdrawn(const std::vector<EventRef>& refs) {
  for (const auto& r : refs) finish_record(r.file, r.index);
}

// Once every record of a file ran or was withdrawn, the file goes (its records are marked so on
// disk already: a scan before the unlink lands runs none of them again).
void HookRunner::finish_record(const std::string& file, std::size_t index) {
  auto it = files_.find(file);
  if (it == files_.end() || index >= it->second.fate.size()) return;
  File& f = it->second;
  if (f.fate[index] == Fate::finished) return;
  f.fate[index] = Fate::finished;
  if (--f.unfinished > 0) return;
  files_.erase(it);
  std::string path = dir_ + "/" + file;
  if (spawner_) {
    spawner_->unlink(std::move(path));
  } else {
    (void)uv::run_in_pool(
        loop_, [path = std::move(path)] { ::unlink(path.c_str()); }, nullptr);
  }
}

void HookRunner::pump() {
  if (stopping_ || !hook_.enabled()) return;
  // While runs cannot start, one try at a time: the rest waits rather than failing in a burst.
  const std::size_t most = failing_ ? 1 : static_cast<std::size_t>(hook_.max_running);
  while (runs_.size() < most && !ready_.empty()) {
    Pending p = std::move(ready_.front());
    ready_.pop_front();
    spawn(std::move(p));
  }
  // Scanned again once room is made, also while some event waits for its retry.
  if (rescan_ && !scanning_ && waiting() < kMaxInMemory / 2) scan();
}

// A run that cannot start (the program gone, no file descriptors): the event waits like a failed
// run; said once until a run starts again.
void HookRunner::cannot_run(Pending p, const std::string& why) {
  if (!failing_)
    log::warning("hook on_outcome: cannot run {}: {}; tried again later", hook_.argv.front(), why);
  failing_ = true;
  ++p.tries;
  later_.emplace(uv_now(loop_) + retry_after(p.tries), std::move(p));
}

// What earlier runs left, oldest first (the names sort by time), whole files, until about
// kMaxInMemory records to run are found.
void HookRunner::scan() {
  scanning_ = true;
  rescan_ = false;
  struct Found {
    std::string name;
    events::Parsed parsed;
    std::string error;
  };
  auto found = std::make_shared<std::vector<Found>>();
  auto more = std::make_shared<bool>(false);
  // Files whose every record is accounted for in memory need not be read.
  auto skip = std::make_shared<std::set<std::string>>();
  for (const auto& [name, f] : files_)
    if (std::find(f.fate.begin(), f.fate.end(), Fate::unknown) == f.fate.end()) skip->insert(name);
  int rc = uv::run_in_pool(
      loop_,
      [dir = dir_, tag = tag_, found, more, skip] {
        auto rd = spool::DirReader::open(dir);
        if (!rd) return;
        std::vector<std::string> names;
        while (auto name = rd->next())
          if (owned(*name, tag) && !skip->count(*name)) names.push_back(*name);
        std::sort(names.begin(), names.end());
        std::size_t to_run = 0;
        for (auto& n : names) {
          if (to_run >= kMaxInMemory) {
            *more = true;
            break;
          }
          Found f;
          std::string path = dir;
          path += '/';
          path += n;
          auto text = read_whole(path);
          if (!text && text.error().code == ENOENT) continue;  // run and removed meanwhile
          if (text)
            f.parsed = events::parse(*text);
          else
            f.error = text.error().message;
          for (const auto& l : f.parsed.lines) to_run += l.state == events::kToRun ? 1 : 0;
          f.name = std::move(n);
          found->push_back(std::move(f));
        }
      },
      [this, alive = alive_, found, more] {
        if (!*alive) return;
        scanning_ = false;
        for (auto& f : *found) {
          if (!f.error.empty()) {
            log::warning("hook on_outcome: cannot read event file: {}", f.error);
            continue;
          }
          if (f.parsed.bad > 0)
            log::warning("hook on_outcome: events/{}: {} of its {} lines are not event records; skipped",
                         f.name, f.parsed.bad, f.parsed.total);
          auto [it, fresh] = files_.try_emplace(f.name);
          if (fresh) {
            it->second.fate.assign(f.parsed.total, Fate::unknown);
            it->second.unfinished = f.parsed.total;
          } else if (it->second.fate.size() != f.parsed.total) {
            continue;  // not the file this daemon wrote under that name: left alone
          }
          std::vector<bool> good(f.parsed.total, false);
          std::vector<std::size_t> finished;
          for (auto& l : f.parsed.lines) {
            good[l.index] = true;
            if (it->second.fate[l.index] != Fate::unknown) continue;
            if (l.state == events::kToRun)
              queue({f.name, l.index, l.offset, std::move(l.record)});
            else
              finished.push_back(l.index);
          }
          for (std::size_t i = 0; i < good.size(); ++i)
            if (!good[i] && it->second.fate[i] == Fate::unknown) finished.push_back(i);
          if (f.parsed.total == 0) {  // nothing in it (never so written): gone
            files_.erase(it);
            (void)uv::run_in_pool(
                loop_, [path = dir_ + "/" + f.name] { ::unlink(path.c_str()); }, nullptr);
            continue;
          }
          for (std::size_t i : finished) finish_record(f.name, i);
        }
        rescan_ = rescan_ || *more;
        pump();
      });
  if (rc != 0) scanning_ = false;
}

void HookRunner::spawn(Pending p) {
  if (!spawner_) {
    spawner_ = std::make_unique<HookSpawner>(
        loop_, [this](std::vector<HookSpawner::Report> r) { reported(std::move(r)); });
    if (!spawner_->nice_error().empty())
      log::warning("hook on_outcome: {}; programs run at the daemon's priority", spawner_->nice_error());
  }
  const std::uint64_t key = next_run_++;
  HookSpawner::Request r;
  r.key = key;
  r.argv = hook_.argv;
  r.input = p.ref.record;
  r.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(hook_.timeout);
  if (p.ref.offset != events::kNoOffset) {
    r.mark_path = dir_ + "/" + p.ref.file;
    r.mark_offset = p.ref.offset;
  }
  runs_.emplace(key, Run{std::move(p), false});
  spawner_->run(std::move(r));
}

void HookRunner::reported(std::vector<HookSpawner::Report> reports) {
  for (auto& rep : reports) {
    auto it = runs_.find(rep.key);
    if (it == runs_.end()) continue;
    Run run = std::move(it->second);
    runs_.erase(it);
    if (!rep.error.empty()) {
      cannot_run(std::move(run.p), rep.error);
      continue;
    }
    failing_ = false;
    const bool ok = rep.status == 0 && rep.signal == 0 && !rep.timed_out;
    const std::string id = event_id(run.p.ref);
    if (ok) {
      finish_record(run.p.ref.file, run.p.ref.index);
    } else if (run.stopped) {
      log::info("hook on_outcome: event {} stopped with the daemon; it runs at the next start", id);
    } else {
      std::string what = rep.timed_out     ? fmt::format("timed out after {} ms", hook_.timeout.count())
                         : rep.signal != 0 ? fmt::format("killed by signal {}", rep.signal)
                                           : fmt::format("exit status {}", rep.status);
      std::string detail = first_line(rep.err_text);
      const std::uint64_t after = retry_after(run.p.tries + 1);
      log::warning("hook on_outcome: event {}: {}{}; tried again in {} s", id, what,
                   detail.empty() ? "" : ": " + detail, after / 1000);
      ++run.p.tries;
      later_.emplace(uv_now(loop_) + after, std::move(run.p));
    }
  }
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
  if (!runs_.empty() && spawner_) {
    for (auto& [key, r] : runs_) r.stopped = true;
    spawner_->signal_all(SIGTERM);
    stop_timer_.start(kStopKillMs, 0, [this] {
      spawner_->signal_all(SIGKILL);
      // A program that does not go even then (stuck in the kernel) does not hold the stop for ever.
      stop_timer_.start(kStopGiveUpMs, 0, [this] {
        log::warning("hook on_outcome: {} programs did not exit after SIGKILL; not waiting for them",
                     runs_.size());
        runs_.clear();
        maybe_stopped();
      });
    });
  }
  maybe_stopped();
}

void HookRunner::maybe_stopped() {
  if (!stopping_ || !runs_.empty() || !on_stopped_) return;
  stop_timer_.stop();
  spawner_.reset();  // its thread and its handle on the loop go: the loop can end
  auto done = std::move(on_stopped_);
  on_stopped_ = nullptr;
  done();
}

}  // namespace spoold::daemon
