// daemon/hook_spawner.h — starts and reaps the hooks.on_outcome programs on a thread of its own,
// so the loop thread (the one delivery runs on) neither forks nor waits for them.
// Rules:
// - posix_spawn (glibc: a vfork-style clone, no copy of the daemon's page tables), each program in
//   a session of its own (its pid is its process group, which is what gets killed), stdin a
//   memfd holding its record, stdout /dev/null, stderr a pipe of which the first kMaxStderr bytes
//   are kept; every signal at its default and none blocked.
// - The thread runs at nice 19 in the SCHED_IDLE class and its programs inherit both (Linux:
//   they are per thread and passed on to children): a hook's work is not time critical,
//   delivery's is, so the programs get the CPU time delivery leaves.
// - It reaps only its own children, by pidfd and waitpid on their pids (libuv's SIGCHLD handler
//   also waits only for the pids of its own uv_process_t handles, and spoold has none).
// - A program still running after its timeout is killed with its whole group (SIGKILL).
// - A run that exited 0 gets its record marked ran ('+', event_file.h) before it is reported.
// - Reports reach the loop through an eventfd watched there; they are taken in batches.
#pragma once

#include <uv.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "common/uv_handle.h"

namespace spoold::daemon {

class HookSpawner {
 public:
  static constexpr std::size_t kMaxStderr = 1024;  // of a run, for its log line
  static constexpr int kNice = 19;

  struct Request {
    std::uint64_t key = 0;
    std::vector<std::string> argv;
    std::string input;  // the program's stdin
    std::chrono::milliseconds timeout{0};
    std::string mark_path;  // where to write kRan on success ("" = nothing to mark)
    std::size_t mark_offset = 0;
  };
  struct Report {
    std::uint64_t key = 0;
    std::string error;  // not started: why (the rest is unset)
    int status = 0;     // exit status
    int signal = 0;     // killed by
    bool timed_out = false;
    std::string err_text;  // the start of its stderr
  };

  // on_reports runs on the loop thread with what finished since the last call.
  HookSpawner(uv_loop_t* loop, std::function<void(std::vector<Report>)> on_reports);
  ~HookSpawner();  // SIGKILL to every group still running; the thread is joined
  HookSpawner(const HookSpawner&) = delete;
  HookSpawner& operator=(const HookSpawner&) = delete;

  // The thread could not be set up (no eventfd, no thread): nothing runs; says why.
  const Result<void>& status() const { return status_; }
  // The thread's nice or class could not be set: programs run at the daemon's priority.
  const std::string& nice_error() const { return nice_error_; }

  void run(Request r);
  void signal_all(int sig);       // every group still running
  void unlink(std::string path);  // on the thread: an events/ file all of whose records ran

 private:
  struct Command {
    enum class Kind { run, signal, unlink } kind = Kind::run;
    Request request;
    int sig = 0;
    std::string path;
  };
  struct Child;
  void thread_main();
  void start_child(Request r, std::vector<Child>& children, std::vector<Report>& done);
  void post(Command c);
  void report(std::vector<Report> done);

  std::function<void(std::vector<Report>)> on_reports_;
  Result<void> status_;
  std::string nice_error_;
  UniqueFd wake_thread_;  // eventfd: commands queued, or quit
  UniqueFd wake_loop_;    // eventfd: reports queued
  uv::Poll loop_poll_;
  std::mutex mu_;
  std::vector<Command> commands_;  // guarded by mu_
  std::vector<Report> reports_;    // guarded by mu_
  bool quit_ = false;              // guarded by mu_
  std::mutex nice_mu_;
  std::condition_variable nice_cv_;
  bool nice_set_ = false;  // guarded by nice_mu_: the thread has tried setpriority
  std::thread thread_;
};

}  // namespace spoold::daemon
