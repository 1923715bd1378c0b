// daemon/hook_runner.h — hooks.on_outcome: a program given each selected outcome record as JSON
// on stdin, one record per run (docs/configuration.md "hooks").
// Rules: at-least-once — the records of the outcomes that finish together are written to one
// file of <spool>/events/ (event_file.h; fsync, rename, one fsync of the directory) by the
// EventWriter before those outcomes, and the file goes only once every record in it ran with exit
// status 0 (each such run marks its record, so a restart runs only the others again) or was
// withdrawn (its outcome could not be written). A record's id is "<file>#<n>", the same on every
// run. Never blocks delivery: programs are started and reaped off the loop thread (hook_spawner.h,
// at nice 19, SCHED_IDLE), at most max_running at once, each in a session of its own whose process
// group is killed at `timeout`; a failed run is logged and retried after 10 s, doubling to 1 h.
// Only this instance's events run (their names end in its tag), so daemons sharing a spool do not
// run each other's; they start in the order they were written.
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
#include "config/config.h"
#include "control/json.h"
#include "daemon/hook_spawner.h"

namespace spoold::daemon {

// "mail.example.com" → "mail_example_com": what may follow the last '.' of an event's name.
std::string event_tag(const std::string& instance);

// One record in a file of events/.
struct EventRef {
  std::string file;        // its name in events/
  std::size_t index = 0;   // its line: the "#<n>" of its id
  std::size_t offset = 0;  // of its state byte (event_file.h); kNoOffset: an older daemon's file
  std::string record;      // the JSON line the program gets
};

// The records of one outcome, once written (or why not).
struct WrittenEvents {
  std::vector<EventRef> refs;
  std::size_t file_records = 0;  // in their file, all outcomes' together
  std::string error;
  std::vector<control::Json> lost;  // with an error: the records, for the log
};

// On the pool: records as one file "<unix ms>-<pid>-<counter>.<tag>" of <spool_dir>/events/ (the
// name chosen by the caller, so names sort in the order batches were formed), each with "id" set
// to "<file>#<n>" (in `records` too). One fsync of the file and one of the directory for all.
Result<std::vector<EventRef>> write_event_file(const std::string& spool_dir, const std::string& file,
                                               std::vector<control::Json>& records);
// On the pool: marks records withdrawn (their outcome is not on disk). Not fsynced (as the
// unlink of such events was not before): only a power cut right after can bring one back, and
// then the program hears of an attempt that is made again (docs/configuration.md "hooks").
void withdraw_events(const std::string& spool_dir, const std::vector<EventRef>& refs);

// Gathers the records of the outcomes finished in one loop iteration and writes them as one file,
// at most one file at a time: what arrives meanwhile goes into the next, larger one. done() runs
// on the loop for each add(), in order, once its records are durable (or written.error says why
// not).
class EventWriter {
 public:
  EventWriter(uv_loop_t* loop, std::string spool_dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  void add(const std::string& tag, std::vector<control::Json> records,
           std::function<void(WrittenEvents)> done);

 private:
  struct Item {
    std::vector<control::Json> records;
    std::function<void(WrittenEvents)> done;
  };
  void flush();

  uv_loop_t* loop_;
  std::string spool_dir_;
  std::map<std::string, std::vector<Item>> pending_;  // by tag (one per instance, in practice)
  bool writing_ = false;
  uv::Timer timer_;
  std::uint64_t counter_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class HookRunner {
 public:
  static constexpr std::size_t kMaxInMemory = 10'000;  // more wait on disk for a later scan

  HookRunner(uv_loop_t* loop, std::string spool_dir, std::string tag);
  ~HookRunner();
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  void configure(const config::OutcomeHook& hook);  // at start and on reload
  void start();                                     // runs what earlier runs of this instance left
  // A file written by the EventWriter with `records` records, whose outcomes are being written:
  // the scan leaves it alone; added() or withdrawn() tell each record's fate.
  void expect(const std::string& file, std::size_t records);
  void added(const std::vector<EventRef>& refs);      // their outcome is on disk
  void withdrawn(const std::vector<EventRef>& refs);  // their outcome is not (marked so on disk)
  // Running programs get SIGTERM, SIGKILL 2 s later; done() once none is left. Their events
  // stay on disk for the next start.
  void stop(std::function<void()> done);
  std::size_t waiting() const { return ready_.size() + later_.size(); }
  std::size_t running() const { return runs_.size(); }

 private:
  struct Pending {
    EventRef ref;
    int tries = 0;
  };
  // Per file of events/ that this runner knows: the fate of each record in it.
  enum class Fate : std::uint8_t { unknown, expected, queued, finished };
  struct File {
    std::vector<Fate> fate;
    std::size_t unfinished = 0;
  };
  struct Run {
    Pending p;
    bool stopped = false;  // killed because the daemon stops: not a failure of the program
  };
  void pump();
  void spawn(Pending p);
  void reported(std::vector<HookSpawner::Report> reports);
  void cannot_run(Pending p, const std::string& why);
  void finish_record(const std::string& file, std::size_t index);
  void queue(EventRef ref);
  void scan();
  void arm_retry();
  void maybe_stopped();

  uv_loop_t* loop_;
  std::string spool_dir_, dir_, tag_;
  config::OutcomeHook hook_;
  std::deque<Pending> ready_;
  std::multimap<std::uint64_t, Pending> later_;  // by uv_now when due again
  std::map<std::uint64_t, Run> runs_;
  std::map<std::string, File> files_;
  std::uint64_t next_run_ = 1;
  uv::Timer retry_timer_, stop_timer_;
  bool failing_ = false;  // runs cannot start: said once, one try at a time until one starts
  bool scanning_ = false;
  bool rescan_ = false;  // events on disk that are not in memory (kMaxInMemory)
  bool stopping_ = false;
  std::function<void()> on_stopped_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::unique_ptr<HookSpawner> spawner_;  // last: its reports reach the members above
};

}  // namespace spoold::daemon
