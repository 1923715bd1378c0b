// daemon/daemon.h — spoold itself: the libuv loop that owns the scheduler (tier timers, pickup
// watcher), the delivery engine, outcome handling, the control socket and signal handling.
// Rule: the loop thread never scans a directory or fsyncs: every spool call runs on the libuv
// thread pool (run_in_pool), and its result comes back to the loop in the done callback.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/uv_handle.h"
#include "config/config.h"
#include "control/json.h"
#include "daemon/control_server.h"
#include "daemon/decide.h"
#include "daemon/delivery.h"
#include "daemon/dsn.h"
#include "daemon/group_commit.h"
#include "daemon/hook_runner.h"
#include "daemon/inflight_share.h"
#include "daemon/listener.h"
#include "daemon/notice.h"
#include "daemon/pool_batch.h"
#include "daemon/scan_pass.h"
#include "daemon/usage.h"
#include "dns/dns.h"
#include "spool/spool.h"

namespace spoold::daemon {

struct OutcomeJob;

struct RunOptions {
  bool once = false;  // attempt what is due now, wait for it, exit
  std::string config_path;
};

// Since start, one per log line: picked_up per message, the others per recipient (the usage
// counters, daemon/usage.h, count messages, recipients and bytes, and persist).
struct Counters {
  std::uint64_t picked_up = 0, sent = 0, deferred = 0, bounced = 0, expired = 0;
};

class Daemon {
 public:
  Daemon(std::shared_ptr<const config::Config> config, RunOptions options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until SIGTERM/SIGINT (or, with --once, until the due work is done). Returns the exit code.
  int run();

 private:
  struct InFlight;

  // Lifecycle (daemon.cpp)
  Result<void> start();
  void stop(const char* why);
  void reload();
  void on_signal(int signum);
  void finish_stop();

  // Scheduling (scheduler.cpp)
  void arm_tier_timers();
  void tick(int tier);
  void tick_done(int tier, std::vector<spool::Claimed> claimed,
                 const std::vector<spool::PickupResult>& pickups, bool more);
  void start_delivery(spool::Claimed claimed);
  void watch_incoming();
  void maybe_continue();
  void refresh_locks();
  void sweep_orphans();
  void expire_failed();
  size_t capacity() const;
  void pause_pickups();
  // Drops an in-memory entry; `id` is passed because its Claimed may have moved to an outcome job.
  void forget_inflight(std::map<std::uint64_t, std::unique_ptr<InFlight>>::iterator it,
                       const std::string& id);
  void remember_left(int tier, PassOutput& out);
  bool refill_due(int tier) const;

  // Outcomes (outcome.cpp)
  void on_part_done(std::uint64_t token, std::vector<RecipientResult> results);
  void finish(std::uint64_t token);
  std::optional<DsnInput> dsn_for(const Plan& plan) const;
  void outcome_written(std::uint64_t token, const OutcomeJob& job, int tier,
                       const std::vector<LogItem>& logs);
  void count(LogStatus status);
  void count_usage(const spool::Entry& e, const std::vector<LogItem>& logs);

  // Listeners (daemon_listen.cpp)
  Result<void> start_listeners();
  void reload_listeners();
  control::Json listener_status() const;
  bool listeners_idle() const;

  // Control (daemon.cpp)
  void handle_control(const control::Json& request, Reply reply);
  void bounce_ids(const control::Json& request, Reply reply);
  void bounce_claimed(spool::Claimed c);
  control::Json live_status() const;
  void watch(const control::Json& request, const Reply& reply);
  // Sends an outcome record of message `id` to every watch stream that selected it.
  void publish(const std::string& id, const control::Json& record);

  std::shared_ptr<const config::Config> cfg_;
  RunOptions opt_;
  uv_loop_t loop_{};
  std::optional<spool::Spool> spool_;
  std::unique_ptr<dns::Resolver> resolver_;
  std::unique_ptr<DeliveryEngine> engine_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<HookRunner> hooks_;    // hooks.on_outcome (not with --once: events wait on disk)
  std::unique_ptr<GroupCommit> commit_;  // before the listeners: their sessions use it
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<PoolBatch> outcome_batch_;  // outcome writes, gathered per loop iteration

  // hooks.on_outcome records, durable before their outcomes are written (also with --once).
  std::unique_ptr<EventWriter> event_writer_;

  std::vector<std::unique_ptr<uv::Timer>> tier_timers_;
  std::unique_ptr<uv::Timer> refresh_timer_, sweep_timer_, retention_timer_, watchdog_timer_, stop_timer_,
      kick_timer_;
  std::vector<std::unique_ptr<uv::Signal>> signals_;
  std::unique_ptr<uv::FsEvent> incoming_watch_;

  // At most kMaxInFlight entries are held in memory; one next hop holds at most its share of them
  // (inflight_share.h), never less than kShareFloor.
  static constexpr size_t kMaxInFlight = 4096;
  static constexpr size_t kShareFloor = 64;
  std::map<std::uint64_t, std::unique_ptr<InFlight>> inflight_;
  InflightShare share_{kMaxInFlight, kShareFloor};
  // Entries left on disk for the share (passes on the pool read it; created on first use).
  std::shared_ptr<SharedMemo> share_memo_;
  std::vector<std::set<std::string>> share_waiting_;  // per tier: hops that refused entries
  std::unique_ptr<uv::Timer> continue_timer_;         // maybe_continue() on the next loop iteration
  std::shared_ptr<InflightIds> inflight_ids_ = std::make_shared<InflightIds>();
  std::uint64_t next_token_ = 1;
  std::vector<bool> scanning_, more_, again_;
  Counters counters_;
  std::unique_ptr<UsageKeeper> usage_;
  bool usage_flushed_ = false;  // the stop's last save was asked for
  struct Watcher {              // a `watch` client: outcome records of `ids` (empty: of every message)
    std::shared_ptr<ControlStream> stream;
    std::set<std::string> ids;
  };
  std::vector<Watcher> watchers_;
  // Each holds a socket and up to ControlStream::kMaxQueued of unread records.
  static constexpr size_t kMaxWatchers = 64;
  // Spool-wide failures (a full disk) of pickups and of claims of queued entries, logged sparingly.
  RepeatedProblem pickup_problem_{"pickup"}, claim_problem_{"delivery of queued mail"};
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool stopping_ = false;
  int exit_code_ = 0;
  size_t pool_jobs_ = 0;  // thread-pool jobs whose done callback has not run yet
  int once_passes_ = 0;
  bool dsn_queued_ = false;  // a bounce or warning was queued since the last --once pass
  bool stopped_ = false;
  bool refreshing_ = false;                                       // a lock refresh job is on the thread pool
  std::chrono::steady_clock::time_point pickups_paused_until_{};  // see pause_pickups()
  // A write failed for want of space: probe before claiming. Atomic because an outcome job sets it
  // on the pool before it hands a drop back to incoming/, so the inotify event of that rename can
  // never start a pass that does not probe.
  std::atomic<bool> spool_full_{false};
};

// Maps config → the plain option structs of the libraries below.
dns::Options dns_options(const config::Config& c);

}  // namespace spoold::daemon
