// daemon/log.h — spoold's log: free-form lines plus the Postfix-style per-message lines of docs/design.md
// "Log".
//   QID: from=<sender>, size=BYTES, nrcpt=N
//   QID: to=<rcpt>, relay=HOST[IP]:PORT, delay=SECS, tier=K, dsn=X.Y.Z, status=sent (REPLY)
// format text: one line each on stderr (timestamped unless journald reads us); format json: one JSON
// object per line with the same fields. Rule: every text that came from outside is sanitised here
// (no CR/LF/control bytes can break a line).
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "config/config.h"
#include "control/json.h"

namespace spoold::daemon::log {

void configure(config::LogLevel level, config::LogFormat format);
bool enabled(config::LogLevel level);
void write(config::LogLevel level, std::string_view message);

template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(config::LogLevel::debug))
    write(config::LogLevel::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(config::LogLevel::info))
    write(config::LogLevel::info, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void warning(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(config::LogLevel::warning))
    write(config::LogLevel::warning, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(config::LogLevel::error, fmt::format(f, std::forward<Args>(args)...));
}

struct Pickup {
  std::string qid, sender;
  unsigned long long size = 0;
  size_t nrcpt = 0;
};
void pickup(const Pickup& p);

struct Delivery {
  std::string qid, rcpt;
  std::string relay = "none";  // "HOST[IP]:PORT" or "none"
  double delay = 0;            // seconds since arrival
  int tier = 0;
  std::string dsn;     // "2.0.0", "4.4.1", "5.1.1"
  std::string status;  // sent | deferred | bounced | expired
  std::string reason;  // server reply or local reason
};
void delivery(const Delivery& d);
// The fields of the JSON format's delivery line (also what `spoolctl watch` streams).
control::Json delivery_json(const Delivery& d);

// Replaces CR, LF and other control bytes so outside text cannot forge log lines.
std::string sanitize(std::string_view text);

}  // namespace spoold::daemon::log
