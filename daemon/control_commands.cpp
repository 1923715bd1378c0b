// daemon/control_commands.cpp — the daemon's side of the control protocol. Spool reads and changes
// are the same functions spoolctl uses offline (control/views.h, control/ops.h), run on the thread
// pool; the daemon adds its live data and wakes the scheduler after a change. `bounce` is the one
// command only the daemon can do: it runs the entry through the normal outcome path, which queues
// the DSN before the entry goes to failed/.
#include <ctime>

#include <fmt/format.h>

#include "common/clock.h"
#include "control/ops.h"
#include "control/protocol.h"
#include "control/views.h"
#include "daemon/daemon.h"
#include "daemon/inflight.h"
#include "daemon/log.h"

namespace spoold::daemon {

void Daemon::handle_control(const control::Json& request, Reply reply) {
  const std::string cmd = request["cmd"].as_string();
  if (stopping_) {
    reply(control::error_response("spoold is stopping"));
    return;
  }
  if (cmd == "reload") {
    reload();
    reply(control::ok_response());
    return;
  }
  if (cmd == "bounce") {
    bounce_ids(request, std::move(reply));
    return;
  }
  if (cmd == "watch") return watch(request, reply);
  auto answer = std::make_shared<control::Json>();
  auto usage = std::make_shared<spool::UsageDir>();
  spool::Spool* sp = &*spool_;
  bool changes = cmd != "status" && cmd != "list" && cmd != "show";
  ++pool_jobs_;
  uv::run_in_pool(
      &loop_,
      [sp, answer, usage, request, cmd] {
        *answer = control::answer_from_spool(*sp, request, unix_now());
        // Read again for the live answer: the daemon's own totals replace its file's.
        if (cmd == "status") *usage = spool::read_usage_dir(sp->dir());
      },
      [this, cmd, answer, usage, changes, reply] {
        --pool_jobs_;
        if (cmd == "status" && (*answer)["ok"].as_bool()) {
          auto live = live_status();
          for (const auto& [k, v] : live.as_object()) answer->set(k, v);
          const auto mine = usage_->live(unix_now());
          answer->set("usage", control::usage_json(*usage, cfg_->instance, &mine, &usage_->since_start()));
        }
        reply(*answer);
        if (changes && !stopping_)
          for (size_t t = 0; t < scanning_.size(); ++t) tick(static_cast<int>(t));
        maybe_continue();
      });
}

// Outcome records from now on, as they become durable; nothing is replayed.
void Daemon::watch(const control::Json& request, const Reply& reply) {
  std::erase_if(watchers_, [](const Watcher& x) { return !x.stream->open(); });
  if (watchers_.size() >= kMaxWatchers) {
    reply(control::error_response(fmt::format("too many watch clients ({})", kMaxWatchers)));
    return;
  }
  Watcher w;
  for (const auto& v : request["ids"].as_array()) w.ids.insert(v.as_string());
  w.stream = reply.stream(control::ok_response());
  if (!w.stream) return;
  watchers_.push_back(std::move(w));
}

void Daemon::publish(const std::string& id, const control::Json& record) {
  std::erase_if(watchers_, [](const Watcher& x) { return !x.stream->open(); });
  for (auto& w : watchers_)
    if (w.ids.empty() || w.ids.count(id)) w.stream->send(record);
}

namespace {

struct BounceClaims {
  std::vector<spool::Claimed> claimed;
  control::OpResult result;
};

// On the pool: claims each message to bounce; what cannot be claimed is reported by id.
void claim_for_bounce(spool::Spool& sp, const std::vector<std::string>& ids, const InflightIds& in_flight,
                      BounceClaims& out) {
  for (const auto& id : ids) {
    if (in_flight.with([&](const auto& in_memory) { return in_memory.count(id) > 0; })) {
      out.result.errors.push_back({id, "in flight"});
      continue;
    }
    auto ref = sp.find(id);
    if (!ref.ok() || !*ref) {
      out.result.errors.push_back({id, "no such message"});
      continue;
    }
    if ((*ref)->place == spool::Place::failed) {
      out.result.errors.push_back({id, "already in failed/"});
      continue;
    }
    auto c = sp.claim(**ref);
    if (!c.ok() || !*c) {
      out.result.errors.push_back({id, c.ok() ? "in flight" : c.error().message});
      continue;
    }
    out.claimed.push_back(std::move(**c));
    out.result.done.push_back(id);
  }
}

}  // namespace

void Daemon::bounce_ids(const control::Json& request, Reply reply) {
  std::vector<std::string> ids;
  for (const auto& v : request["ids"].as_array()) ids.push_back(v.as_string());
  if (ids.empty()) {
    reply(control::error_response("bounce needs at least one id"));
    return;
  }
  auto out = std::make_shared<BounceClaims>();
  std::shared_ptr<const InflightIds> skip = inflight_ids_;
  spool::Spool* sp = &*spool_;
  ++pool_jobs_;
  uv::run_in_pool(
      &loop_, [sp, ids, out, skip] { claim_for_bounce(*sp, ids, *skip, *out); },
      [this, out, reply = std::move(reply)] {
        --pool_jobs_;
        for (auto& c : out->claimed) bounce_claimed(std::move(c));
        reply(out->result.to_json());
        maybe_continue();
      });
}

// Every pending recipient fails permanently; finish() queues the DSN and files the entry.
void Daemon::bounce_claimed(spool::Claimed c) {
  auto f = std::make_unique<InFlight>(std::move(c));
  std::uint64_t token = next_token_++;
  const auto& e = f->claimed.entry;
  f->results.resize(e.recipients.size());
  for (size_t i = 0; i < e.recipients.size(); ++i)
    if (!e.recipients[i].final())
      f->results[i] = RecipientResult{
          i, smtp::Outcome{smtp::Status::permanent, 0, "5.0.0", "message bounced by the administrator"},
          "none", true};
  inflight_ids_->with([&](auto& ids) { ids.insert(e.id); });
  inflight_.emplace(token, std::move(f));
  log::info("{}: bounced by the administrator", e.id);
  finish(token);
}

}  // namespace spoold::daemon
