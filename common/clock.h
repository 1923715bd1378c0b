// common/clock.h — the wall clock as the spool and its tools write it: whole seconds since the Unix
// epoch (entry arrival times, lock owners, the `now` the control answers are computed for).
#pragma once

#include <time.h>

#include <cstdint>

namespace spoold {

// Not time(2): glibc serves it from the coarse clock, which can still show the previous second for
// a few milliseconds after a queue id (read from the precise clock) shows the next one. An entry
// enqueued in that window would then look due only in the future to a scan cut off at "now".
inline std::int64_t unix_now() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec);
}

}  // namespace spoold
