// ctl/args.cpp — see args.h. Tables name every command and every sendmail option we know, so an
// option is either understood, knowingly ignored (with a warning), or a usage error.
#include "ctl/args.h"

#include <algorithm>
#include <array>
#include <charconv>

#include <fmt/format.h>

#include "common/ascii.h"
#include "config/config.h"
#include "spool/dsn.h"

namespace spoold::ctl {
namespace {

enum class IdRule { none, one, any, some };  // ids a command takes: 0, exactly 1, 0..n, 1..n

struct CommandSpec {
  std::string_view name;
  IdRule ids;
  bool filters;  // --tier / --domain (and for list --place / --limit)
};

constexpr std::array<CommandSpec, 12> kCommands{{
    {"status", IdRule::none, false},
    {"list", IdRule::none, true},
    {"show", IdRule::one, false},
    {"flush", IdRule::any, true},
    {"hold", IdRule::some, false},
    {"release", IdRule::some, false},
    {"delete", IdRule::some, false},
    {"bounce", IdRule::some, false},
    {"requeue", IdRule::some, false},
    {"reload", IdRule::none, false},
    {"send", IdRule::any, false},
    {"watch", IdRule::any, false},
}};

const CommandSpec* find_command(std::string_view name) {
  for (const auto& c : kCommands)
    if (c.name == name) return &c;
  return nullptr;
}

Result<int> parse_count(std::string_view flag, std::string_view text) {
  int v = -1;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 0)
    return make_error(fmt::format("{} needs a non-negative number, not '{}'", flag, text));
  return v;
}

// "--name=value" or "--name value": the value, advancing i past it.
Result<std::string> option_value(const std::vector<std::string>& args, size_t& i, std::string_view name) {
  const std::string& a = args[i];
  if (a.size() > name.size() && a[name.size()] == '=') return a.substr(name.size() + 1);
  if (i + 1 >= args.size()) return make_error(fmt::format("{} needs a value", name));
  return args[++i];
}

bool is_option(const std::string& a, std::string_view name) {
  return a == name ||
         (a.size() > name.size() && a.compare(0, name.size(), name) == 0 && a[name.size()] == '=');
}

Result<void> ctl_option(const std::vector<std::string>& args, size_t& i, CtlArgs& out) {
  const std::string& a = args[i];
  if (a == "--json") {
    out.json = true;
  } else if (a == "-h" || a == "--help") {
    out.help = true;
  } else if (is_option(a, "--config")) {
    auto v = option_value(args, i, "--config");
    if (!v) return v.error();
    out.config = *v;
  } else if (is_option(a, "--tier") || is_option(a, "--limit")) {
    std::string name = a.substr(0, a.find('='));
    auto v = option_value(args, i, name);
    if (!v) return v.error();
    auto n = parse_count(name, *v);
    if (!n) return n.error();
    (name == "--tier" ? out.tier : out.limit) = *n;
  } else if (is_option(a, "--domain") || is_option(a, "--place")) {
    std::string name = a.substr(0, a.find('='));
    auto v = option_value(args, i, name);
    if (!v) return v.error();
    if (v->empty()) return make_error(name + " needs a value");
    (name == "--domain" ? out.domain : out.place) = *v;
  } else {
    return make_error("unknown option " + a);
  }
  return {};
}

Result<void> check_command(const CtlArgs& a) {
  const CommandSpec* spec = find_command(a.command);
  if (!spec) return make_error("unknown command '" + a.command + "'");
  bool filtered = a.tier || !a.domain.empty();
  if (!spec->filters && (filtered || !a.place.empty() || a.limit))
    return make_error(a.command + " takes no --tier/--domain/--place/--limit");
  if (a.command != "list" && (!a.place.empty() || a.limit))
    return make_error("--place and --limit are for list");
  if (!a.place.empty() && a.place != "queue" && a.place != "hold" && a.place != "failed" &&
      a.place != "incoming")
    return make_error("--place must be queue, hold, failed or incoming");
  switch (spec->ids) {
    case IdRule::none:
      if (!a.ids.empty()) return make_error(a.command + " takes no message ids");
      break;
    case IdRule::one:
      if (a.ids.size() != 1) return make_error(a.command + " takes exactly one message id");
      break;
    case IdRule::some:
      if (a.ids.empty()) return make_error(a.command + " needs at least one message id");
      break;
    case IdRule::any:
      if (filtered && !a.ids.empty()) return make_error("give message ids or --tier/--domain, not both");
      break;
  }
  return {};
}

// One word of a sendmail command line that starts with '-'. `i` is advanced past any value taken
// from the next word.
class SendmailOptionParser {
 public:
  SendmailOptionParser(const std::vector<std::string>& args, SendmailArgs& out) : args_(args), out_(out) {}

