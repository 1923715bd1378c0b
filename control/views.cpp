// control/views.cpp — status/list/show from the spool directory (see views.h).
// Rule: nothing here locks or changes an entry; a concurrent move only makes an entry skip a listing.
#include "control/views.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "common/ascii.h"
#include "control/protocol.h"

namespace spoold::control {
namespace {

constexpr size_t kScanBatch = 512;

std::string_view domain_of(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

// The directories a selection covers, in the order they are listed.
std::vector<std::pair<spool::Place, int>> places_of(const spool::Spool& spool, const Selection& s) {
  std::vector<std::pair<spool::Place, int>> out;
  auto want = [&](spool::Place p) { return s.place ? *s.place == p : p != spool::Place::failed; };
  if (want(spool::Place::queue)) {
    for (int t = 0; t < spool.tiers(); ++t)
      if (!s.tier || *s.tier == t) out.emplace_back(spool::Place::queue, t);
  }
  if (s.tier) return out;
  if (want(spool::Place::hold)) out.emplace_back(spool::Place::hold, 0);
  if (want(spool::Place::failed)) out.emplace_back(spool::Place::failed, 0);
  return out;
}

Json place_json(const spool::PlaceStats& p, int64_t now) {
  int64_t oldest = p.count && p.oldest_arrival > 0 ? std::max<int64_t>(0, now - p.oldest_arrival) : 0;
  return Json().set("messages", p.count).set("oldest_s", oldest);
}

// Lock files in data/ name entries some process is working on right now.
size_t count_locks(const spool::Spool& spool) {
  DIR* d = ::opendir((spool.dir() + "/data").c_str());
  if (!d) return 0;
  size_t n = 0;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() > 5 && name.substr(name.size() - 5) == ".lock") ++n;
  }
  ::closedir(d);
  return n;
}

// The header section of the message: up to the first empty line, at most kMaxHeaderBytes.
Result<std::pair<std::string, bool>> read_headers(const spool::Spool& spool, const spool::Entry& e) {
  auto body = spool.open_body(e);
  if (!body) return body.error();
  size_t want = static_cast<size_t>(std::min<uint64_t>(body->size, kMaxHeaderBytes));
  std::string buf(want, '\0');
  size_t got = 0;
  while (got < want) {
    ssize_t n = ::pread(body->fd.get(), buf.data() + got, want - got, static_cast<off_t>(body->offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return make_error(fmt::format("read {}: {}", spool.body_path(e.id), std::strerror(errno)), errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  buf.resize(got);
  size_t end = std::string::npos;
  for (std::string_view sep : {"\n\n", "\n\r\n"}) {
    auto p = buf.find(sep);
    if (p != std::string::npos && (end == std::string::npos || p + 1 < end)) end = p + 1;
  }
  if (end != std::string::npos) return std::pair{buf.substr(0, end), false};
  return std::pair{std::move(buf), got < body->size};
}

}  // namespace

std::optional<spool::Place> parse_place(std::string_view name) {
  for (auto p : {spool::Place::queue, spool::Place::hold, spool::Place::failed})
    if (name == spool::to_string(p)) return p;
  return std::nullopt;
}

Result<ListRequest> parse_list_request(const Json& request) {
  ListRequest req;
  const Json& tier = request["tier"];
  if (!tier.is_null()) {
    if (!tier.is_int() || tier.as_int() < 0) return make_error("tier must be a non-negative integer");
    req.select.tier = static_cast<int>(tier.as_int());
    req.select.place = spool::Place::queue;
  }
  const Json& domain = request["domain"];
  if (!domain.is_null()) {
    if (!domain.is_string() || domain.as_string().empty())
      return make_error("domain must be a non-empty string");
    req.select.domain = domain.as_string();
  }
  const Json& place = request["place"];
  if (!place.is_null()) {
    if (place.as_string() == "incoming") {
      if (req.select.tier) return make_error("tier only applies to place queue");
      if (!req.select.domain.empty()) return make_error("domain does not apply to place incoming");
      req.entries = false;
    } else {
      auto p = parse_place(place.as_string());
      if (!p) return make_error("place must be queue, hold, failed or incoming");
      if (req.select.tier && *p != spool::Place::queue) return make_error("tier only applies to place queue");
      req.select.place = p;
    }
  }
  if (req.select.place || req.select.tier || !req.select.domain.empty()) req.incoming = false;
  const Json& limit = request["limit"];
  if (!limit.is_null()) {
    if (!limit.is_int() || limit.as_int() <= 0) return make_error("limit must be a positive integer");
    req.limit = std::min<size_t>(static_cast<size_t>(limit.as_int()), kDefaultListLimit);
  }
  return req;
}

bool has_domain(const spool::Entry& e, std::string_view domain, bool pending_only) {
  return std::any_of(e.recipients.begin(), e.recipients.end(), [&](const spool::Recipient& r) {
    return (!pending_only || !r.final()) && ascii_iequals(domain_of(r.address), domain);
  });
}

Result<void> for_each_entry(const spool::Spool& spool, const Selection& select, const EntryVisitor& fn) {
  if (select.tier && *select.tier >= spool.tiers())
    return make_error(fmt::format("tier {} does not exist (tiers 0..{})", *select.tier, spool.tiers() - 1));
  for (auto [place, tier] : places_of(spool, select)) {
    auto scan = spool.scan(place, tier, INT64_MAX);
    if (!scan) return scan.error();
    while (!scan->done()) {
      auto batch = scan->next(kScanBatch);
      if (!batch) return batch.error();
      for (const auto& ref : *batch) {
        auto e = spool.read(ref);
        if (!e) continue;  // moved or removed since the directory was read
        if (!select.domain.empty() && !has_domain(*e, select.domain, false)) continue;
        if (!fn(ref, *e)) return {};
      }
    }
  }
  return {};
}

Json message_json(const spool::EntryRef& ref, const spool::Entry& e) {
  Json rcpts = Json::Array{};
  for (const auto& r : e.recipients) {
    Json rj;
    rj.set("address", r.address)
        .set("state", spool::to_string(r.state))
        .set("attempts", r.attempts)
        .set("last_reply", r.last_reply);
    if (!r.dsn.notify.empty()) rj.set("notify", r.dsn.notify);
    if (!r.dsn.orcpt.empty()) rj.set("orcpt", r.dsn.orcpt);
    rcpts.push(std::move(rj));
  }
  Json m;
  m.set("id", e.id)
      .set("place", spool::to_string(ref.place))
      .set("tier", ref.place == spool::Place::queue ? Json(ref.tier) : Json())
      .set("held", ref.place == spool::Place::hold)
      .set("sender", e.sender)
      .set("size", e.body_size)
      .set("arrived", e.arrived)
      .set("last_attempt", e.last_attempt)
      .set("attempts", e.attempts)
      .set("next_attempt", ref.place == spool::Place::queue ? Json(ref.when) : Json())
      .set("recipients", std::move(rcpts));
  if (ref.place == spool::Place::failed) m.set("reason", e.reason);
  if (!e.dsn.ret.empty()) m.set("ret", e.dsn.ret);
  if (!e.dsn.envid.empty()) m.set("envid", e.dsn.envid);
  return m;
}

Result<Json> status_view(const spool::Spool& spool, int64_t now) {
  auto st = spool.stats();
  if (!st) return st.error();
  Json tiers = Json::Array{};
  for (size_t t = 0; t < st->tiers.size(); ++t) {
    Json row = place_json(st->tiers[t], now);
    row.set("tier", t).set("delay_s", spool.options().tier_delays[t].count());
    tiers.push(std::move(row));
  }
  Json counters;
  for (const char* k : {"picked_up", "sent", "deferred", "bounced", "expired"}) counters.set(k, 0);
  Json r = ok_response();
  r.set("daemon", Json()
                      .set("running", false)
                      .set("pid", 0)
                      .set("uptime_s", 0)
                      .set("instance", spool.options().instance))
      .set("tiers", std::move(tiers))
      .set("incoming", st->incoming)
      .set("failed", st->failed.count)
      .set("bad", st->bad)
      .set("held", st->hold.count)
      .set("in_flight", count_locks(spool))
      .set("counters", std::move(counters))
      .set("destinations", Json::Array{})
      .set("spool_dir", spool.dir())
      .set("usage",
           usage_json(spool::read_usage_dir(spool.dir()), spool.options().instance, nullptr, nullptr));
  return r;
}

namespace {

Json counts_json(const spool::Usage& u) {
  Json out;
  for (size_t i = 0; i < spool::kUsageKinds.size(); ++i) {
    const spool::Tally& t = u.tally[i];
    out.set(std::string(spool::kUsageKinds[i]),
            Json().set("messages", t.messages).set("recipients", t.recipients).set("bytes", t.bytes));
  }
  return out;
}

}  // namespace

Json usage_json(const spool::UsageDir& dir, const std::string& instance, const spool::UsageFile* live,
                const spool::Usage* since_start) {
  std::vector<spool::UsageFile> files = live ? spool::with_live(dir.files, *live) : dir.files;
  Json instances = Json::Array{};
  const spool::UsageFile* mine = nullptr;
  for (const auto& f : files) {
    if (f.instance == instance) mine = &f;
    instances.push(Json()
                       .set("instance", f.instance)
                       .set("since", f.since)
                       .set("updated", f.updated)
                       .set("total", counts_json(f.totals)));
  }
  Json problems = Json::Array{};
  for (const auto& p : dir.problems) problems.push(p);
  return Json()
      .set("instance", instance)
      .set("since", mine ? mine->since : 0)
      .set("total", counts_json(mine ? mine->totals : spool::Usage{}))
      .set("since_start", since_start ? counts_json(*since_start) : Json())
      .set("all_instances", counts_json(spool::sum_usage(files)))
      .set("instances", std::move(instances))
      .set("problems", std::move(problems));
}

Json incoming_json(std::string_view name, uint64_t size, int64_t mtime, int64_t now) {
  return Json()
      .set("name", std::string(name))
      .set("state", "incoming")
      .set("size", size)
      .set("mtime", mtime)
      .set("age_s", std::max<int64_t>(0, now - mtime));
}

Result<Json> list_view(const spool::Spool& spool, const ListRequest& req, int64_t now) {
  using Found = std::tuple<int64_t, std::string, Json>;
  auto by_time = [](const Found& a, const Found& b) {
    return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(b), std::get<1>(b));
  };
  // Sorted by arrival, then id (ids grow with the arrival time's microseconds).
  std::vector<Found> found;
  bool truncated = false;
  if (req.entries) {
    auto r = for_each_entry(spool, req.select, [&](const spool::EntryRef& ref, const spool::Entry& e) {
      if (found.size() >= req.limit) {
        truncated = true;
        return false;
      }
      found.emplace_back(e.arrived, e.id, message_json(ref, e));
      return true;
    });
    if (!r) return r.error();
    std::sort(found.begin(), found.end(), by_time);
  }
  // Drops not picked up yet, in what is left of the limit; one that pickup takes meanwhile is
  // skipped (it shows up as an entry the next time).
  std::vector<Found> drops;
  if (req.incoming) {
    size_t room = req.limit - std::min(req.limit, found.size());
    auto names = spool.list_incoming(room + 1);
    if (!names) return names.error();
    if (names->size() > room) truncated = true;
    const std::string dir = spool.dir() + "/incoming/";
    for (size_t i = 0; i < names->size() && i < room; ++i) {
      struct stat st {};
      if (::lstat((dir + (*names)[i]).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      drops.emplace_back(st.st_mtime, (*names)[i],
                         incoming_json((*names)[i], static_cast<uint64_t>(st.st_size), st.st_mtime, now));
    }
    std::sort(drops.begin(), drops.end(), by_time);
  }
  Json messages = Json::Array{}, incoming = Json::Array{};
  for (auto& f : found) messages.push(std::move(std::get<2>(f)));
  for (auto& d : drops) incoming.push(std::move(std::get<2>(d)));
  return ok_response()
      .set("messages", std::move(messages))
      .set("incoming", std::move(incoming))
      .set("truncated", truncated);
}

Result<Json> show_view(const spool::Spool& spool, std::string_view id) {
  auto ref = spool.find(id);
  if (!ref) return ref.error();
  if (!*ref) return make_error(fmt::format("{}: no such message", id));
  auto e = spool.read(**ref);
  if (!e) return e.error();
  Json m = message_json(**ref, *e);
  auto headers = read_headers(spool, *e);
  if (headers) {
    m.set("headers", headers->first).set("headers_truncated", headers->second);
  } else {
    m.set("headers", "").set("headers_error", headers.error().message);
  }
  return ok_response().set("message", std::move(m));
}

}  // namespace spoold::control
