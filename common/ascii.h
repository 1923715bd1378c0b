// common/ascii.h — ASCII case folding for the names of the protocols and the config: header field
// names, SMTP verbs and EHLO keywords, envelope keywords, domains, unit suffixes. Rule: only A–Z
// and a–z fold; every other byte (8-bit ones included) stays itself, whatever the locale (the
// <cctype> functions follow it). The one home of these helpers: write no other lower()/iequals().
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace spoold {

constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr char ascii_upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

// A copy of s with A–Z folded to a–z.
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// A copy of s with a–z folded to A–Z.
inline std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_upper(c);
  return out;
}

// a and b are the same but for the case of ASCII letters.
constexpr bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

// s starts with prefix, but for the case of ASCII letters.
constexpr bool ascii_istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && ascii_iequals(s.substr(0, prefix.size()), prefix);
}

}  // namespace spoold
