// common/clock.h — the wall clock as the spool and its tools write it: whole seconds since the Unix
// epoch (entry arrival times, lock owners, the `now` the control answers are computed for).
#pragma once

#include <cstdint>
#include <ctime>

namespace spoold {

inline std::int64_t unix_now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

}  // namespace spoold
