// config/aliases.cpp — the aliases(5) parser (Postfix's reading of the format: continuation
// lines, whole-line comments, blank lines ignored even inside an entry) and the loop finder.
#include "config/aliases.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "common/ascii.h"
#include "common/mailbox.h"
#include "common/unique_fd.h"
#include "config/local_mail.h"

namespace spoold::config {
namespace {

// A byte of a logical entry and where it stood in the file.
struct Char {
  char c;
  int line, column;
};
using Entry = std::vector<Char>;

constexpr size_t kMaxErrors = 100;  // a binary file named by mistake must not flood the terminal

bool blank(char c) {
  return c == ' ' || c == '\t';
}

// Bytes of the file quoted in a message: control characters and 8-bit bytes as \xNN.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

std::string text_of(const Entry& e, size_t from, size_t to) {
  std::string s;
  for (size_t i = from; i < to; ++i) s += e[i].c;
  return s;
}

// [from, to) without the blanks at either end.
void trim(const Entry& e, size_t& from, size_t& to) {
  while (from < to && blank(e[from].c)) ++from;
  while (to > from && blank(e[to - 1].c)) --to;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && ascii_iequals(s.substr(0, prefix.size()), prefix);
}

class Parser {
 public:
  explicit Parser(const std::string& file) : file_(file) {}

  Result<std::vector<AliasEntry>> run(std::string_view text) {
    Entry entry;
    int line = 0;
    size_t pos = 0;
    while (pos < text.size() && errors_.size() < kMaxErrors) {
      size_t eol = text.find('\n', pos);
      std::string_view l =
          text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
      pos = eol == std::string_view::npos ? text.size() : eol + 1;
      ++line;
      if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
      size_t first = 0;
      while (first < l.size() && blank(l[first])) ++first;
      if (first == l.size() || l[first] == '#') continue;
      if (first > 0) {
        if (entry.empty()) {
          error(line, static_cast<int>(first) + 1,
                "a continuation line (starting with white space) without an alias before it");
          continue;
        }
        entry.push_back({' ', entry.back().line, entry.back().column + 1});  // the line break
      } else {
        finish(entry);
        entry.clear();
      }
      for (size_t i = 0; i < l.size(); ++i) entry.push_back({l[i], line, static_cast<int>(i) + 1});
    }
    if (errors_.size() < kMaxErrors) finish(entry);
    if (errors_.size() >= kMaxErrors) errors_.push_back(fmt::format("{}: too many errors; giving up", file_));
    if (!errors_.empty()) {
      std::string all;
      for (const auto& e : errors_) all += (all.empty() ? "" : "\n") + e;
      return make_error(all);
    }
    return std::move(out_);
  }

 private:
  void error(int line, int column, const std::string& what) {
    errors_.push_back(fmt::format("{}:{}:{}: {}", file_, line, column, what));
  }
  void error(const Char& at, const std::string& what) { error(at.line, at.column, what); }

  // Index of the first `stop` outside double quotes at or after `from`, else e.size(); an
  // unterminated quote is reported and ends the scan.
  size_t find_unquoted(const Entry& e, size_t from, char stop, bool& ok) {
    bool quoted = false;
    size_t open = 0;
    for (size_t i = from; i < e.size(); ++i) {
      char c = e[i].c;
      if (quoted && c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = !quoted;
        open = i;
      } else if (!quoted && c == stop) {
        return i;
      }
    }
    if (quoted) {
      error(e[open], "unterminated quoted string");
      ok = false;
    }
    return e.size();
  }