  Result<void> word(size_t& i) {
    const std::string& w = args_[i];
    for (size_t k = 1; k < w.size(); ++k) {
      char f = w[k];
      std::string rest = w.substr(k + 1);
      if (f == 'o') return o_option(rest);
      if (f == 'b') return b_option(rest);
      if (takes_value(f)) {
        auto v = value(i, rest, f);
        if (!v) return v.error();
        return valued(f, *v);
      }
      if (auto r = flag(f); !r) return r;
    }
    return {};
  }

 private:
  static bool takes_value(char f) {
    return std::string_view("fFrCBNRVLXhOpAq").find(f) != std::string_view::npos;
  }

  Result<std::string> value(size_t& i, const std::string& rest, char f) {
    if (f == 'q' || f == 'A') return rest;  // -q[time], -Am / -Ac: the value is optional and attached
    if (!rest.empty()) return rest;
    if (i + 1 >= args_.size()) return make_error(fmt::format("option -{} needs a value", f));
    return args_[++i];
  }

  Result<void> valued(char f, const std::string& v) {
    switch (f) {
      case 'f':
      case 'r':
        out_.sender = v;
        return {};
      case 'F':
        out_.full_name = v;
        return {};
      case 'C':
        out_.config = v;
        return {};
      case 'N':
        return notify(v);
      case 'R': {
        std::string ret = ascii_upper(v);
        if (!spool::valid_ret(ret)) return make_error("-R takes full or hdrs, not '" + v + "'");
        out_.dsn_ret = std::move(ret);
        return {};
      }
      case 'V':
        if (!spool::valid_envid(v))
          return make_error("-V takes an envelope id of 1 to 100 printable ASCII characters");
        out_.dsn_envid = v;
        return {};
      case 'q':
        out_.mode = SendmailMode::flush;
        if (!v.empty()) ignored(fmt::format("-q{}", v));
        return {};
      default:
        ignored(fmt::format("-{} {}", f, v));
        return {};
    }
  }

  Result<void> flag(char f) {
    switch (f) {
      case 't':
        out_.extract = true;
        return {};
      case 'i':
        out_.ignore_dots = true;
        return {};
      default:
        // -v -U -G -n -m -x -e -d and anything else a legacy caller may pass.
        ignored(fmt::format("-{}", f));
        return {};
    }
  }

  // -oi means -i; -odq/-odi/-odb choose how long to wait; -oem, -oX… and friends are about a
  // sendmail we are not.
  Result<void> o_option(const std::string& rest) {
    if (rest.empty()) return make_error("option -o needs a letter (e.g. -oi)");
    if (rest == "i") {
      out_.ignore_dots = true;
      return {};
    }
    if (rest == "dq" || rest == "di" || rest == "db") {
      out_.submit = rest == "di"   ? SubmitMode::interactive
                    : rest == "db" ? SubmitMode::background
                                   : SubmitMode::deferred;
      return {};
    }
    ignored("-o" + rest);
    return {};
  }

  Result<void> b_option(const std::string& rest) {
    if (rest == "m") {
      out_.mode = SendmailMode::deliver;
    } else if (rest == "p") {
      out_.mode = SendmailMode::list;
    } else if (rest == "i") {
      out_.mode = SendmailMode::newaliases;
    } else if (rest == "s") {
      out_.mode = SendmailMode::smtp;
    } else {
      return make_error(fmt::format("-b{} is not supported (only -bm, -bs, -bp and -bi)", rest));
    }
    return {};
  }

  // -N never | -N success,delay,failure (any case; Postfix also allows spaces after the commas).
  Result<void> notify(const std::string& v) {
    std::string list;
    for (char c : v)
      if (c != ' ' && c != '\t') list += c;
    auto n = spool::canonical_notify(list);
    if (!n) return make_error("-N: " + n.error().message + " (never, or success, delay, failure)");
    out_.dsn_notify = std::move(*n);
    return {};
  }

  void ignored(const std::string& what) { out_.warnings.push_back("ignoring option " + what); }

  const std::vector<std::string>& args_;
  SendmailArgs& out_;
};

}  // namespace

Personality personality_of(std::string_view argv0) {
  auto slash = argv0.rfind('/');
  std::string_view base = slash == std::string_view::npos ? argv0 : argv0.substr(slash + 1);
  if (base.starts_with("sendmail")) return Personality::sendmail;
  if (base.starts_with("mailq")) return Personality::mailq;
  if (base.starts_with("newaliases")) return Personality::newaliases;
  return Personality::spoolctl;
}

