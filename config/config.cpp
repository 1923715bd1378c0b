// config/config.cpp — lookups on a loaded Config (routes, relay groups, aliases).
#include "config/config.h"

#include <algorithm>
#include <utility>

#include "common/ascii.h"

namespace spoold::config {

const RelayGroup* Config::relay(const std::string& name) const {
  for (const auto& g : relays)
    if (g.name == name) return &g;
  return nullptr;
}

const std::vector<std::string>* Config::alias(const std::string& name) const {
  auto it = aliases.find(ascii_lower(name));
  return it == aliases.end() ? nullptr : &it->second;
}

const Route* Config::route_for(const std::string& domain) const {
  for (const auto& r : routes)
    for (const auto& pattern : r.match)
      if (domain_matches(pattern, domain)) return &r;
  return nullptr;
}

bool OutcomeHook::wants(const std::string& status) const {
  return enabled() && std::find(statuses.begin(), statuses.end(), status) != statuses.end();
}

Result<std::vector<std::string>> split_command(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quote) {
      if (c == quote) {
        quote = 0;
      } else if (quote == '"' && c == '\\' && i + 1 < text.size()) {
        word += text[++i];
      } else {
        word += c;
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words.push_back(std::exchange(word, {}));
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '"' || c == '\'') {
      quote = c;
    } else {
      word += c;
    }
  }
  if (quote)
    return make_error(std::string("unterminated ") + (quote == '"' ? "double" : "single") + " quote");
  if (in_word) words.push_back(std::move(word));
  return words;
}

}  // namespace spoold::config
