// tests/support/fixtures.h — what every test needs to run real peers on loopback:
// temporary directories, free ports, child processes that are always reaped, bounded waits.
// Rule: every wait here is bounded in time; every child is killed when its owner goes away.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace spoold::test {

// A fresh directory under $TMPDIR (or /tmp), removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// A TCP (or UDP) port on 127.0.0.1 that was free a moment ago (bind to 0, read, close).
int free_port(bool udp = false);

// True once something accepts TCP connections on host:port, false after `timeout`.
bool wait_for_port(const std::string& host, int port, std::chrono::milliseconds timeout);

// Polls `pred` every 10 ms until it returns true or `timeout` passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// A child process started with execvp; SIGTERM then SIGKILL and reaped on destruction.
class Process {
 public:
  // stdout_file/stderr_file: "" keeps the parent's; otherwise the path is truncated and used.
  Process(std::vector<std::string> argv, std::string stdout_file = "", std::string stderr_file = "",
          std::vector<std::string> env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  int pid() const { return pid_; }
  bool running();
  // Sends sig and waits up to timeout for exit; returns the exit status (or -1 if still running).
  int stop(int sig, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // Waits up to timeout for exit; returns the raw wait status, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);

 private:
  int pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);
std::vector<std::string> list_dir(const std::string& path);  // names, no "." entries filtered
// /usr/bin/python3, never the python3 first on PATH (Debian packages live there).
inline const char* system_python() {
  return "/usr/bin/python3";
}

}  // namespace spoold::test
