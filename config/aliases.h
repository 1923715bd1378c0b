// config/aliases.h — the aliases file (aliases_file, /etc/aliases syntax) and the alias graph.
// Rule: spoold only forwards: a target is a mailbox (local@domain) or another local name;
// "|command", "/file", ":include:" and "\name" (local delivery) are errors at file:line:col,
// never skipped. Errors are values: one "file:line:col: what" line per problem.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace spoold::config {

// Lower-case local name (no '@') → its targets: mailboxes as written, local names lower-cased.
using AliasMap = std::map<std::string, std::vector<std::string>>;

struct AliasEntry {
  std::string name;  // lower-case
  std::vector<std::string> targets;
  int line = 0;  // where the name stands, counted from 1
  int column = 0;
};

// aliases(5) syntax: "name: target, target" entries; a line starting with white space continues
// the entry before it; lines whose first non-blank character is '#' and blank lines are ignored;
// names are compared without case and may appear once. `file` only names the source in errors.
Result<std::vector<AliasEntry>> parse_aliases(std::string_view text, const std::string& file);

// The text of `path`: a regular file of at most kMaxAliasesFile bytes, so a load can neither hang
// on a FIFO nor exhaust memory. The error says what is wrong, without a position.
inline constexpr std::size_t kMaxAliasesFile = 16 * 1024 * 1024;
Result<std::string> read_aliases_text(const std::string& path);

// A cycle in the alias graph: `name` is where it closes, `chain` reads "a -> b -> a".
struct AliasLoop {
  std::string name;
  std::string chain;
};

// The loops of `aliases`, found depth-first from each name in `order` (the names as they were
// written); each edge back into the current path is one loop. A target is followed when it is
// local (a bare name, name@hostname or name@localhost) and has an alias itself.
std::vector<AliasLoop> alias_loops(const AliasMap& aliases, const std::vector<std::string>& order,
                                   std::string_view hostname);

}  // namespace spoold::config
