// tests/listener/clients.h — what the listener and local-mail tests share: a daemon with one
// listener on a free port, the SMTP clients of smtp_client.py, and child processes run to their
// end with a bounded wait (stdin from a string when given).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "control/json.h"
#include "tests/daemon/harness.h"

namespace spoold::test::listener {

struct Run {
  int status = -1;  // exit code, or -1 when it did not end in time
  std::string out, err;
};
Run run(const TempDir& dir, std::vector<std::string> argv,
        std::chrono::milliseconds timeout = std::chrono::seconds(60), const std::string* input = nullptr);

std::string client_script();                      // tests/listener/smtp_client.py
std::string ctl_binary(const std::string& name);  // the built spoolctl / sendmail / mailq / newaliases
std::vector<control::Json> json_lines(const std::string& text);
std::string hex(const std::string& s);
std::string queue_id(const std::string& reply);  // from "… queued as ID"
control::Json status(const Env& env);            // spoolctl status --json

// A daemon with one listener on a free port; `listen_extra` goes into its listen[] entry.
struct ListenEnv {
  int port;
  Env env;
  explicit ListenEnv(const std::string& listen_extra = "", const std::string& extra_yaml = "",
                     std::vector<std::string> sink_args = {});  // sink_args: smtp_sink.py options
  void start();
  std::vector<control::Json> send(std::vector<std::string> args);  // smtp_client.py send
  control::Json raw(const std::vector<std::string>& chunks, const std::vector<std::string>& extra = {});
};

}  // namespace spoold::test::listener
