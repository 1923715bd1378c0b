// ctl/app.h — the programs of the spoolctl binary (main.cpp picks one by argv[0]).
// Rule: each returns its exit code and prints its own messages: spoolctl/mailq/newaliases 0 ok,
// 1 failure, 2 usage; sendmail uses sysexits (64 usage, 65 data, 75 temporary, 78 config).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "ctl/args.h"

namespace spoold::ctl {

inline constexpr int kExConfig = 78;

int spoolctl_main(const std::vector<std::string>& args);
int mailq_main(const std::vector<std::string>& args);
int sendmail_main(const std::vector<std::string>& args);
int newaliases_main(const std::vector<std::string>& args);

// Shared by the three: runs a parsed spoolctl command (also `sendmail -bp` and `-q`).
int run_command(const CtlArgs& args, const char* prog);
// Submits stdin as sendmail would; config_flag is spoolctl's --config for `spoolctl send`.
// failed_code: the exit code when a waiting submission (-odi/-odb) saw a recipient fail
// permanently (69 EX_UNAVAILABLE for sendmail, 1 for spoolctl).
int run_sendmail(const SendmailArgs& args, const std::string& config_flag, int failed_code = 69);
// `sendmail -bs`: SMTP on stdin/stdout (ctl/smtp_stdio.cpp); 0 after QUIT.
int run_sendmail_smtp(const SendmailArgs& args, const std::string& config_flag);
// Checks the config's aliases and aliases_file (newaliases, sendmail -bi): 0 valid, 1 not.
int run_newaliases(const std::string& config_flag, const char* prog);

// The config the programs use: --config / -C, else $SPOOLD_CONFIG, else the default path; when
// running set-uid only the default path is trusted. aliases_file is only read when asked: the
// programs that submit or inspect mail must work whatever its state (config::LoadOptions).
// quiet: say nothing on stderr while all is well (sendmail -bs; a set-uid run's ignored config).
Result<config::Config> load_config(const std::string& flag, const char* prog, bool read_aliases_file = false,
                                   bool quiet = false);

// Who runs sendmail (the real uid: a set-uid run still names the caller).
struct LocalSubmitter {
  std::string user;  // login name, or "uid<N>" without a passwd entry
  long uid = -1;
};
LocalSubmitter local_submitter();
// Creates the spool layout when a drop arrives before spoold ever ran; call as the spool owner.
Result<void> ensure_spool_layout(const config::Config& cfg);

}  // namespace spoold::ctl
