// daemon/usage.cpp — counting, saving and logging usage (see usage.h).
#include "daemon/usage.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "common/clock.h"
#include "common/unique_fd.h"
#include "daemon/log.h"

namespace spoold::daemon {

namespace {

// Appends `line` in one write(2) with O_APPEND, so lines of two daemons logging to one file do
// not interleave within a line.
Result<void> append_line(const std::string& path, const std::string& line) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640));
  if (!fd.valid()) return make_error(fmt::format("open {}: {}", path, std::strerror(errno)), errno);
  ssize_t n = 0;
  do {
    n = ::write(fd.get(), line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return make_error(fmt::format("write {}: {}", path, std::strerror(errno)), errno);
  if (static_cast<size_t>(n) != line.size()) return make_error(fmt::format("write {}: short write", path));
  return {};
}

std::uint64_t ms(config::Duration d) {
  return static_cast<std::uint64_t>(d.count());
}

}  // namespace

struct UsageKeeper::Write {
  std::string spool_dir;
  std::optional<spool::UsageFile> save;
  std::string log_file, line;
  spool::Usage totals;  // of this write, for saved_/logged_ once it succeeded
  std::int64_t now = 0;
  std::string save_error, line_error;
};

UsageKeeper::UsageKeeper(uv_loop_t* loop, std::string spool_dir, std::string instance)
    : loop_(loop), spool_dir_(std::move(spool_dir)), instance_(std::move(instance)) {
  save_timer_ = std::make_unique<uv::Timer>(loop_);
  log_timer_ = std::make_unique<uv::Timer>(loop_);
}

UsageKeeper::~UsageKeeper() {
  *alive_ = false;
}

Result<void> UsageKeeper::load(std::int64_t now) {
  if (auto r = spool::make_usage_dir(spool_dir_); !r) return r;
  auto loaded = spool::load_usage_file(spool_dir_, instance_, now);
  if (!loaded) return loaded.error();
  if (!loaded->problem.empty())
    log::warning("usage totals start from zero: {} (the file was moved to {})", loaded->problem,
                 loaded->moved_to);
  on_disk_ = loaded->file.has_value();
  if (loaded->file) {
    base_ = std::move(*loaded->file);
  } else {
    base_ = spool::UsageFile{instance_, now, now, {}};
  }
  saved_ = logged_ = base_.totals;
  logged_at_ = now;
  return {};
}

void UsageKeeper::configure(const config::UsageLog& cfg) {
  bool line_changed = cfg.file != cfg_.file || cfg.interval != cfg_.interval;
  cfg_ = cfg;
  if (flushing_) return;
  save_timer_->start(ms(cfg_.save_interval), ms(cfg_.save_interval), [this] { tick(true, false); });
  if (cfg_.file.empty()) {
    log_timer_->stop();
  } else if (line_changed) {
    log_timer_->start(ms(cfg_.interval), ms(cfg_.interval), [this] { tick(false, true); });
  }
}

void UsageKeeper::count(spool::UsageKind kind, std::uint64_t recipients, std::uint64_t bytes) {
  spool::Tally& t = run_[kind];
  t.messages += 1;
  t.recipients += recipients;
  t.bytes += bytes;
}

spool::UsageFile UsageKeeper::live(std::int64_t now) const {
  spool::UsageFile f = base_;
  f.totals += run_;
  f.updated = now;
  return f;
}

void UsageKeeper::flush(std::function<void()> done) {
  flushing_ = true;
  flushed_ = std::move(done);
  save_timer_.reset();
  log_timer_.reset();
  if (!writing_)
    tick(true, !cfg_.file.empty());
  else
    want_save_ = true, want_line_ = !cfg_.file.empty();
}

// A timer fired (or the stop came): one job with what is due. A line is written every interval,
// also one saying nothing happened; the save only when the totals changed.
void UsageKeeper::tick(bool save, bool line) {
  if (writing_) {
    want_save_ = want_save_ || save;
    want_line_ = want_line_ || line;
    return;
  }
  const std::int64_t now = unix_now();
  auto w = std::make_shared<Write>();
  w->spool_dir = spool_dir_;
  w->now = now;
  spool::UsageFile f = live(now);
  w->totals = f.totals;
  if (save && (f.totals != saved_ || !on_disk_)) w->save = f;
  if (line && !cfg_.file.empty() && !(flushing_ && f.totals == logged_)) {
    w->log_file = cfg_.file;
    w->line = spool::format_usage_line(now, instance_, now - logged_at_,
                                       spool::usage_since(f.totals, logged_), f.totals);
  }
  if (!w->save && w->line.empty()) {
    if (flushing_ && flushed_) std::exchange(flushed_, nullptr)();
    return;
  }
  run(w);
}

void UsageKeeper::run(const std::shared_ptr<Write>& w) {
  writing_ = true;
  auto alive = alive_;
  int rc = uv::run_in_pool(
      loop_,
      [w] {
        if (w->save)
          if (auto r = spool::write_usage_file(w->spool_dir, *w->save); !r) w->save_error = r.error().message;
        if (!w->line.empty())
          if (auto r = append_line(w->log_file, w->line); !r) w->line_error = r.error().message;
      },
      [this, w, alive] {
        if (!*alive) return;
        writing_ = false;
        // A failed save is tried again at the next tick (the totals still differ from saved_).
        if (w->save && w->save_error.empty()) saved_ = w->totals, on_disk_ = true;
        if (!w->save_error.empty()) log::warning("usage totals not saved: {}", w->save_error);
        if (!w->line.empty()) {
          // The interval's counts go into the next line when this one could not be written.
          if (w->line_error.empty())
            logged_ = w->totals, logged_at_ = w->now;
          else
            log::warning("usage_log: {}", w->line_error);
        }
        bool save = std::exchange(want_save_, false), line = std::exchange(want_line_, false);
        if (save || line) return tick(save, line);
        if (flushing_ && flushed_) std::exchange(flushed_, nullptr)();
      });
  if (rc != 0) {
    writing_ = false;
    log::warning("usage totals not saved: {}", uv_strerror(rc));
    if (flushing_ && flushed_) std::exchange(flushed_, nullptr)();
  }
}

}  // namespace spoold::daemon
