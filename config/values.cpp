// config/values.cpp — scalar value syntax shared by the loader and the command line tools:
// durations, sizes, enum names, domain patterns. Rule: reject anything not fully consumed.
#include <cctype>
#include <cstdlib>
#include <limits>

#include "common/ascii.h"
#include "config/config.h"

namespace spoold::config {
namespace {

// Splits "123abc" into 123 and "abc"; false when there is no leading number or it overflows.
bool split_number(const std::string& text, std::uint64_t& number, std::string& unit) {
  size_t i = 0;
  number = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    std::uint64_t digit = static_cast<std::uint64_t>(text[i] - '0');
    if (number > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
    number = number * 10 + digit;
    ++i;
  }
  if (i == 0) return false;
  unit = ascii_lower(std::string_view(text).substr(i));
  return true;
}

}  // namespace

std::optional<Duration> parse_duration(const std::string& text) {
  std::uint64_t n = 0;
  std::string unit;
  if (!split_number(text, n, unit)) return std::nullopt;
  std::uint64_t ms_per = 0;
  if (unit.empty() || unit == "s") {
    ms_per = 1000;
  } else if (unit == "ms") {
    ms_per = 1;
  } else if (unit == "m") {
    ms_per = 60'000;
  } else if (unit == "h") {
    ms_per = 3'600'000;
  } else if (unit == "d") {
    ms_per = 86'400'000;
  } else {
    return std::nullopt;
  }
  // Cap at ~100 years so arithmetic on deadlines never overflows.
  if (n > 3'153'600'000'000ull / ms_per) return std::nullopt;
  return Duration(static_cast<Duration::rep>(n * ms_per));
}

std::optional<std::uint64_t> parse_size(const std::string& text) {
  std::uint64_t n = 0;
  std::string unit;
  if (!split_number(text, n, unit)) return std::nullopt;
  std::uint64_t mul = 0;
  if (unit.empty() || unit == "b") {
    mul = 1;
  } else if (unit == "kb" || unit == "k") {
    mul = 1ull << 10;
  } else if (unit == "mb" || unit == "m") {
    mul = 1ull << 20;
  } else if (unit == "gb" || unit == "g") {
    mul = 1ull << 30;
  } else {
    return std::nullopt;
  }
  if (n > std::numeric_limits<std::uint64_t>::max() / mul) return std::nullopt;
  return n * mul;
}

const char* to_string(RelayTls t) {
  switch (t) {
    case RelayTls::none:
      return "none";
    case RelayTls::starttls:
      return "starttls";
    case RelayTls::smtps:
      return "smtps";
  }
  return "?";
}

const char* to_string(LogLevel l) {
  switch (l) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warning:
      return "warning";
    case LogLevel::error:
      return "error";
  }
  return "?";
}

bool domain_matches(const std::string& pattern, const std::string& domain) {
  std::string p = ascii_lower(pattern), d = ascii_lower(domain);
  while (!d.empty() && d.back() == '.') d.pop_back();  // "example.org." is "example.org"
  if (p == "*") return true;
  if (p.size() > 2 && p[0] == '*' && p[1] == '.') {
    std::string suffix = p.substr(1);  // ".example.org"
    return d.size() > suffix.size() && d.compare(d.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  return p == d;
}

std::string default_path(const std::string& from_flag) {
  if (!from_flag.empty()) return from_flag;
  if (const char* env = std::getenv("SPOOLD_CONFIG"); env && *env) return env;
  return "/etc/spoold/spoold.yaml";
}

}  // namespace spoold::config
