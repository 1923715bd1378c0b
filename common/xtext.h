// common/xtext.h — RFC 3461 §4 xtext, the encoding of DSN parameters (ENVID, ORCPT) in SMTP
// commands and in drop-file envelope lines.
// Rule: decode refuses what the RFC forbids ("+" without two upper-case hex digits, a byte
// outside "!".."~", a bare "="); encode writes "+XX" for "+", "=" and every byte outside
// "!".."~", so decode(encode(s)) == s for any bytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace spoold::xtext {

inline std::optional<std::string> decode(std::string_view s) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;  // upper-case hex only
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < '!' || c > '~' || c == '=') return std::nullopt;
    if (c != '+') {
      out += static_cast<char>(c);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

inline std::string encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < '!' || c > '~' || c == '+' || c == '=') {
      out += '+';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace spoold::xtext
