// ctl/wait.cpp — see wait.h. The watch stream is opened before the drop is written, so no record
// of the message can pass unseen.
#include "ctl/wait.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "common/clock.h"
#include "control/ops.h"
#include "control/protocol.h"
#include "control/spool_options.h"
#include "ctl/app.h"
#include "ctl/privileges.h"
#include "ctl/submit.h"
#include "spool/spool.h"

namespace spoold::ctl {

OutcomeWait::Verdict OutcomeWait::feed(const control::Json& record) {
  const std::string& event = record["event"].as_string();
  if (event == "delivery") {
    const std::string& status = record["status"].as_string();
    const std::string& reason = record["reason"].as_string();
    if (status == "sent") {
      ++sent_;
    } else if (status == "bounced" || status == "expired") {
      failures_.push_back(fmt::format("<{}>: {}", record["to"].as_string(), reason));
    } else if (status == "deferred") {
      ++deferred_in_attempt_;
      deferral_ = fmt::format("<{}>: {}", record["to"].as_string(), reason);
      // smtp/engine.cpp says so of a temporary outcome after the final dot.
      if (reason.find("possible duplicate") != std::string::npos) maybe_delivered_ = true;
    }
    return Verdict::waiting;
  }
  if (event != "attempt") return Verdict::waiting;
  const int deferred = std::exchange(deferred_in_attempt_, 0);
  // The outcome could not be written: the message will be attempted again, nothing is known.
  if (!record["error"].is_null()) return Verdict::waiting;
  if (record["pending"].as_int() == 0) return failures_.empty() ? Verdict::sent : Verdict::failed;
  // An attempt that ended without a result (the message was handed back unattempted) is not
  // an outcome: wait for the next.
  return deferred > 0 ? Verdict::deferred : Verdict::waiting;
}

WaitResult conclude(SubmitMode mode, const OutcomeWait& w, OutcomeWait::Verdict v, bool timed_out,
                    int failed_code, const std::function<Withdrawal()>& withdraw) {
  using V = OutcomeWait::Verdict;
  using K = Withdrawal::Kind;
  WaitResult r;
  for (const auto& f : w.failures()) r.messages.push_back("failed: " + f);
  auto end = [&r](int code, std::string message) {
    if (!message.empty()) r.messages.push_back(std::move(message));
    r.exit_code = code;
    return r;
  };
  if (!timed_out && v == V::sent) return end(0, "");
  if (!timed_out && v == V::failed) return end(failed_code, "");
  const std::string why = timed_out ? "no outcome within the timeout" : "deferred: " + w.deferral();
  if (mode == SubmitMode::background) return end(0, "queued: " + why);
  if (w.maybe_delivered()) return end(0, "queued, not withdrawn: possibly delivered (" + why + ")");
  if (w.any_sent()) return end(0, "queued, not withdrawn: some recipients were sent (" + why + ")");
  Withdrawal d = withdraw();
  switch (d.kind) {
    case K::done:
      return end(kExTempFail, "withdrawn: " + why);
    case K::in_flight:
      return end(0, "queued, not withdrawn: possibly delivered (an attempt is running; " + why + ")");
    case K::refused:
      return end(0, "queued, not withdrawn: " + d.why + " (" + why + ")");
    case K::gone:
      return end(0, "not withdrawn: the message is no longer in the spool (delivered, or renamed meanwhile)");
    case K::unknown:
      return end(0, "queued, not withdrawn: spoold did not answer (" + d.why + ")");
    case K::failed:
      break;
  }
  return end(0, "queued, not withdrawn: " + d.why + " (" + why + ")");
}

namespace {

constexpr auto kAnswerTimeout = std::chrono::seconds(10);

// Removes the message if nothing can have delivered it: the drop still in incoming/ (a pickup
// renames it away atomically, so an unlink that succeeds came first), else the entry through the
// spool's `withdraw`, which refuses what may have been delivered and what an attempt holds.
Withdrawal withdraw(const config::Config& cfg, const std::string& id) {
  using K = Withdrawal::Kind;
  Elevated priv;
  if (!priv.ok()) return {K::failed, "cannot take up the spool owner's identity"};
  const std::string drop = cfg.spool_dir + "/incoming/" + id;
  if (::unlink(drop.c_str()) == 0) return {K::done, ""};
  if (errno != ENOENT) return {K::failed, fmt::format("{}: {}", drop, std::strerror(errno))};
  control::Json req =
      control::Json().set("cmd", "withdraw").set("ids", control::Json(control::Json::Array{id}));
  auto answer = control::call(cfg.control_socket, req, kAnswerTimeout);
  if (!answer) {
    // Only when nobody listens is the spool changed here; a daemon that is slow to answer may
    // still be doing it.
    int code = answer.error().code;
    if (code != ENOENT && code != ECONNREFUSED) return {K::unknown, answer.error().message};
    auto sp = spool::Spool::open(control::spool_options(cfg));
    if (!sp) return {K::failed, sp.error().message};
    answer = control::answer_from_spool(*sp, req, unix_now());
  }
  if (!(*answer)["ok"].as_bool()) return {K::failed, (*answer)["error"].as_string()};
  for (const auto& d : (*answer)["done"].as_array())
    if (d.as_string() == id) return {K::done, ""};
  const std::string why = (*answer)["errors"][id].as_string();
  if (why.find("in flight") != std::string::npos) return {K::in_flight, why};
  if (why == "no such message") {
    // An attempt's fresh claim (data/ID.new, spool-format.md) has no entry `withdraw` could find.
    struct stat st {};
    if (::stat((cfg.spool_dir + "/data/" + id + ".new").c_str(), &st) == 0) return {K::in_flight, why};
    return {K::gone, why};
  }
  if (why.starts_with("some recipients") || why.starts_with("possibly delivered") ||
      why.starts_with("in failed/"))
    return {K::refused, why};
  return {K::failed, why};
}

}  // namespace

int submit_and_wait(const config::Config& cfg, SubmitMode mode, std::chrono::milliseconds timeout,
                    const std::string& drop, int failed_code, const char* prog) {
  auto say = [prog](const std::string& m) { std::fprintf(stderr, "%s: %s\n", prog, m.c_str()); };
  const std::string id = spool::new_queue_id(control::spool_options(cfg));
  std::optional<control::Connection> conn;
  {
    Elevated priv;  // the control socket is the spool owner's
    if (!priv.ok()) {
      say("cannot take up the spool owner's identity");
      return kExTempFail;
    }
    auto c = control::Connection::open(cfg.control_socket);
    if (c) {
      control::Json req =
          control::Json().set("cmd", "watch").set("ids", control::Json(control::Json::Array{id}));
      if (c->send(req)) {
        auto first = c->read(kAnswerTimeout);
        if (first && (*first)["ok"].as_bool()) conn.emplace(std::move(*c));
      }
    }
  }
  if (!conn && mode == SubmitMode::interactive) {
    say("not queued: spoold is not running, and an interactive submission waits for it");
    return kExTempFail;
  }
  {
    Elevated priv;
    if (!priv.ok()) {
      say("cannot take up the spool owner's identity");
      return kExTempFail;
    }
    if (auto r = ensure_spool_layout(cfg); !r) {
      say("spool unusable: " + r.error().message);
      return kExTempFail;
    }
    if (auto r = write_drop(cfg.spool_dir, drop, id); !r) {
      say("cannot write to the spool: " + r.error().message);
      return kExTempFail;
    }
  }
  if (!conn) {
    say("queued as " + id + ": spoold is not running");
    return 0;
  }
  OutcomeWait w;
  auto v = OutcomeWait::Verdict::waiting;
  bool timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (v == OutcomeWait::Verdict::waiting) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto rec = left.count() > 0 ? conn->read(left) : Result<control::Json>(make_error("timeout", ETIMEDOUT));
    // Out of time, the daemon gone, or records lost: nothing more can be known here.
    if (!rec || (*rec)["event"].as_string() == "lost") {
      timed_out = true;
      break;
    }
    if ((*rec)["qid"].as_string() == id) v = w.feed(*rec);
  }
  // What came in before the deadline (an attempt that has just ended) decides, not the clock.
  for (int i = 0; timed_out && i < 100'000; ++i) {
    auto rec = conn->read(std::chrono::milliseconds(0));
    if (!rec || (*rec)["event"].as_string() == "lost") break;
    if ((*rec)["qid"].as_string() != id) continue;
    v = w.feed(*rec);
    if (v != OutcomeWait::Verdict::waiting) timed_out = false;
  }
  WaitResult r = conclude(mode, w, v, timed_out, failed_code, [&] { return withdraw(cfg, id); });
  for (const auto& m : r.messages) say(m);
  return r.exit_code;
}

}  // namespace spoold::ctl
