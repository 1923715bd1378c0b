// daemon/client_rates.h — events per client in fixed windows, for the listener's
// new_tls_sessions_per_minute (Postfix's smtpd_client_new_tls_session_rate_limit, counted by
// anvil in windows of anvil_rate_time_unit, 60 s). Pure: the time is given, table-tested.
// Rule: a key whose count in its current window has reached the limit is over it until that
// window ends. Memory is bounded: at kMaxKeys keys, ended windows are dropped; if none has ended,
// a new key is not tracked (the limit fails open rather than growing without bound).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <unordered_map>

namespace spoold::daemon {

class ClientRates {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kMaxKeys = 100'000;

  explicit ClientRates(Clock::duration window = std::chrono::seconds(60)) : window_(window) {}

  // True when `key` has had `limit` events in its current window; limit <= 0 means no limit.
  bool over(const std::string& key, int limit, Clock::time_point now) const;
  // One more event for `key` at `now` (a window starts at its first event).
  void count(const std::string& key, Clock::time_point now);
  std::size_t size() const { return keys_.size(); }

 private:
  struct Window {
    Clock::time_point start;
    int events = 0;
  };
  Clock::duration window_;
  std::unordered_map<std::string, Window> keys_;
};

}  // namespace spoold::daemon
