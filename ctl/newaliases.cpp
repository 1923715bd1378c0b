// ctl/newaliases.cpp — the newaliases personality (and sendmail -bi): spoold keeps no alias
// database, it reads aliases_file whenever it loads its config; so newaliases checks what the
// daemon would load and says what is wrong, one "file:line:col: what" line per problem.
// Rule: exit 0 only when the daemon would take this config and its aliases; 1 otherwise (as
// Postfix's newaliases does on a fatal error); 2 for a bad command line.
#include <cstdio>
#include <sstream>

#include <fmt/format.h>

#include "ctl/app.h"
#include "ctl/privileges.h"

namespace spoold::ctl {

int run_newaliases(const std::string& config_flag, const char* prog) {
  // Reading needs no privilege, and a set-uid run must not read files for the caller.
  if (auto r = drop_setuid(); !r) {
    std::fprintf(stderr, "%s: %s\n", prog, r.error().message.c_str());
    return 1;
  }
  auto cfg = load_config(config_flag, prog, true);
  if (!cfg) {
    std::istringstream lines(cfg.error().message);
    for (std::string line; std::getline(lines, line);) std::fprintf(stderr, "%s\n", line.c_str());
    return 1;
  }
  for (const auto& w : cfg->warnings) std::fprintf(stderr, "%s: warning: %s\n", prog, w.c_str());
  std::size_t total = cfg->aliases.size(), from_file = cfg->aliases_from_file;
  if (cfg->aliases_file.empty())
    fmt::print("{} aliases (from {}; no aliases_file)\n", total, cfg->source);
  else
    fmt::print("{} aliases ({} from {}, {} from {})\n", total, from_file, cfg->aliases_file,
               total - from_file, cfg->source);
  return 0;
}

int newaliases_main(const std::vector<std::string>& args) {
  constexpr std::string_view usage =
      "usage: newaliases [-C FILE | --config FILE]\n"
      "checks the config's aliases and aliases_file as spoold would load them\n";
  auto a = parse_newaliases_args(args);
  if (!a) {
    std::fprintf(stderr, "newaliases: %s\n%.*s", a.error().message.c_str(), static_cast<int>(usage.size()),
                 usage.data());
    return 2;
  }
  if (a->help) {
    std::fwrite(usage.data(), 1, usage.size(), stdout);
    return 0;
  }
  return run_newaliases(a->config, "newaliases");
}

}  // namespace spoold::ctl
