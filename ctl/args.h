// ctl/args.h — command lines of the personalities of one binary: spoolctl, sendmail, mailq,
// newaliases.
// Rule: pure functions (no I/O); a usage error is an Error whose message says what was wrong, and
// the caller maps it to exit code 2 (spoolctl, mailq) or 64 EX_USAGE (sendmail).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace spoold::ctl {

enum class Personality { spoolctl, sendmail, mailq, newaliases };
// By the basename of argv[0]: "sendmail" (also "sendmail.spoold" etc.), "mailq", "newaliases",
// else spoolctl.
Personality personality_of(std::string_view argv0);

// spoolctl [--config FILE] COMMAND [ARGS] [--json]
struct CtlArgs {
  std::string config;   // --config; "" = $SPOOLD_CONFIG or the default path
  bool json = false;    // --json
  bool help = false;    // -h / --help
  std::string command;  // status list show flush hold release delete bounce requeue send watch
  std::optional<int> tier;
  std::string domain;
  std::string place;  // list --place queue|hold|failed
  std::optional<int> limit;
  std::vector<std::string> ids;
  std::vector<std::string> send_args;  // `send …`: the rest, read as sendmail arguments
  std::string send_mode;               // send --mode deferred|interactive|background ("" = deferred)
  std::optional<std::chrono::milliseconds> send_timeout;  // send --timeout T
};

Result<CtlArgs> parse_ctl_args(const std::vector<std::string>& args);  // args without argv[0]
// mailq [-C FILE] [--config FILE] [--json]: the same as `spoolctl list`.
Result<CtlArgs> parse_mailq_args(const std::vector<std::string>& args);

// newaliases [-C FILE | --config FILE]: the config file ("" = the default); -v is accepted.
struct NewaliasesArgs {
  std::string config;
  bool help = false;
};
Result<NewaliasesArgs> parse_newaliases_args(const std::vector<std::string>& args);

// What a sendmail command line asks for: -bm (the default), -bp, -q, -bi, -bs (SMTP on stdin/stdout).
enum class SendmailMode { deliver, list, flush, newaliases, smtp };

// How long a submission waits (docs/design.md "Submission modes"): deferred returns once the
// message is durable; interactive and background wait for its outcome (-odi / -odb).
enum class SubmitMode { deferred, interactive, background };

struct SendmailArgs {
  SendmailMode mode = SendmailMode::deliver;
  SubmitMode submit = SubmitMode::deferred;  // -odq / -odi / -odb
  std::chrono::milliseconds wait_timeout{std::chrono::minutes(2)};
  std::string config;                 // -C FILE
  bool extract = false;               // -t: recipients from To/Cc/Bcc (added to any given here)
  bool ignore_dots = false;           // -i / -oi: a line with only "." does not end the message
  std::optional<std::string> sender;  // -f / -r (may be "" or "<>": the null sender)
  std::string full_name;              // -F
  std::string dsn_notify;             // -N: canonical NOTIFY for every recipient ("" = not given)
  std::string dsn_ret;                // -R: "FULL" or "HDRS"
  std::string dsn_envid;              // -V: the envelope id
  std::vector<std::string> recipients;
  std::vector<std::string> warnings;  // options accepted but ignored, one message each
};

// Traditional sendmail option syntax: clustered flags (-ti), values attached or separate
// (-fme / -f me), -o<x> and -b<x> taking the rest of their word, "--" ending the options.
Result<SendmailArgs> parse_sendmail_args(const std::vector<std::string>& args);

std::string_view spoolctl_usage();
std::string_view sendmail_usage();

}  // namespace spoold::ctl
