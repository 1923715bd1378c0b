// idna/idna.cpp — see idna.h.
#include "idna/idna.h"

#include <idn2.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

namespace spoold::idna {

bool is_ascii(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

std::optional<std::string> to_ascii(std::string_view domain) {
  if (is_ascii(domain)) return std::string(domain);
  if (domain.find('\0') != std::string_view::npos) return std::nullopt;
  // A trailing root dot is not a label; libidn2 refuses the empty label it would make.
  bool root = domain.size() > 1 && domain.back() == '.';
  std::string in(root ? domain.substr(0, domain.size() - 1) : domain);
  char* out = nullptr;
  // Not IDN2_USE_STD3_ASCII_RULES: libidn2 2.3 then silently drops characters UTS #46 maps to
  // ASCII punctuation ("a＿b" became "ab", another domain). Without it they map to '_', '>' or a
  // space, which the check below refuses.
  int rc = idn2_to_ascii_8z(in.c_str(), &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  std::unique_ptr<char, decltype(&idn2_free)> owned(out, &idn2_free);
  if (rc != IDN2_OK || !out) return std::nullopt;
  std::string a(out);
  // libidn2 passes empty labels through; a domain name has none (the root dot was taken off).
  if (a.empty() || a.front() == '.' || a.back() == '.' || a.find("..") != std::string::npos)
    return std::nullopt;
  // An A-label name is letters, digits, '-' and dots only (so never '>' or a space on a command
  // line, whatever a mapping produced).
  if (!std::all_of(a.begin(), a.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '.';
      }))
    return std::nullopt;
  std::transform(a.begin(), a.end(), a.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? char(c + 32) : c; });
  if (root) a += '.';
  return a;
}

std::string ascii_domain(std::string_view address) {
  auto at = address.rfind('@');
  if (at == std::string_view::npos) return std::string(address);
  auto d = to_ascii(address.substr(at + 1));
  if (!d) return std::string(address);
  return std::string(address.substr(0, at + 1)) + *d;
}

}  // namespace spoold::idna
