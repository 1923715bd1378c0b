// daemon/daemon.cpp — start-up, signals, reload, graceful stop and the control-socket commands.
#include "daemon/daemon.h"
#include "daemon/inflight.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/clock.h"
#include "control/protocol.h"
#include "control/spool_options.h"
#include "daemon/log.h"
#include "daemon/sd_notify.h"

#ifndef SPOOLD_VERSION
#define SPOOLD_VERSION "0.1.0"
#endif

namespace spoold::daemon {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {
constexpr auto kStopGrace = std::chrono::seconds(30);  // running transactions may finish this long
}

dns::Options dns_options(const config::Config& c) {
  dns::Options o;
  o.servers = c.dns.servers;
  o.timeout = c.dns.timeout;
  o.tries = c.dns.tries;
  o.address_preference = c.dns.address_preference;  // one type (common/delivery_policy.h)
  o.our_hostname = c.hostname;
  o.mx_port = static_cast<uint16_t>(c.delivery.port);
  o.max_cache_ttl = duration_cast<seconds>(c.dns.cache_max_ttl);
  o.negative_cache_ttl = duration_cast<seconds>(c.dns.negative_ttl);
  return o;
}

Daemon::Daemon(std::shared_ptr<const config::Config> config, RunOptions options)
    : cfg_(std::move(config)), opt_(std::move(options)) {
  uv_loop_init(&loop_);
  continue_timer_ = std::make_unique<uv::Timer>(&loop_);
}

Daemon::~Daemon() {
  // Everything holding uv handles goes first; then the loop runs once more to free them.
  signals_.clear();
  incoming_watch_.reset();
  tier_timers_.clear();
  refresh_timer_.reset();
  sweep_timer_.reset();
  retention_timer_.reset();
  watchdog_timer_.reset();
  stop_timer_.reset();
  kick_timer_.reset();
  continue_timer_.reset();
  control_.reset();
  hooks_.reset();
  usage_.reset();
  listeners_.clear();
  commit_.reset();
  outcome_batch_.reset();
  event_writer_.reset();
  inflight_.clear();
  engine_.reset();
  resolver_.reset();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

Result<void> Daemon::start() {
  log::configure(cfg_->logging.level, cfg_->logging.format);
  for (const auto& w : cfg_->warnings) log::warning("{}: {}", opt_.config_path, w);
  auto sp = spool::Spool::open(control::spool_options(*cfg_));
  if (!sp.ok()) return make_error("spool: " + sp.error().message);
  spool_.emplace(std::move(*sp));
  auto rep = spool_->recover();
  if (!rep.ok()) return make_error("spool recovery: " + rep.error().message);
  if (rep->pickups_completed || rep->drops_restored || rep->removals_completed)
    log::info("recovered spool: {} pickups completed, {} drops restored, {} removals completed",
              rep->pickups_completed, rep->drops_restored, rep->removals_completed);

  usage_ = std::make_unique<UsageKeeper>(&loop_, cfg_->spool_dir, cfg_->instance);
  if (auto r = usage_->load(unix_now()); !r) return make_error("usage totals: " + r.error().message);
  usage_->configure(cfg_->usage_log);

  auto res = dns::Resolver::create(&loop_, dns_options(*cfg_));
  if (!res.ok()) return make_error("dns: " + res.error().message);
  resolver_ = std::move(*res);
  outcome_batch_ = std::make_unique<PoolBatch>(&loop_);
  event_writer_ = std::make_unique<EventWriter>(&loop_, cfg_->spool_dir);
  engine_ = std::make_unique<DeliveryEngine>(
      &loop_, cfg_, *resolver_,
      [this](std::uint64_t token, std::vector<RecipientResult> r) { on_part_done(token, std::move(r)); });
  size_t n = spool_->options().tier_delays.size();
  scanning_.assign(n, false);
  more_.assign(n, false);
  again_.assign(n, false);
  share_waiting_.assign(n, {});

  if (!opt_.once) {
    control_ = std::make_unique<ControlServer>(
        &loop_, [this](const control::Json& req, Reply reply) { handle_control(req, std::move(reply)); });
    if (auto r = control_->listen(cfg_->control_socket); !r.ok())
      return make_error("control socket: " + r.error().message);
    for (int signum : {SIGTERM, SIGINT, SIGHUP})
      signals_.push_back(std::make_unique<uv::Signal>(&loop_, signum, [this](int sig) { on_signal(sig); }));
    if (auto r = start_listeners(); !r.ok()) return r;
    hooks_ = std::make_unique<HookRunner>(&loop_, cfg_->spool_dir, event_tag(cfg_->instance));
    hooks_->configure(cfg_->hooks.on_outcome);
    hooks_->start();
    arm_tier_timers();
    watch_incoming();
    refresh_timer_ = std::make_unique<uv::Timer>(&loop_);
    auto every = static_cast<uint64_t>(std::max<long long>(1000, cfg_->queue.lock_stale_after.count() / 4));
    refresh_timer_->start(every, every, [this] { refresh_locks(); });
    // Another daemon on this spool may die holding fresh claims (data/ID.new, no envelope yet):
    // nobody's scan would ever see them, so recovery runs again once their locks can be stale.
    sweep_timer_ = std::make_unique<uv::Timer>(&loop_);
    auto sweep = static_cast<uint64_t>(std::max<long long>(1000, cfg_->queue.lock_stale_after.count()));
    sweep_timer_->start(sweep, sweep, [this] { sweep_orphans(); });
    retention_timer_ = std::make_unique<uv::Timer>(&loop_);
    retention_timer_->start(60'000, 3'600'000, [this] { expire_failed(); });
    if (auto wd = sd_watchdog_interval()) {
      watchdog_timer_ = std::make_unique<uv::Timer>(&loop_);
      watchdog_timer_->start(static_cast<uint64_t>(wd->count()), static_cast<uint64_t>(wd->count()),
                             [] { sd_notify("WATCHDOG=1"); });
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  log::info("spoold {} started: spool {}, {} tiers, instance {}", SPOOLD_VERSION, cfg_->spool_dir, n,
            cfg_->instance);
  sd_notify("READY=1");
  tick(0);  // incoming/ and everything due in tier 0 at once
  for (size_t t = 1; t < n; ++t) tick(static_cast<int>(t));
  return {};
}

int Daemon::run() {
  if (auto r = start(); !r.ok()) {
    log::error("{}", r.error().message);
    return 1;
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  return exit_code_;
}

void Daemon::on_signal(int signum) {
  if (signum == SIGHUP) {
    reload();
    return;
  }
  stop(signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

void Daemon::stop(const char* why) {
  if (stopping_) {
    // A second signal: do not wait for running transactions any longer.
    engine_->abort_all();
    return;
  }
  stopping_ = true;
  log::info("stopping ({}): letting running transactions finish", why);
  sd_notify("STOPPING=1");
  tier_timers_.clear();
  refresh_timer_.reset();
  sweep_timer_.reset();
  retention_timer_.reset();
  watchdog_timer_.reset();
  kick_timer_.reset();
  incoming_watch_.reset();
  if (control_) control_->close();
  for (auto& l : listeners_) l->shutdown();
  stop_timer_ = std::make_unique<uv::Timer>(&loop_);
  stop_timer_->start(static_cast<uint64_t>(milliseconds(kStopGrace).count()), 0, [this] {
    log::warning("transactions still running after {}s: aborting them", kStopGrace.count());
    engine_->abort_all();
  });
  engine_->shutdown([this] { finish_stop(); });
  // After the engine's: with nothing running either may finish the stop at once (which
  // destroys the engine).
  if (hooks_) hooks_->stop([this] { finish_stop(); });
}

void Daemon::finish_stop() {
  // Sessions are gone; outcome jobs may still be writing. finish() calls back here until idle.
  if (stopped_ || pool_jobs_ > 0 || !inflight_.empty() || (engine_ && engine_->sessions() > 0) ||
      !listeners_idle() || (hooks_ && hooks_->running() > 0))
    return;
  // Everything is counted now: the last save of the totals (and usage_log line), on the pool.
  if (usage_ && !usage_flushed_) {
    usage_flushed_ = true;
    usage_->flush([this] { finish_stop(); });
    return;
  }
  if (usage_ && usage_->busy()) return;
  stopped_ = true;
  stop_timer_.reset();
  signals_.clear();
  engine_.reset();
  resolver_.reset();  // cancels outstanding lookups
  log::info("stopped");
  if (log::enabled(config::LogLevel::debug)) uv_print_active_handles(&loop_, stderr);
}

void Daemon::reload() {
  auto fresh = config::load_file(opt_.config_path);
  if (!fresh.ok()) {
    log::error("reload: keeping the old configuration: {}", fresh.error().message);
    return;
  }
  if (fresh->spool_dir != cfg_->spool_dir || fresh->queue.tiers.size() != cfg_->queue.tiers.size())
    log::warning("reload: spool_dir and the number of tiers change only on restart");
  sd_notify("RELOADING=1");
  auto next = std::make_shared<config::Config>(std::move(*fresh));
  next->spool_dir = cfg_->spool_dir;
  next->queue.tiers = cfg_->queue.tiers;
  cfg_ = next;
  log::configure(cfg_->logging.level, cfg_->logging.format);
  for (const auto& w : cfg_->warnings) log::warning("reload: {}: {}", opt_.config_path, w);
  engine_->reconfigure(cfg_);
  reload_listeners();
  if (hooks_) hooks_->configure(cfg_->hooks.on_outcome);
  usage_->configure(cfg_->usage_log);
  share_memo_.reset();  // hop names may have changed with the routes
  arm_tier_timers();
  log::info("reloaded configuration from {}", opt_.config_path);
  sd_notify("READY=1");
}

control::Json Daemon::live_status() const {
  using control::Json;
  Json d;
  d.set("running", true)
      .set("pid", static_cast<long long>(::getpid()))
      .set("uptime_s", static_cast<long long>(
                           duration_cast<seconds>(std::chrono::steady_clock::now() - started_).count()))
      .set("instance", cfg_->instance)
      .set("version", SPOOLD_VERSION);
  Json c;
  c.set("picked_up", counters_.picked_up)
      .set("sent", counters_.sent)
      .set("deferred", counters_.deferred)
      .set("bounced", counters_.bounced)
      .set("expired", counters_.expired);
  Json dests = Json(Json::Array{});
  if (engine_)
    for (const auto& s : engine_->stats())
      dests.push(Json().set("hop", s.hop).set("sessions", s.sessions).set("queued", s.queued));
  return Json()
      .set("daemon", d)
      .set("counters", c)
      .set("in_flight", inflight_.size())
      .set("destinations", dests)
      .set("listeners", listener_status())
      .set("hooks", Json()
                        .set("waiting", hooks_ ? hooks_->waiting() : 0)
                        .set("running", hooks_ ? hooks_->running() : 0))
      .set("watchers",
           static_cast<std::uint64_t>(std::count_if(watchers_.begin(), watchers_.end(),
                                                    [](const Watcher& w) { return w.stream->open(); })));
}

}  // namespace spoold::daemon
