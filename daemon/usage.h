// daemon/usage.h — the daemon's usage counters (spool/usage.h): what this run counted on top of
// the totals loaded from usage/<instance> at start. The totals are saved back to the spool every
// usage_log.save_interval when they changed and at a clean stop, so a kill -9 loses at most the
// counting since the last save; usage_log.file gets one line every usage_log.interval (and one
// for the part of an interval a clean stop cuts off).
// Rule: counting is loop-thread arithmetic; every write (the atomic save with its fsyncs, the
// O_APPEND line) runs on the thread pool, at most one job at a time, and its result comes back
// to the loop. Only load() touches the disk from the calling thread: it runs in start(), before
// the loop does, beside spool recovery.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/uv_handle.h"
#include "config/config.h"
#include "spool/usage.h"

namespace spoold::daemon {

class UsageKeeper {
 public:
  UsageKeeper(uv_loop_t* loop, std::string spool_dir, std::string instance);
  ~UsageKeeper();
  UsageKeeper(const UsageKeeper&) = delete;
  UsageKeeper& operator=(const UsageKeeper&) = delete;

  // Creates usage/ and reads this instance's totals; a malformed file is moved to bad/ (logged)
  // and counting starts from zero. An error only when the file could be neither read nor moved.
  Result<void> load(std::int64_t now);
  // (Re)arms the save and log timers.
  void configure(const config::UsageLog& cfg);

  // One message (with `recipients` of its recipients and `bytes` of message) in `kind`.
  void count(spool::UsageKind kind, std::uint64_t recipients, std::uint64_t bytes);

  const spool::Usage& since_start() const { return run_; }
  // This instance's totals as they are now (the loaded ones plus this run's).
  spool::UsageFile live(std::int64_t now) const;

  // The last save (and log line) of a clean stop: stops the timers, writes what changed, then
  // done() on the loop. Writes that are running first finish.
  void flush(std::function<void()> done);
  // A write runs, or flush() has not called back yet.
  bool busy() const { return writing_ || flushed_ != nullptr; }

 private:
  struct Write;  // what one pool job writes
  void tick(bool save, bool line);
  void run(const std::shared_ptr<Write>& w);

  uv_loop_t* loop_;
  std::string spool_dir_, instance_;
  config::UsageLog cfg_;
  spool::UsageFile base_;  // as loaded: the totals before this run
  spool::Usage run_;       // counted by this run
  spool::Usage saved_;     // the totals of the last save that succeeded
  spool::Usage logged_;    // the totals at the last log line
  std::int64_t logged_at_ = 0;
  bool writing_ = false, flushing_ = false;
  bool want_save_ = false, want_line_ = false;  // a timer fired while a job ran
  // usage/<instance> exists: a new instance writes its file at the first save even with nothing
  // counted, so status lists every instance that ran on the spool.
  bool on_disk_ = false;
  std::function<void()> flushed_;
  std::unique_ptr<uv::Timer> save_timer_, log_timer_;
  // A job that finishes after this object is gone (the daemon tearing down) reaches nobody.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spoold::daemon
