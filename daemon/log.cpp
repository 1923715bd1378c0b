// daemon/log.cpp — see log.h. Writes go straight to stderr with one write(2) per line so lines
// from concurrent writers (thread pool) never interleave.
#include "daemon/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>

#include "control/json.h"

namespace spoold::daemon::log {
namespace {

std::atomic<int> g_level{static_cast<int>(config::LogLevel::info)};
std::atomic<bool> g_json{false};
const bool g_journal = std::getenv("JOURNAL_STREAM") != nullptr;  // journald adds its own timestamps

std::string timestamp() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

void emit(std::string line) {
  line += '\n';
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(2, line.data() + off, line.size() - off);
    if (n <= 0) return;  // nowhere to log to: drop rather than block or crash
    off += static_cast<size_t>(n);
  }
}

void emit_json(config::LogLevel level, control::Json fields) {
  fields.set("ts", timestamp()).set("level", config::to_string(level));
  emit(fields.dump());
}

void emit_text(config::LogLevel level, std::string_view message) {
  std::string line;
  if (!g_journal) line = timestamp() + " ";
  if (level != config::LogLevel::info) line += fmt::format("{}: ", config::to_string(level));
  line += sanitize(message);
  emit(std::move(line));
}

}  // namespace

void configure(config::LogLevel level, config::LogFormat format) {
  g_level = static_cast<int>(level);
  g_json = format == config::LogFormat::json;
}

bool enabled(config::LogLevel level) {
  return static_cast<int>(level) >= g_level.load();
}

void write(config::LogLevel level, std::string_view message) {
  if (!enabled(level)) return;
  if (g_json) {
    emit_json(level, control::Json().set("message", sanitize(message)));
  } else {
    emit_text(level, message);
  }
}

void pickup(const Pickup& p) {
  if (!enabled(config::LogLevel::info)) return;
  if (g_json) {
    emit_json(config::LogLevel::info, control::Json()
                                          .set("qid", p.qid)
                                          .set("from", sanitize(p.sender))
                                          .set("size", p.size)
                                          .set("nrcpt", p.nrcpt));
    return;
  }
  emit_text(config::LogLevel::info,
            fmt::format("{}: from=<{}>, size={}, nrcpt={}", p.qid, p.sender, p.size, p.nrcpt));
}

control::Json delivery_json(const Delivery& d) {
  return control::Json()
      .set("qid", d.qid)
      .set("to", sanitize(d.rcpt))
      .set("relay", sanitize(d.relay))
      .set("delay", std::round(d.delay * 100) / 100)
      .set("tier", d.tier)
      .set("dsn", d.dsn)
      .set("status", d.status)
      .set("reason", sanitize(d.reason));
}

void delivery(const Delivery& d) {
  if (!enabled(config::LogLevel::info)) return;
  if (g_json) {
    emit_json(config::LogLevel::info, delivery_json(d));
    return;
  }
  emit_text(config::LogLevel::info,
            fmt::format("{}: to=<{}>, relay={}, delay={:.2f}, tier={}, dsn={}, status={} ({})", d.qid, d.rcpt,
                        d.relay, d.delay, d.tier, d.dsn, d.status, d.reason));
}

std::string sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c == 0x7F) ? ' ' : ch;
  }
  return out;
}

}  // namespace spoold::daemon::log
