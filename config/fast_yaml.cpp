// config/fast_yaml.cpp — see fast_yaml.h. Line-based: a block node is the run of lines at one
// indentation; a value after "key: " or "- " must end on its own line. Every construct this does
// not know makes it give up (nullopt) rather than guess — yaml-cpp is always there behind it.
#include "config/fast_yaml.h"

#include <algorithm>
#include <string>
#include <vector>

namespace spoold::config {
namespace {

struct Line {
  int indent = 0;
  std::string_view text;  // after the indentation, up to (not including) the newline
};

bool null_text(std::string_view s) {
  return s == "~" || s == "null" || s == "Null" || s == "NULL";
}

bool seq_item(std::string_view t) {
  return t == "-" || (t.size() >= 2 && t[0] == '-' && t[1] == ' ');
}

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.';
}

// "name:" at the front of t, followed by a space or the end: the length of name, else 0.
size_t key_length(std::string_view t) {
  if (t.empty() || t[0] == '-' || t[0] == '.') return 0;
  size_t n = 0;
  while (n < t.size() && key_char(t[n])) ++n;
  if (n == 0 || n >= t.size() || t[n] != ':') return 0;
  if (n + 1 < t.size() && t[n + 1] != ' ') return 0;
  if (null_text(t.substr(0, n))) return 0;  // yaml-cpp makes that key a null node
  return n;
}

YAML::Node scalar_node(std::string_view plain_or_quoted, bool plain) {
  if (plain && null_text(plain_or_quoted)) return YAML::Node(YAML::NodeType::Null);
  return YAML::Node(std::string(plain_or_quoted));
}

// One value on one line: a flow collection or a scalar, with the cursor at its first character.
class Inline {
 public:
  explicit Inline(std::string_view s) : s_(s) {}

  // The whole rest of the line as one value (then only a comment may follow).
  std::optional<YAML::Node> whole() {
    auto v = value(false);
    if (!v) return std::nullopt;
    skip_spaces();
    if (pos_ < s_.size() && !(s_[pos_] == '#' && pos_ > 0 && s_[pos_ - 1] == ' ')) return std::nullopt;
    return v;
  }

 private:
  void skip_spaces() {
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
  }
  bool at(char c) const { return pos_ < s_.size() && s_[pos_] == c; }

  std::optional<YAML::Node> value(bool flow) {
    if (++depth_ > 16) return std::nullopt;
    std::optional<YAML::Node> v;
    if (at('{'))
      v = flow_map();
    else if (at('['))
      v = flow_seq();
    else if (at('"'))
      v = double_quoted();
    else if (at('\''))
      v = single_quoted();
    else
      v = plain(flow);
    --depth_;
    return v;
  }

  // "{ entry, ... }" or "[ entry, ... ]" with the cursor on the opening bracket: entry() parses one
  // entry at the cursor. No trailing comma (yaml-cpp's rules for those are its own).
  template <typename Entry>
  bool flow_items(char close, Entry entry) {
    ++pos_;
    skip_spaces();
    for (bool first = true;; first = false) {
      if (at(close)) {
        ++pos_;
        return true;
      }
      if (!first) {
        if (!at(',')) return false;
        ++pos_;
        skip_spaces();
        if (at(close)) return false;
      }
      if (!entry()) return false;
      skip_spaces();
    }
  }

  std::optional<YAML::Node> flow_map() {
    YAML::Node m(YAML::NodeType::Map);
    std::vector<std::string> keys;
    bool ok = flow_items('}', [&] {
      size_t k = key_length(s_.substr(pos_));
      if (k == 0) return false;
      std::string key(s_.substr(pos_, k));
      pos_ += k + 1;  // the name and its ':'
      if (!at(' ')) return false;
      skip_spaces();
      auto v = value(true);
      if (!v || std::find(keys.begin(), keys.end(), key) != keys.end()) return false;
      keys.push_back(key);
      m[key] = *v;
      return true;
    });
    if (!ok) return std::nullopt;
    return m;
  }

