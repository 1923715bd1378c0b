// spool/address.cpp — RFC 5321 mailbox validation and the RFC 5322 address-list parser used for
// `sendmail -t` recipients. Rule: an address leaves here canonical (unneeded quotes dropped) and
// valid per RFC 5321, or the caller gets an error naming it; control characters never pass.
#include <cstdint>
#include <optional>

#include <fmt/format.h>

#include "common/mailbox.h"
#include "spool/drop.h"

namespace spoold::spool {

bool valid_mailbox(std::string_view a) {
  return mailbox::valid_mailbox(a, true);
}

namespace {

// ---- RFC 5322 address-list tokenizer -------------------------------------------------------

enum class Tok { atom, quoted, literal, special };

struct Token {
  Tok kind;
  std::string text;  // atom text, decoded quoted content, literal with brackets, or the special
  bool is(char c) const { return kind == Tok::special && text.size() == 1 && text[0] == c; }
};

bool is_special(char c) {
  static constexpr std::string_view specials = "()<>[]:;@\\,.\"";
  return specials.find(c) != std::string_view::npos;
}

bool is_ctl(unsigned char c) {
  return c < 32 || c == 127;
}

Result<std::vector<Token>> tokenize(std::string_view v) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < v.size()) {
    auto c = static_cast<unsigned char>(v[i]);
    if (c == ' ' || c == '\t') {
      ++i;
    } else if (is_ctl(c)) {
      return make_error(fmt::format("control character 0x{:02x} in address field", c));
    } else if (c == '(') {  // comment, nested, with quoted-pairs; skipped entirely
      int depth = 0;
      for (; i < v.size(); ++i) {
        if (v[i] == '\\') {
          ++i;
        } else if (v[i] == '(') {
          ++depth;
        } else if (v[i] == ')' && --depth == 0) {
          break;
        }
      }
      if (i >= v.size()) return make_error("unterminated comment in address field");
      ++i;
    } else if (c == '"') {
      std::string text;
      size_t j = i + 1;
      for (; j < v.size() && v[j] != '"'; ++j) {
        if (v[j] == '\\' && j + 1 < v.size()) ++j;
        if (is_ctl(static_cast<unsigned char>(v[j])) && v[j] != '\t')
          return make_error("control character in quoted string");
        text += v[j];
      }
      if (j >= v.size()) return make_error("unterminated quoted string in address field");
      out.push_back({Tok::quoted, std::move(text)});
      i = j + 1;
    } else if (c == '[') {
      size_t j = v.find(']', i);
      if (j == std::string_view::npos) return make_error("unterminated domain literal");
      std::string text;
      for (size_t k = i; k <= j; ++k)
        if (v[k] != ' ' && v[k] != '\t') text += v[k];
      out.push_back({Tok::literal, std::move(text)});
      i = j + 1;
    } else if (is_special(static_cast<char>(c))) {
      out.push_back({Tok::special, std::string(1, static_cast<char>(c))});
      ++i;
    } else {
      size_t j = i;
      while (j < v.size() && !is_special(v[j]) && v[j] != ' ' && v[j] != '\t' &&
             !is_ctl(static_cast<unsigned char>(v[j])))
        ++j;
      out.push_back({Tok::atom, std::string(v.substr(i, j - i))});
      i = j;
    }
  }
  return out;
}

// ---- recursive descent over the tokens -----------------------------------------------------

class ListParser {
 public:
  explicit ListParser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Result<std::vector<std::string>> run() {
    while (!at_end()) {
      if (peek_is(',')) {  // obs-addr-list allows empty elements
        ++i_;
        continue;
      }
      if (auto r = address(); !r) return r.error();
      if (!at_end() && !peek_is(','))
        return make_error(fmt::format("unexpected '{}' in address list", t_[i_].text));
    }
    return std::move(out_);
  }

 private:
  bool at_end() const { return i_ >= t_.size(); }
  bool peek_is(char c) const { return !at_end() && t_[i_].is(c); }

  // Finds the first of `stops` at or after i_; returns its char or 0 at end.
  char first_of(std::string_view stops) const {
    for (size_t k = i_; k < t_.size(); ++k)
      if (t_[k].kind == Tok::special && stops.find(t_[k].text[0]) != std::string_view::npos)
        return t_[k].text[0];
    return 0;
  }

  Result<void> address() {
    if (first_of("<@,;:") == ':') return group();
    return mailbox();
  }

  Result<void> group() {
    while (!peek_is(':')) ++i_;  // display name
    ++i_;
    while (!at_end() && !peek_is(';')) {
      if (peek_is(',')) {
        ++i_;
        continue;
      }
      if (auto r = mailbox(); !r) return r;
      if (!at_end() && !peek_is(',') && !peek_is(';')) return make_error("unexpected token in group");
    }
    if (peek_is(';')) ++i_;  // a missing ';' at the very end is tolerated
    return {};
  }

  Result<void> mailbox() {
    if (first_of("<,;") == '<') {
      while (!peek_is('<')) ++i_;  // display name words
      ++i_;
      if (peek_is('>')) {  // "<>": the null path
        ++i_;
        out_.emplace_back();
        return {};
      }
      if (peek_is('@')) {  // obs-route "@a,@b:" is ignored
        while (!at_end() && !peek_is(':')) ++i_;
        if (at_end()) return make_error("unterminated route in angle address");
        ++i_;
      }
      auto spec = addr_spec();
      if (!spec) return spec.error();
      if (!peek_is('>')) return make_error("missing '>' after " + *spec);
      ++i_;
      out_.push_back(std::move(*spec));
      return {};
    }
    auto spec = addr_spec();
    if (!spec) return spec.error();
    out_.push_back(std::move(*spec));
    return {};
  }

  Result<std::string> addr_spec() {
    std::string local;
    bool quoted = false;
    for (;;) {
      if (at_end() || (t_[i_].kind != Tok::atom && t_[i_].kind != Tok::quoted))
        return make_error("expected a local part" + where());
      quoted |= t_[i_].kind == Tok::quoted;
      local += t_[i_++].text;
      if (!peek_is('.')) break;
      local += '.';
      ++i_;
    }
    if (!peek_is('@')) return make_error("address without domain: " + local);
    ++i_;
    std::string domain;
    if (!at_end() && t_[i_].kind == Tok::literal) {
      domain = t_[i_++].text;
    } else {
      for (;;) {
        if (at_end() || t_[i_].kind != Tok::atom) return make_error("expected a domain after " + local + "@");
        domain += t_[i_++].text;
        if (!peek_is('.')) break;
        domain += '.';
        ++i_;
      }
    }
    std::string addr = canonical_local(local, quoted) + "@" + domain;
    if (!valid_mailbox(addr)) return make_error("invalid address " + addr);
    return addr;
  }

  static std::string canonical_local(const std::string& local, bool quoted) {
    if (!quoted || mailbox::valid_dot_string(local)) return local;
    std::string q = "\"";
    for (char c : local) {
      if (c == '"' || c == '\\') q += '\\';
      q += c;
    }
    return q + "\"";
  }

  std::string where() const { return at_end() ? " at end of field" : " at '" + t_[i_].text + "'"; }

  std::vector<Token> t_;
  size_t i_ = 0;
  std::vector<std::string> out_;
};

}  // namespace

Result<std::vector<std::string>> parse_address_list(std::string_view value) {
  auto toks = tokenize(value);
  if (!toks) return toks.error();
  return ListParser(std::move(*toks)).run();
}

}  // namespace spoold::spool
