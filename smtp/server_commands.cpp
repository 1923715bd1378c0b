// smtp/server_commands.cpp — see server_commands.h. Mailbox syntax is common/mailbox.h's.
#include "smtp/server_commands.h"

#include <utility>

#include "common/ascii.h"
#include "smtp/server.h"

namespace spoold::smtp::server {

std::string_view ret_text(Ret r) {
  return r == Ret::full ? "FULL" : r == Ret::hdrs ? "HDRS" : "";
}

std::string notify_text(const Notify& n) {
  if (!n.given) return "";
  if (n.never) return "NEVER";
  std::string out;
  for (auto [on, name] : {std::pair{n.success, "SUCCESS"}, {n.failure, "FAILURE"}, {n.delay, "DELAY"}}) {
    if (!on) continue;
    if (!out.empty()) out += ',';
    out += name;
  }
  return out;
}

std::string orcpt_text(const RcptParams& p) {
  return p.orcpt_type.empty() ? "" : p.orcpt_type + ";" + p.orcpt;
}

CommandLine split_command(std::string_view line) {
  CommandLine c;
  std::size_t sp = line.find(' ');
  c.verb = ascii_upper(line.substr(0, sp));
  if (sp == std::string_view::npos) return c;
  std::string_view arg = line.substr(sp);
  std::size_t b = arg.find_first_not_of(' ');
  if (b == std::string_view::npos) return c;
  arg.remove_prefix(b);
  std::size_t e = arg.find_last_not_of(' ');
  c.arg = arg.substr(0, e + 1);
  return c;
}

std::optional<PathArg> parse_path(std::string_view arg) {
  std::size_t b = arg.find_first_not_of(' ');
  if (b == std::string_view::npos || arg[b] != '<') return std::nullopt;
  arg.remove_prefix(b + 1);
  bool quoted = false;
  std::size_t close = std::string_view::npos;
  for (std::size_t i = 0; i < arg.size(); ++i) {
    char c = arg[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && c == '>') {
      close = i;
      break;
    } else if (!quoted && c == '<') {
      return std::nullopt;
    }
  }
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view inner = arg.substr(0, close);
  std::string_view rest = arg.substr(close + 1);
  if (!rest.empty() && rest[0] != ' ') return std::nullopt;  // "<a@b>x"
  if (!inner.empty() && inner[0] == '@') {                   // A-d-l ":" — accepted and ignored
    std::size_t colon = inner.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    for (char c : inner.substr(0, colon))
      if (c != '@' && c != ',' && c != '.' && c != '-' && c != '[' && c != ']' &&
          !mailbox::detail::is_alpha(static_cast<unsigned char>(c)) &&
          !mailbox::detail::is_digit(static_cast<unsigned char>(c)) && c != ':')
        return std::nullopt;
    inner.remove_prefix(colon + 1);
    if (inner.empty()) return std::nullopt;
  }
  return PathArg{std::string(inner), rest};
}

std::optional<std::vector<EsmtpParam>> parse_params(std::string_view rest) {
  std::vector<EsmtpParam> out;
  std::size_t i = 0;
  while (i < rest.size()) {
    if (rest[i] == ' ') {
      ++i;
      continue;
    }
    std::size_t e = rest.find(' ', i);
    if (e == std::string_view::npos) e = rest.size();
    std::string_view word = rest.substr(i, e - i);
    i = e;
    std::size_t eq = word.find('=');
    std::string_view key = word.substr(0, eq);
    // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    if (key.empty() || key[0] == '-') return std::nullopt;
    for (char c : key)
      if (!mailbox::detail::is_alpha(static_cast<unsigned char>(c)) &&
          !mailbox::detail::is_digit(static_cast<unsigned char>(c)) && c != '-')
        return std::nullopt;
    EsmtpParam p;
    p.key = ascii_upper(key);
    if (eq != std::string_view::npos) {
      p.has_value = true;
      p.value = word.substr(eq + 1);
      // esmtp-value = 1*(%d33-60 / %d62-126), RFC 6531 adds UTF-8 (checked by whoever uses it)
      if (p.value.empty()) return std::nullopt;
      for (char c : p.value) {
        auto u = static_cast<unsigned char>(c);
        if (u < 33 || u == '=' || u == 127) return std::nullopt;
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace spoold::smtp::server
