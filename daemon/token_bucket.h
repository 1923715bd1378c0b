// daemon/token_bucket.h — the per-destination rate limit (delivery.rate_limit, messages per second)
// as a token bucket: pure arithmetic on the time it is given, tested by table.
// Rule: the bucket holds at most max(1, rate) tokens and starts full, so a destination idle for a
// while may send one second's worth at once, then `rate` per second; rate <= 0 means no limit.
#pragma once

#include <chrono>
#include <cstdint>

namespace spoold::daemon {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  explicit TokenBucket(double rate) : rate_(rate) {}

  // Takes a token if one is there at `now`.
  bool take(Clock::time_point now);
  // Milliseconds until the next token (after a take() that failed), at least 1.
  std::uint64_t wait_ms() const;
  double rate() const { return rate_; }

 private:
  double rate_;
  double tokens_ = 0;
  Clock::time_point last_{};
};

}  // namespace spoold::daemon
