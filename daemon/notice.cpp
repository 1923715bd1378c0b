// daemon/notice.cpp — see notice.h.
#include "daemon/notice.h"

#include <cerrno>

#include "daemon/log.h"

namespace spoold::daemon {

void RepeatedProblem::failed(std::string_view error, std::string_view waiting, Clock::time_point now) {
  ++total_;
  if (!active_) {
    active_ = true;
    started_ = last_logged_ = now;
    repeats_ = 0;
    log::warning("{} paused: {} ({}; retried on every scan, logged once a minute)", what_, error, waiting);
    return;
  }
  ++repeats_;
  if (now - last_logged_ < every_) return;
  auto for_s = std::chrono::duration_cast<std::chrono::seconds>(now - started_).count();
  log::warning("{} still paused after {}s: {} ({} more failures; {})", what_, for_s, error, repeats_,
               waiting);
  last_logged_ = now;
  repeats_ = 0;
}

void RepeatedProblem::ok() {
  if (!active_) return;
  auto for_s = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count();
  log::info("{} resumed after {}s ({} failed attempts)", what_, for_s, total_);
  active_ = false;
  total_ = 0;
  repeats_ = 0;
}

bool spool_wide_error(int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EROFS:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EIO:
      return true;
    default:
      return false;
  }
}

}  // namespace spoold::daemon
