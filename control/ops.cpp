// control/ops.cpp — flush/hold/release/delete/requeue on the spool under entry locks (see ops.h).
// Rule: every change goes through Spool::claim + Spool::move/remove, so a crash leaves the entry
// in its old or its new place, never half-changed; a busy lock is an error, not a wait.
#include "control/ops.h"

#include <fmt/format.h>

#include "control/protocol.h"

namespace spoold::control {
namespace {

constexpr size_t kFlushBatch = 512;
constexpr std::string_view kBounceNeedsDaemon = "bounce needs the running daemon (spoold writes the DSN)";

using Errors = std::vector<std::pair<std::string, std::string>>;

Json errors_json(const Errors& errors) {
  Json o = Json::Object{};
  for (const auto& [id, text] : errors) o.set(id, text);
  return o;
}

// Why claim() gave nothing: the entry is locked by someone, or it went away meanwhile.
std::string unclaimed_reason(const spool::Spool& spool, std::string_view id) {
  auto again = spool.find(id);
  if (again && *again) return "in flight (locked by another process)";
  return "no such message";
}

// Finds and locks one entry by id; on failure the error text is what the operator sees.
Result<spool::Claimed> claim_id(spool::Spool& spool, const std::string& id) {
  auto ref = spool.find(id);
  if (!ref) return ref.error();
  if (!*ref) return make_error("no such message");
  auto c = spool.claim(**ref);
  if (!c) return c.error();
  if (!*c) return make_error(unclaimed_reason(spool, id));
  return std::move(**c);
}

Result<void> reset_for_requeue(spool::Entry& e) {
  size_t again = 0;
  for (auto& r : e.recipients) {
    if (r.state == spool::RcptState::sent) continue;
    r.state = spool::RcptState::pending;
    ++again;
  }
  if (again == 0) return make_error("every recipient was already delivered");
  e.reason.clear();
  return {};
}

Result<void> apply_one(spool::Spool& spool, Op op, spool::Claimed& c, int64_t now) {
  const spool::Place place = c.ref.place;
  switch (op) {
    case Op::hold:
      if (place == spool::Place::hold) return make_error("already held");
      if (place == spool::Place::failed) return make_error("in failed/ (use requeue)");
      return spool.hold(c, now);
    case Op::release:
      if (place != spool::Place::hold) return make_error("not held");
      return spool.release_to_queue(c, now);
    case Op::remove:
      return spool.remove(c);
    case Op::requeue:
      if (place != spool::Place::failed)
        return make_error("not in failed/ (only failed messages are requeued)");
      if (auto r = reset_for_requeue(c.entry); !r) return r;
      return spool.move(c, spool::Place::queue, 0, now);
    case Op::bounce:
      return make_error(std::string(kBounceNeedsDaemon));
    case Op::withdraw:
      if (place == spool::Place::failed) return make_error("in failed/ (it has its outcome)");
      for (const auto& r : c.entry.recipients) {
        if (r.state == spool::RcptState::sent) return make_error("some recipients were sent");
        // smtp/engine.cpp's words for a temporary outcome after the final dot.
        if (r.last_reply.find("possible duplicate") != std::string::npos)
          return make_error("possibly delivered (deferred after the final dot)");
      }
      return spool.remove(c);
  }
  return make_error("unknown operation");
}

// Reschedules one claimed queue entry to `now` unless it is due already.
Result<void> flush_claimed(spool::Spool& spool, spool::Claimed& c, int64_t now) {
  if (c.ref.place == spool::Place::hold) return make_error("held (release it first)");
  if (c.ref.place == spool::Place::failed) return make_error("in failed/ (use requeue)");
  if (c.ref.when <= now) return {};
  return spool.reschedule(c, c.ref.tier, now);
}

void flush_ids(spool::Spool& spool, const std::vector<std::string>& ids, int64_t now, FlushResult& out) {
  for (const auto& id : ids) {
    auto c = claim_id(spool, id);
    if (!c) {
      out.errors.emplace_back(id, c.error().message);
      continue;
    }
    if (auto r = flush_claimed(spool, *c, now); !r) {
      out.errors.emplace_back(id, r.error().message);
      continue;
    }
    ++out.flushed;
  }
}

// Flushes one queue tier. Batches keep memory bounded; an entry renamed by this very flush may be
// listed again, but then it is due already and is skipped, so nothing is counted twice.
Result<void> flush_tier(spool::Spool& spool, int tier, const std::string& domain, int64_t now,
                        FlushResult& out) {
  auto scan = spool.scan(spool::Place::queue, tier, INT64_MAX);
  if (!scan) return scan.error();
  while (!scan->done()) {
    auto batch = scan->next(kFlushBatch);
    if (!batch) return batch.error();
    for (const auto& ref : *batch) {
      if (ref.when <= now) continue;  // due already (or made due by this flush a moment ago)
      auto c = spool.claim(ref);
      if (!c) {
        out.errors.emplace_back(ref.id, c.error().message);
        continue;
      }
      if (!*c) {
        auto again = spool.find(ref.id);
        if (again && *again && (*again)->when > now)
          out.errors.emplace_back(ref.id, unclaimed_reason(spool, ref.id));
        continue;
      }
      if (!domain.empty() && !has_domain((*c)->entry, domain, true)) continue;
      if (auto r = flush_claimed(spool, **c, now); !r) {
        out.errors.emplace_back(ref.id, r.error().message);
        continue;
      }
      ++out.flushed;
    }
  }
  return {};
}

std::vector<std::string> ids_of(const Json& request) {
  std::vector<std::string> ids;
  for (const auto& v : request["ids"].as_array())
    if (v.is_string()) ids.push_back(v.as_string());
  return ids;
}

Json flush_request(spool::Spool& spool, const Json& request, int64_t now) {
  auto req = parse_list_request(request);
  if (!req) return error_response(req.error().message);
  if ((req->select.place && *req->select.place != spool::Place::queue) || !req->entries)
    return error_response("flush applies to queued messages only");
  if (req->select.tier && *req->select.tier >= spool.tiers())
    return error_response(
        fmt::format("tier {} does not exist (tiers 0..{})", *req->select.tier, spool.tiers() - 1));
  return flush(spool, req->select, ids_of(request), now).to_json();
}

Json read_request(spool::Spool& spool, const std::string& cmd, const Json& request, int64_t now) {
  Result<Json> r = make_error("unknown command");
  if (cmd == "status") {
    r = status_view(spool, now);
  } else if (cmd == "list") {
    auto req = parse_list_request(request);
    if (!req) return error_response(req.error().message);
    r = list_view(spool, *req, now);
  } else {
    const Json& id = request["id"];
    if (!id.is_string() || id.as_string().empty()) return error_response("show needs an id");
    r = show_view(spool, id.as_string());
  }
  return r ? std::move(*r) : error_response(r.error().message);
}

}  // namespace

std::string_view to_string(Op op) {
  switch (op) {
    case Op::hold:
      return "hold";
    case Op::release:
      return "release";
    case Op::remove:
      return "delete";
    case Op::requeue:
      return "requeue";
    case Op::bounce:
      return "bounce";
    case Op::withdraw:
      return "withdraw";
  }
  return "?";
}

std::optional<Op> parse_op(std::string_view cmd) {
  for (auto op : {Op::hold, Op::release, Op::remove, Op::requeue, Op::bounce, Op::withdraw})
    if (cmd == to_string(op)) return op;
  return std::nullopt;
}

Json OpResult::to_json() const {
  Json d = Json::Array{};
  for (const auto& id : done) d.push(id);
  return ok_response().set("done", std::move(d)).set("errors", errors_json(errors));
}

Json FlushResult::to_json() const {
  return ok_response().set("flushed", flushed).set("errors", errors_json(errors));
}

FlushResult flush(spool::Spool& spool, const Selection& select, const std::vector<std::string>& ids,
                  int64_t now) {
  FlushResult out;
  if (!ids.empty()) {
    flush_ids(spool, ids, now, out);
    return out;
  }
  for (int t = 0; t < spool.tiers(); ++t) {
    if (select.tier && *select.tier != t) continue;
    if (auto r = flush_tier(spool, t, select.domain, now, out); !r)
      out.errors.emplace_back("*", r.error().message);
  }
  return out;
}

OpResult apply(spool::Spool& spool, Op op, const std::vector<std::string>& ids, int64_t now) {
  OpResult out;
  for (const auto& id : ids) {
    if (op == Op::bounce) {
      out.errors.emplace_back(id, std::string(kBounceNeedsDaemon));
      continue;
    }
    auto c = claim_id(spool, id);
    if (!c) {
      out.errors.emplace_back(id, c.error().message);
      continue;
    }
    if (auto r = apply_one(spool, op, *c, now); !r) {
      out.errors.emplace_back(id, r.error().message);
      continue;
    }
    out.done.push_back(id);
  }
  return out;
}

Json answer_from_spool(spool::Spool& spool, const Json& request, int64_t now) {
  const std::string& cmd = request["cmd"].as_string();
  if (cmd == "status" || cmd == "list" || cmd == "show") return read_request(spool, cmd, request, now);
  if (cmd == "flush") return flush_request(spool, request, now);
  if (cmd == "bounce" || cmd == "reload")
    return error_response(fmt::format("{} needs the running daemon", cmd));
  auto op = parse_op(cmd);
  if (!op) return error_response(cmd.empty() ? "request without cmd" : "unknown command: " + cmd);
  if (!request["ids"].is_array() || ids_of(request).empty())
    return error_response(cmd + " needs message ids");
  return apply(spool, *op, ids_of(request), now).to_json();
}

}  // namespace spoold::control
