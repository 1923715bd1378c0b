// smtp/rewrite.cpp — see rewrite.h.
#include "smtp/rewrite.h"

#include "common/ascii.h"

namespace spoold::smtp {

namespace {

bool domain_char(char c) {
  auto u = static_cast<unsigned char>(c);
  // Letters, digits, '-', '.', and any non-ASCII octet (so an internationalized name is read
  // whole and, being no configured ASCII name, never matches).
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         u >= 0x80;
}

bool fws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// Where the delimited token starting at `i` (an opening '"', '(' or '[') ends: the index after its
// closing delimiter, or the end of the text. Comments nest; '\' quotes the next octet.
std::size_t skip_delimited(std::string_view v, std::size_t i) {
  char open = v[i];
  char close = open == '"' ? '"' : open == '(' ? ')' : ']';
  int depth = 1;
  for (++i; i < v.size(); ++i) {
    char c = v[i];
    if (c == '\\') {
      ++i;
    } else if (open == '(' && c == '(') {
      ++depth;
    } else if (c == close && --depth == 0) {
      return i + 1;
    }
  }
  return v.size();
}

}  // namespace

std::optional<std::string> masquerade_domain(std::string_view domain,
                                             const std::vector<std::string>& domains) {
  while (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (domain.empty() || domain.front() == '[') return std::nullopt;
  for (const auto& m : domains) {
    if (m.empty()) continue;
    if (m.size() == domain.size()) {
      if (ascii_iequals(domain, m)) return std::nullopt;
    } else if (m.size() < domain.size()) {
      std::string_view parent = domain.substr(domain.size() - m.size());
      if (domain[domain.size() - m.size() - 1] == '.' && ascii_iequals(parent, m)) return m;
    }
  }
  return std::nullopt;
}

std::string masquerade_address(const std::string& address, const std::vector<std::string>& domains) {
  auto at = address.rfind('@');
  if (at == std::string::npos || domains.empty()) return address;
  auto d = masquerade_domain(std::string_view(address).substr(at + 1), domains);
  return d ? address.substr(0, at + 1) + *d : address;
}

std::string rewrite_envelope_sender(const std::string& sender, const std::string& envelope_from,
                                    const std::vector<std::string>& domains) {
  if (sender.empty()) return sender;
  if (!envelope_from.empty()) return envelope_from;
  return masquerade_address(sender, domains);
}

std::optional<std::string> masquerade_field(std::string_view value, const std::vector<std::string>& domains) {
  if (domains.empty()) return std::nullopt;
  std::string out;
  std::size_t copied = 0;  // value[0, copied) is in out (or unchanged, when out is still empty)
  bool changed = false;
  for (std::size_t i = 0; i < value.size();) {
    char c = value[i];
    if (c == '"' || c == '(' || c == '[') {
      i = skip_delimited(value, i);
      continue;
    }
    if (c == '\\') {  // not valid outside the tokens above; skip what it quotes all the same
      i += 2;
      continue;
    }
    if (c != '@') {
      ++i;
      continue;
    }
    // The domain after '@', past folding white space (RFC 5322 §4.4 obs-domain allows CFWS).
    std::size_t start = i + 1;
    while (start < value.size() && fws(value[start])) ++start;
    std::size_t end = start;
    while (end < value.size() && domain_char(value[end])) ++end;
    i = end > start ? end : start;
    auto d = masquerade_domain(value.substr(start, end - start), domains);
    if (!d) continue;
    out.append(value.substr(copied, start - copied));
    out.append(*d);
    copied = end;
    changed = true;
  }
  if (!changed) return std::nullopt;
  out.append(value.substr(copied));
  return out;
}

}  // namespace spoold::smtp