Result<CtlArgs> parse_ctl_args(const std::vector<std::string>& args) {
  CtlArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (out.command == "send") {  // everything after `send` belongs to the sendmail parser
      if (is_option(a, "--mode") || is_option(a, "--timeout")) {  // … but these two
        std::string name = a.substr(0, a.find('='));
        auto v = option_value(args, i, name);
        if (!v) return v.error();
        if (name == "--mode") {
          if (*v != "deferred" && *v != "interactive" && *v != "background")
            return make_error("--mode must be deferred, interactive or background, not '" + *v + "'");
          out.send_mode = *v;
        } else {
          auto d = config::parse_duration(*v);
          if (!d || d->count() <= 0)
            return make_error("--timeout needs a duration such as 90s or 2m, not '" + *v + "'");
          out.send_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
        }
        continue;
      }
      out.send_args.push_back(a);
      continue;
    }
    if (a.size() > 1 && a[0] == '-') {
      if (auto r = ctl_option(args, i, out); !r) return r.error();
    } else if (out.command.empty()) {
      out.command = a;
    } else {
      out.ids.push_back(a);
    }
  }
  if (out.help) return out;
  if (out.command.empty()) return make_error("no command given");
  if (out.send_timeout && out.send_mode.empty())
    return make_error("--timeout is for --mode interactive|background");
  if (auto r = check_command(out); !r) return r.error();
  return out;
}

Result<CtlArgs> parse_mailq_args(const std::vector<std::string>& args) {
  CtlArgs out;
  out.command = "list";
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-C") {
      if (i + 1 >= args.size()) return make_error("-C needs a file");
      out.config = args[++i];
    } else if (a == "-v") {
      continue;
    } else if (auto r = ctl_option(args, i, out); !r) {
      return r.error();
    }
  }
  if (auto r = check_command(out); !r) return r.error();
  return out;
}

Result<NewaliasesArgs> parse_newaliases_args(const std::vector<std::string>& args) {
  NewaliasesArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-C" || a == "--config") {
      if (i + 1 >= args.size()) return make_error(a + " needs a file");
      out.config = args[++i];
    } else if (a.starts_with("--config=")) {
      out.config = a.substr(9);
    } else if (a == "-h" || a == "--help") {
      out.help = true;
    } else if (a != "-v") {  // sendmail's newaliases takes -v; there is nothing more to say
      return make_error(fmt::format("unknown argument '{}'", a));
    }
  }
  return out;
}

Result<SendmailArgs> parse_sendmail_args(const std::vector<std::string>& args) {
  SendmailArgs out;
  SendmailOptionParser opts(args, out);
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!options_done && a == "--") {
      options_done = true;
    } else if (!options_done && a.size() > 1 && a[0] == '-') {
      if (auto r = opts.word(i); !r) return r.error();
    } else {
      out.recipients.push_back(a);
    }
  }
  if (out.mode == SendmailMode::smtp && !out.recipients.empty())
    return make_error("-bs takes no recipients (they come with RCPT TO)");
  return out;
}

std::string_view spoolctl_usage() {
  return R"(usage: spoolctl [--config FILE] COMMAND [ARGS] [--json]
commands:
  status                                  queue counts per tier, oldest message, daemon state
  list [--tier N] [--domain D] [--place queue|hold|failed|incoming] [--limit N]
                                          messages, like mailq (incoming/ too)
  show ID                                 envelope, recipients, last replies, headers
  flush [--tier N] [--domain D] [ID...]   make deferred messages due now
  hold ID...      release ID...           take out of / put back into scheduling
  delete ID...                            remove messages
  bounce ID...                            return to sender now (needs the daemon)
  requeue ID...                           move failed messages back into the queue
  reload                                  make the daemon reread its config (needs the daemon)
  send [--mode deferred|interactive|background] [--timeout T] [sendmail options] [RCPT...]
                                          submit a message read from stdin (like sendmail);
                                          interactive/background wait for its outcome
  watch [ID...]                           outcome records as they happen (needs the daemon)
config: --config FILE, else $SPOOLD_CONFIG, else /etc/spoold/spoold.yaml
)";
}

std::string_view sendmail_usage() {
  return R"(usage: sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [-C CONFIG] [-N DSN] [-R full|hdrs]
                [-V ENVID] [-odq|-odi|-odb] [--] [RCPT...]
       sendmail -bs   (SMTP on stdin/stdout)
       sendmail -bp   (= mailq)        sendmail -q   (= spoolctl flush)
reads a message on stdin; without -i a line with only "." ends it
)";
}

}  // namespace spoold::ctl
