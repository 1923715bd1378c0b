// tests/reliability/rel_util.h — what the reliability tests share on top of the daemon harness:
// messages with unique Message-IDs, counting them at the sink, running spoold with extra
// environment (crash points, faketime), and auditing a spool for leftovers.
// Rule: every count is derived from what the real sink wrote and what is really on disk.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tests/daemon/harness.h"

namespace spoold::test::rel {

// An envelope-first drop file whose message carries "Message-ID: <MID>".
std::string message(const std::string& mid, const std::string& from, const std::vector<std::string>& rcpts,
                    const std::string& body = "Hello.\n");

// The Message-ID header of a received message (top-level header section only), "" if none.
std::string message_id(const std::string& data);

// How often each Message-ID arrived at the sink (recipients are counted once per message file).
std::map<std::string, int> message_id_counts(const Sink& sink);

// spoold --config CFG [args] with extra "K=V" environment entries; returns the exit status as
// Env::run_once does (128+signal when killed, -1 on timeout). The log goes to log_path.
int run_spoold(const std::string& config, const std::vector<std::string>& args,
               const std::vector<std::string>& env, const std::string& log_path,
               std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Every file under the spool that is not a directory, relative to it ("queue/0/…", "data/…").
std::vector<std::string> spool_files(const std::string& spool);

// Files that must not survive a finished run: anything in incoming/, queue/*, hold/, bad/, tmp/,
// any lock artefact, and bodies in data/ that no failed/ entry refers to (usage/<instance>, the
// usage totals, are kept).
std::vector<std::string> leftovers(const std::string& spool);

// VmRSS of a live process in KiB (0 if unreadable).
long rss_kib(int pid);

// Adds a first route in env's config: `domain` goes to 127.0.0.1:port (the rest still to the sink).
void route_domain(const Env& env, const std::string& domain, int port, const std::string& host = "127.0.0.1");

// The pid of the first process whose command line contains `needle` (0 if none).
int find_pid(const std::string& needle);

std::string join(const std::vector<std::string>& v, const std::string& sep = ", ");

}  // namespace spoold::test::rel

namespace spoold::test::rel {

// A config for one more daemon on env's spool: its own instance name and control socket, and the
// sink's port replaced by `port` when non-zero (a route to another server). Returns its path.
std::string instance_config(const Env& env, const std::string& instance, int port = 0);

// A spoold started with `config` and extra environment (e.g. faketime_env("+1h")).
// Waits for its control socket; killed (SIGKILL) on destruction if still running.
class Daemon {
 public:
  Daemon(const Env& env, const std::string& instance, const std::string& config,
         const std::vector<std::string>& environment = {});
  int pid() const { return proc_->pid(); }
  Process& process() { return *proc_; }
  std::string log() const { return read_file(log_); }

 private:
  std::string log_;
  std::unique_ptr<Process> proc_;
};

// hostile_smtp.py in one mode, listening on a loopback port (a free one when port is 0); its event
// log is log(). Without `probe` it waits for the ready file only, so every "connect" in its log
// is a client's (the port probe connects too).
class HostileServer {
 public:
  HostileServer(const TempDir& dir, const std::string& mode, const std::vector<std::string>& extra = {},
                const std::string& host = "127.0.0.1", int port = 0, bool probe = true);
  int port() const { return port_; }
  std::string log() const { return read_file(log_); }
  size_t count(const std::string& event) const;  // lines with this event

 private:
  int port_;
  std::string log_;
  std::unique_ptr<Process> proc_;
};

// Lock files in data/ and the instance named in each (first field of the lock file).
std::map<std::string, std::string> lock_owners(const std::string& spool);

// Sink arrival time (unix seconds, from the .json file's mtime) of each Message-ID, first arrival.
std::map<std::string, double> arrival_times(const std::string& sink_dir);

double now_unix();

// Environment that runs a program under libfaketime with this offset ("+1h", "-1h"). Preloaded
// directly: the faketime(1) wrapper forks, and a kill would hit the wrapper, not the daemon.
std::vector<std::string> faketime_env(const std::string& offset);

}  // namespace spoold::test::rel
