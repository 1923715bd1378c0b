// daemon/notice.h — a problem that comes back on every scan (a full disk, an unwritable spool
// directory) is logged when it starts, then at most once per interval with how often it recurred,
// and once when it ends. Rule: a persistent failure stays visible without flooding the log.
// Loop thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace spoold::daemon {

class RepeatedProblem {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RepeatedProblem(std::string what, Clock::duration every = std::chrono::minutes(1))
      : what_(std::move(what)), every_(every) {}

  // The problem happened (again). `waiting` says what it holds back ("24 drops wait in incoming/").
  void failed(std::string_view error, std::string_view waiting, Clock::time_point now = Clock::now());
  // The operation worked: ends the problem (one line) if there was one.
  void ok();
  bool active() const { return active_; }
  std::uint64_t repeats() const { return repeats_; }

 private:
  std::string what_;
  Clock::duration every_;
  bool active_ = false;
  Clock::time_point started_{}, last_logged_{};
  std::uint64_t repeats_ = 0;  // failures not logged since the last line
  std::uint64_t total_ = 0;
};

// True for errors that hit every file of the spool alike (no space, quota, read-only, out of
// descriptors or memory, I/O error): a pass stops at the first one instead of failing each entry.
bool spool_wide_error(int err);

}  // namespace spoold::daemon
