// tests/daemon/harness.h — a spool, a config, a real SMTP sink (aiosmtpd) and the real spoold
// binary, all on loopback in a temp dir. Every wait is bounded.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "control/json.h"
#include "tests/support/fixtures.h"

namespace spoold::test {

struct SinkMessage {
  control::Json meta;  // from, rcpts, peer, session, mail_options
  std::string data;    // the message as received
};

class Sink {
 public:
  explicit Sink(const std::string& dir, std::vector<std::string> extra_args = {},
                const std::string& host = "127.0.0.1", int port = 0);
  int port() const { return port_; }
  std::vector<SinkMessage> messages() const;
  size_t count() const;
  bool wait_count(size_t n, std::chrono::milliseconds timeout) const;
  size_t sessions() const;  // distinct SMTP sessions seen in accepted messages

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<Process> proc_;
};

class Env {
 public:
  // extra_yaml is appended to a base config (spool in the temp dir, short tiers, route to the sink).
  // sink_args go to the sink (e.g. "--no-pipelining").
  explicit Env(const std::string& extra_yaml = "", bool with_sink = true,
               std::vector<std::string> sink_args = {});
  ~Env();

  std::string spool() const { return dir_ / "spool"; }
  std::string config_path() const { return dir_ / "spoold.yaml"; }
  Sink& sink() { return *sink_; }
  const TempDir& dir() const { return dir_; }

  // Writes tmp/NAME then renames it into incoming/ (as a well-behaved producer does).
  void drop(const std::string& name, const std::string& content);
  // spoold --once; returns the exit status; the log is appended to log().
  int run_once(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Start/stop a long-running daemon.
  void start(std::vector<std::string> env = {});
  int stop(int sig = 15);
  void signal(int sig);  // to the running daemon
  int daemon_pid() const;
  std::string control_socket() const { return dir_ / "control.sock"; }
  std::string log() const;
  std::vector<std::string> entries(const std::string& place) const;  // names, locks/dot-files excluded

  static std::string spoold_binary();

 private:
  TempDir dir_;
  std::unique_ptr<Sink> sink_;
  std::unique_ptr<Process> daemon_;
  int runs_ = 0;
};

// A self-signed certificate for 127.0.0.1 in dir (cert.pem, key.pem), made with openssl(1).
void make_certificate(const std::string& dir);

std::string envelope_message(const std::string& from, const std::vector<std::string>& rcpts,
                             const std::string& subject, const std::string& body = "Hello.\n");

}  // namespace spoold::test
