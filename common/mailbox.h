// common/mailbox.h — RFC 5321 mailbox syntax (Mailbox = Local-part "@" ( Domain / address-literal ),
// §4.1.2), with RFC 6531's UTF-8 extension for SMTPUTF8 sessions. The one validator of the tree:
// the spool checks drop files and `sendmail` arguments with it, the SMTP server engine MAIL and
// RCPT. Rule: pure functions of untrusted bytes; control characters and bytes ≥ 0x80 (unless
// utf8, and then only valid UTF-8) never pass.
#pragma once

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace spoold::mailbox {

namespace detail {

inline bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

// RFC 5322 atext; RFC 6531 adds UTF8-non-ascii (whole-string UTF-8 validity is checked apart).
inline bool is_atext(unsigned char c, bool utf8) {
  if (is_alpha(c) || is_digit(c) || (utf8 && c >= 0x80)) return true;
  static constexpr std::string_view extra = "!#$%&'*+-/=?^_`{|}~";
  return extra.find(static_cast<char>(c)) != std::string_view::npos;
}

inline bool valid_dot_string(std::string_view s, bool utf8) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!is_atext(static_cast<unsigned char>(c), utf8)) {
      return false;
    }
    prev = c;
  }
  return true;
}

// Quoted-string (qtextSMTP / quoted-pairSMTP); the length consumed, or 0.
inline std::size_t quoted_string_len(std::string_view s, bool utf8) {
  if (s.empty() || s[0] != '"') return 0;
  for (std::size_t i = 1; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 >= s.size()) return 0;
      auto n = static_cast<unsigned char>(s[++i]);
      if (n < 32 || n > 126) return 0;
    } else if (c < 32 || c == 127 || (c > 127 && !utf8)) {
      return 0;
    }
  }
  return 0;
}

inline bool valid_domain_name(std::string_view d, bool utf8) {
  if (d.empty() || d.size() > 255) return false;
  std::size_t start = 0;
  while (start <= d.size()) {
    std::size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? d.npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    for (char c : label) {
      auto u = static_cast<unsigned char>(c);
      if (!is_alpha(u) && !is_digit(u) && c != '-' && !(utf8 && u >= 0x80)) return false;
    }
    if (label.front() == '-' || label.back() == '-') return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

inline bool valid_address_literal(std::string_view d) {
  if (d.size() < 3 || d.size() > 255 || d.front() != '[' || d.back() != ']') return false;
  std::string inner(d.substr(1, d.size() - 2));
  unsigned char buf[16];
  if (inner.rfind("IPv6:", 0) == 0) return inet_pton(AF_INET6, inner.c_str() + 5, buf) == 1;
  if (inet_pton(AF_INET, inner.c_str(), buf) == 1) return true;
  auto colon = inner.find(':');  // General-address-literal: Standardized-tag ":" 1*dcontent
  if (colon == std::string::npos || colon == 0 || colon + 1 >= inner.size()) return false;
  if (!valid_domain_name(std::string_view(inner).substr(0, colon), false)) return false;
  for (std::size_t i = colon + 1; i < inner.size(); ++i) {
    auto c = static_cast<unsigned char>(inner[i]);
    if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']') return false;
  }
  return true;
}

}  // namespace detail

// A dot-string local part (RFC 5321 §4.1.2): atoms joined by single dots.
inline bool valid_dot_string(std::string_view s, bool utf8 = false) {
  return detail::valid_dot_string(s, utf8);
}

inline bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

inline bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto n = static_cast<unsigned char>(s[i + k]);
      if ((n & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (n & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

inline bool valid_mailbox(std::string_view a, bool utf8 = false) {
  if (a.empty() || a.size() > 254) return false;  // RFC 5321 §4.5.3.1.3: path ≤ 256 with <>
  if (!utf8 && !is_ascii(a)) return false;
  if (utf8 && !valid_utf8(a)) return false;
  std::size_t local_len;
  if (a[0] == '"') {
    local_len = detail::quoted_string_len(a, utf8);
    if (local_len == 0) return false;
  } else {
    local_len = a.find('@');
    if (local_len == std::string_view::npos) return false;
    if (!detail::valid_dot_string(a.substr(0, local_len), utf8)) return false;
  }
  if (local_len > 64 || local_len >= a.size() || a[local_len] != '@') return false;
  std::string_view domain = a.substr(local_len + 1);
  if (!domain.empty() && domain[0] == '[') return detail::valid_address_literal(domain);
  return detail::valid_domain_name(domain, utf8);
}

}  // namespace spoold::mailbox