  void finish(const Entry& e) {
    if (e.empty()) return;
    bool ok = true;
    size_t colon = find_unquoted(e, 0, ':', ok);
    if (!ok) return;
    if (colon == e.size()) return error(e.front(), "expected 'name: address, ...'");
    size_t from = 0, to = colon;
    trim(e, from, to);
    if (from == to) return error(e[colon], "no alias name before ':'");
    std::string name = text_of(e, from, to);
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"' &&
        mailbox::valid_dot_string(std::string_view(name).substr(1, name.size() - 2)))
      name = name.substr(1, name.size() - 2);
    if (name.find('@') != std::string::npos)
      return error(e[from], fmt::format("'{}': an alias is a local name, without '@'", printable(name)));
    if (!mailbox::valid_dot_string(name))
      return error(e[from], fmt::format("'{}' is not a local name", printable(name)));
    AliasEntry entry{ascii_lower(name), {}, e[from].line, e[from].column};
    if (auto seen = first_line_.find(entry.name); seen != first_line_.end())
      return error(e[from],
                   fmt::format("duplicate alias '{}' (first at line {}; names are compared without case)",
                               printable(name), seen->second));
    bool targets_ok = true;
    for (size_t start = colon + 1; start < e.size() && ok;) {
      size_t comma = find_unquoted(e, start, ',', ok);
      if (!ok) return;
      size_t tf = start, tt = comma;
      trim(e, tf, tt);
      start = comma + 1;
      if (tf == tt) continue;  // "a, , b" and a trailing comma: nothing to deliver, nothing lost
      std::string t = text_of(e, tf, tt);
      if (auto why = target_error(t)) {
        error(e[tf], *why);
        targets_ok = false;
        continue;
      }
      if (t.find('@') == std::string::npos) t = ascii_lower(t);
      entry.targets.push_back(std::move(t));
    }
    if (!targets_ok) return;
    if (entry.targets.empty()) return error(e[colon], fmt::format("'{}' has no addresses", printable(name)));
    first_line_[entry.name] = entry.line;
    out_.push_back(std::move(entry));
  }

  // Why `t` cannot be a target, or nullopt.
  static std::optional<std::string> target_error(const std::string& t) {
    std::string_view bare = t;
    if (bare.size() > 1 && bare.front() == '"') bare.remove_prefix(1);  // "|cmd arg" is a command too
    if (bare.front() == '|')
      return fmt::format("'{}': delivery to a command is not supported (spoold only forwards mail)",
                         printable(t));
    if (bare.front() == '/')
      return fmt::format("'{}': delivery to a file is not supported (spoold only forwards mail)",
                         printable(t));
    if (starts_with_ci(bare, ":include:"))
      return fmt::format("'{}': include files are not supported (list the addresses here)", printable(t));
    if (bare.front() == '\\')
      return fmt::format("'{}': local delivery is not supported (spoold has no mailboxes; name an address)",
                         printable(t));
    bool ok = t.find('@') != std::string::npos ? mailbox::valid_mailbox(t) : mailbox::valid_dot_string(t);
    if (!ok) return fmt::format("'{}' is not a mailbox (local@domain) or a local name", printable(t));
    return std::nullopt;
  }

  const std::string& file_;
  std::vector<std::string> errors_;
  std::vector<AliasEntry> out_;
  std::map<std::string, int> first_line_;
};

}  // namespace

Result<std::vector<AliasEntry>> parse_aliases(std::string_view text, const std::string& file) {
  return Parser(file).run(text);
}

Result<std::string> read_aliases_text(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd.valid()) return make_error(fmt::format("cannot read '{}': {}", path, std::strerror(errno)), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return make_error(fmt::format("cannot read '{}': {}", path, std::strerror(errno)), errno);
  if (!S_ISREG(st.st_mode)) return make_error(fmt::format("'{}' is not a regular file", path));
  if (static_cast<std::uint64_t>(st.st_size) > kMaxAliasesFile)
    return make_error(fmt::format("'{}' is too large ({} bytes, at most {})", path,
                                  static_cast<long long>(st.st_size), kMaxAliasesFile));
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(fmt::format("cannot read '{}': {}", path, std::strerror(errno)), errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  return data;
}

std::vector<AliasLoop> alias_loops(const AliasMap& aliases, const std::vector<std::string>& order,
                                   std::string_view hostname) {
  // Iterative: a long chain must not exhaust the stack.
  std::vector<AliasLoop> loops;
  std::map<std::string, int> state;  // absent: not seen; 1: on the path; 2: done
  for (const auto& start : order) {
    if (state.count(start) || !aliases.count(start)) continue;
    std::vector<std::pair<std::string, size_t>> path{{start, 0}};
    state[start] = 1;
    while (!path.empty()) {
      std::string from = path.back().first;
      size_t next = path.back().second++;
      const auto& targets = aliases.at(from);
      if (next >= targets.size()) {
        state[from] = 2;
        path.pop_back();
        continue;
      }
      auto t = local_name(targets[next], hostname);
      if (!t || !aliases.count(*t)) continue;
      auto seen = state.find(*t);
      if (seen == state.end()) {
        state[*t] = 1;
        path.emplace_back(*t, 0);
      } else if (seen->second == 1) {
        std::string chain;
        for (auto p = std::find_if(path.begin(), path.end(), [&](const auto& e) { return e.first == *t; });
             p != path.end(); ++p)
          chain += p->first + " -> ";
        loops.push_back({*t, chain + *t});
      }
    }
  }
  return loops;
}

}  // namespace spoold::config