  std::optional<YAML::Node> flow_seq() {
    YAML::Node s(YAML::NodeType::Sequence);
    bool ok = flow_items(']', [&] {
      auto v = value(true);
      if (!v) return false;
      s.push_back(*v);
      return true;
    });
    if (!ok) return std::nullopt;
    return s;
  }

  std::optional<YAML::Node> double_quoted() {
    std::string out;
    for (++pos_; pos_ < s_.size(); ++pos_) {
      char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return scalar_node(out, false);
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (++pos_ >= s_.size()) return std::nullopt;
      switch (s_[pos_]) {
        case '\\':
          out += '\\';
          break;
        case '"':
          out += '"';
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        default:
          return std::nullopt;  // the rest of YAML's escapes: yaml-cpp
      }
    }
    return std::nullopt;  // not closed on this line
  }

  std::optional<YAML::Node> single_quoted() {
    std::string out;
    for (++pos_; pos_ < s_.size(); ++pos_) {
      if (s_[pos_] != '\'') {
        out += s_[pos_];
        continue;
      }
      if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '\'') {
        out += '\'';
        ++pos_;
        continue;
      }
      ++pos_;
      return scalar_node(out, false);
    }
    return std::nullopt;
  }

  std::optional<YAML::Node> plain(bool flow) {
    if (pos_ >= s_.size()) return std::nullopt;
    char first = s_[pos_];
    // Indicators that start something else (or need YAML's finer rules): yaml-cpp.
    if (std::string_view("-?:,[]{}#&*!|>'\"%@`").find(first) != std::string_view::npos) return std::nullopt;
    size_t start = pos_;
    for (; pos_ < s_.size(); ++pos_) {
      char c = s_[pos_];
      if (c == '#' && s_[pos_ - 1] == ' ') break;
      if (flow && (c == ',' || c == ']' || c == '}')) break;
      // Only the characters config values are made of; YAML gives the others (? [ ] { } # & * !
      // | > quotes, ...) meanings inside scalars too, and yaml-cpp has its own views on some.
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                std::string_view(" _-./@+=~:").find(c) != std::string_view::npos;
      if (!ok) return std::nullopt;
      // "a: b" inside a value is a mapping where none was expected; in a flow collection YAML's
      // rules for ':' are finer than this parser wants to know.
      if (c == ':' && (flow || pos_ + 1 == s_.size() || s_[pos_ + 1] == ' ')) return std::nullopt;
    }
    size_t end = pos_;
    while (end > start && s_[end - 1] == ' ') --end;
    if (end == start) return std::nullopt;
    return scalar_node(s_.substr(start, end - start), true);
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
};

class Block {
 public:
  explicit Block(std::vector<Line> lines) : lines_(std::move(lines)) {}

  std::optional<YAML::Node> document() {
    if (lines_.empty()) return YAML::Node();  // only comments and blank lines: null, as yaml-cpp
    size_t i = 0;
    auto root = node(i, lines_[0].indent);
    if (!root || i != lines_.size()) return std::nullopt;
    return root;
  }

 private:
  std::optional<YAML::Node> node(size_t& i, int indent) {
    if (++depth_ > 32) return std::nullopt;
    auto n = seq_item(lines_[i].text) ? sequence(i, indent) : mapping(i, indent);
    --depth_;
    return n;
  }

  // The value of "key:" or "-" with nothing after it on the line: the block below, if any.
  std::optional<YAML::Node> nested(size_t& i, int indent, bool allow_seq_at_same_indent) {
    if (i < lines_.size() && lines_[i].indent > indent) return node(i, lines_[i].indent);
    if (allow_seq_at_same_indent && i < lines_.size() && lines_[i].indent == indent &&
        seq_item(lines_[i].text))
      return sequence(i, indent);
    return YAML::Node(YAML::NodeType::Null);
  }

  // A one-line value; the next line must not be indented deeper (a multi-line scalar: yaml-cpp).
  std::optional<YAML::Node> one_line(size_t& i, int indent, std::string_view rest) {
    auto v = Inline(rest).whole();
    ++i;
    if (!v || (i < lines_.size() && lines_[i].indent > indent)) return std::nullopt;
    return v;
  }

