// ctl/app.h — the three programs of the spoolctl binary (main.cpp picks one by argv[0]).
// Rule: each returns its exit code and prints its own messages: spoolctl/mailq 0 ok, 1 failure,
// 2 usage; sendmail uses sysexits (64 usage, 65 data, 75 temporary, 78 config).
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

// Shared by the three: runs a parsed spoolctl command (also `sendmail -bp` and `-q`).
int run_command(const CtlArgs& args, const char* prog);
// Submits stdin as sendmail would; config_flag is spoolctl's --config for `spoolctl send`.
int run_sendmail(const SendmailArgs& args, const std::string& config_flag);

// The config the programs use: --config / -C, else $SPOOLD_CONFIG, else the default path; when
// running set-uid only the default path is trusted.
Result<config::Config> load_config(const std::string& flag, const char* prog);

}  // namespace spoold::ctl
