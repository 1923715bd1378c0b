// daemon/hook_runner.h — hooks.on_outcome: a program given each selected outcome record as JSON
// on stdin, one record per run (docs/configuration.md "hooks").
// Rules: at-least-once — a record is written to <spool>/events/ (fdatasync, rename, one fsync of
// the directory) by the outcome job before the outcome itself, and its file goes only after a run
// of the program exited 0; a crash or restart runs it again (its file name is its "id", to dedupe).
// Never blocks delivery: the runner lives on the loop, at most max_running programs run at once,
// each in a session of its own whose process group is killed at `timeout`; a failed run is
// logged and retried after 10 s, doubling to 1 h. Only this instance's events run (their names end
// in its tag), so daemons sharing a spool do not run each other's.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/uv_handle.h"
#include "common/uv_stream.h"
#include "config/config.h"
#include "control/json.h"

namespace spoold::daemon {

// "mail.example.com" → "mail_example_com": what may follow the last '.' of an event's name.
std::string event_tag(const std::string& instance);

// On the pool: each record as its own file in <spool_dir>/events/, named
// "<unix ms>-<pid>-<counter>.<tag>" (they sort by time), with "id" set to that name; one
// directory fsync for all. Returns the names, in order.
Result<std::vector<std::string>> write_events(const std::string& spool_dir, const std::string& tag,
                                              std::vector<control::Json> records);

class HookRunner {
 public:
  static constexpr std::size_t kMaxInMemory = 10'000;  // more wait on disk for a later scan

  HookRunner(uv_loop_t* loop, std::string spool_dir, std::string tag);
  ~HookRunner();
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  void configure(const config::OutcomeHook& hook);    // at start and on reload
  void start();                                       // runs what earlier runs of this instance left
  void added(const std::vector<std::string>& names);  // written by an outcome job
  // Running programs get SIGTERM, SIGKILL 2 s later; done() once none is left. Their events
  // stay on disk for the next start.
  void stop(std::function<void()> done);
  std::size_t waiting() const { return ready_.size() + later_.size(); }
  std::size_t running() const { return runs_.size(); }

 private:
  struct Pending {
    std::string name;
    int tries = 0;
  };
  struct Run;
  void pump();
  bool spawn(Pending p);  // false: it could not start (the event waits; stop spawning now)
  void cannot_run(Pending p, const std::string& why);
  void finished(std::uint64_t key);
  void scan();
  void arm_retry();
  void maybe_stopped();

  uv_loop_t* loop_;
  std::string dir_, tag_;
  config::OutcomeHook hook_;
  std::deque<Pending> ready_;
  std::multimap<std::uint64_t, Pending> later_;  // by uv_now when due again
  std::map<std::uint64_t, std::unique_ptr<Run>> runs_;
  std::uint64_t next_run_ = 1;
  uv::Timer retry_timer_, stop_timer_;
  std::set<std::string> removing_;  // run with success, file not unlinked yet
  bool failing_ = false;            // runs cannot start: said once
  bool scanning_ = false;
  bool rescan_ = false;  // events on disk that are not in memory (kMaxInMemory)
  bool stopping_ = false;
  std::function<void()> on_stopped_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spoold::daemon