  std::optional<YAML::Node> mapping(size_t& i, int indent) {
    YAML::Node m(YAML::NodeType::Map);
    std::vector<std::string> keys;
    while (i < lines_.size() && lines_[i].indent == indent && !seq_item(lines_[i].text)) {
      std::string_view t = lines_[i].text;
      size_t k = key_length(t);
      if (k == 0) return std::nullopt;
      std::string key(t.substr(0, k));
      for (const auto& seen : keys)
        if (seen == key) return std::nullopt;  // yaml-cpp keeps both; the loader reports it
      keys.push_back(key);
      std::string_view rest = t.substr(k + 1);
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      std::optional<YAML::Node> v;
      if (rest.empty() || rest.front() == '#') {
        ++i;
        v = nested(i, indent, true);
      } else {
        v = one_line(i, indent, rest);
      }
      if (!v) return std::nullopt;
      m[key] = *v;
    }
    if (i < lines_.size() && lines_[i].indent > indent) return std::nullopt;
    return m;
  }

  std::optional<YAML::Node> sequence(size_t& i, int indent) {
    YAML::Node s(YAML::NodeType::Sequence);
    while (i < lines_.size() && lines_[i].indent == indent && seq_item(lines_[i].text)) {
      std::string_view rest = lines_[i].text.substr(1);
      int col = indent + 1;
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1), ++col;
      std::optional<YAML::Node> v;
      if (rest.empty() || rest.front() == '#') {
        ++i;
        v = nested(i, indent, false);
      } else if (seq_item(rest)) {
        return std::nullopt;  // "- - x": yaml-cpp
      } else if (key_length(rest) > 0) {
        // "- key: value" opens a mapping whose keys line up with "key".
        lines_[i] = Line{col, rest};
        v = mapping(i, col);
      } else {
        v = one_line(i, indent, rest);
      }
      if (!v) return std::nullopt;
      s.push_back(*v);
    }
    if (i < lines_.size() && lines_[i].indent > indent) return std::nullopt;
    return s;
  }

  std::vector<Line> lines_;
  int depth_ = 0;
};

}  // namespace

std::optional<YAML::Node> fast_load(std::string_view text) {
  if (text.size() > 64 * 1024) return std::nullopt;
  std::vector<Line> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view raw = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    // Tabs, CR, NUL and other control characters anywhere, comments included (yaml-cpp ends the
    // stream at a NUL: found by fuzz/config_fuzz), and non-ASCII bytes outside a comment: yaml-cpp.
    for (char c : raw) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) return std::nullopt;
    }
    size_t ind = raw.find_first_not_of(' ');
    if (ind == std::string_view::npos || raw[ind] == '#') continue;  // blank or comment only
    for (size_t j = 0; j < raw.size() && !(raw[j] == '#' && j > 0 && raw[j - 1] == ' '); ++j)
      if (static_cast<unsigned char>(raw[j]) >= 0x80) return std::nullopt;
    std::string_view t = raw.substr(ind);
    while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
    if (t.rfind("---", 0) == 0 || t.rfind("...", 0) == 0 || t[0] == '%') return std::nullopt;  // documents
    lines.push_back(Line{static_cast<int>(ind), t});
  }
  return Block(std::move(lines)).document();
}

bool same_tree(const YAML::Node& a, const YAML::Node& b) {
  if (a.Type() != b.Type()) return false;
  switch (a.Type()) {
    case YAML::NodeType::Scalar:
      return a.Scalar() == b.Scalar();
    case YAML::NodeType::Sequence:
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i)
        if (!same_tree(a[i], b[i])) return false;
      return true;
    case YAML::NodeType::Map: {
      if (a.size() != b.size()) return false;
      auto ia = a.begin();
      auto ib = b.begin();
      for (; ia != a.end() && ib != b.end(); ++ia, ++ib)
        if (!same_tree(ia->first, ib->first) || !same_tree(ia->second, ib->second)) return false;
      return true;
    }
    default:
      return true;
  }
}

}  // namespace spoold::config
