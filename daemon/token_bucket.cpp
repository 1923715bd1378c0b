// daemon/token_bucket.cpp — see token_bucket.h.
#include "daemon/token_bucket.h"

#include <algorithm>

namespace spoold::daemon {

bool TokenBucket::take(Clock::time_point now) {
  if (rate_ <= 0) return true;
  double burst = std::max(1.0, rate_);
  if (last_ == Clock::time_point{}) tokens_ = burst, last_ = now;
  tokens_ = std::min(burst, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
  last_ = now;
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

std::uint64_t TokenBucket::wait_ms() const {
  if (rate_ <= 0 || tokens_ >= 1.0) return 1;
  return static_cast<std::uint64_t>((1.0 - tokens_) / rate_ * 1000.0) + 1;
}

}  // namespace spoold::daemon
