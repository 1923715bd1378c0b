// spool/spool.cpp — opening a spool (layout, owner, VERSION), ids and names, scans, statistics and
// recovery. Rule: a scan decides due / not due from the directory listing alone ("<when>-<id>"
// names) and holds one directory stream, never the whole listing.
#include "spool/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "spool/crashpoint.h"

namespace spoold::spool {

namespace {

constexpr std::string_view kVersionFile = "VERSION";
constexpr std::string_view kVersionTag = "spoold-spool";

bool valid_id_chars(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c));
  });
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

uint32_t fnv1a(std::string_view s) {
  uint32_t h = 2166136261u;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h;
}

std::string system_hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

Result<void> make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return {};
  return sys_error("mkdir", path);
}

}  // namespace

std::string_view to_string(Place p) {
  switch (p) {
    case Place::queue:
      return "queue";
    case Place::hold:
      return "hold";
    case Place::failed:
      return "failed";
  }
  return "?";
}

std::string_view to_string(PickupOutcome o) {
  switch (o) {
    case PickupOutcome::queued:
      return "queued";
    case PickupOutcome::bad:
      return "bad";
    case PickupOutcome::gone:
      return "gone";
    case PickupOutcome::ignored:
      return "ignored";
  }
  return "?";
}

std::string EntryRef::file_name() const {
  return fmt::format("{:010}-{}", when, id);
}

std::optional<EntryRef> parse_entry_name(std::string_view name, Place place, int tier) {
  auto dash = name.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash > 19) return std::nullopt;
  EntryRef ref{place, tier, 0, std::string(name.substr(dash + 1))};
  auto [p, ec] = std::from_chars(name.data(), name.data() + dash, ref.when);
  if (ec != std::errc() || p != name.data() + dash || !valid_id_chars(ref.id)) return std::nullopt;
  return ref;
}

// Queue id: 9 hex digits of seconds, 5 of microseconds (so ids sort by arrival), 6 of the
// instance/host hash, 6 of the pid and 4 of a per-process counter (so they are unique across
// hosts and processes): 30 upper-case hex characters, safe in any file name.
int64_t id_time(std::string_view id) {
  if (id.size() != 30) return -1;
  int64_t t = 0;
  auto [p, ec] = std::from_chars(id.data(), id.data() + 9, t, 16);
  if (ec != std::errc() || p != id.data() + 9) return -1;
  return t;
}

std::string new_queue_id(const Options& o) {
  std::string host = o.hostname.empty() ? system_hostname() : o.hostname;
  std::string instance = o.instance.empty() ? host : o.instance;
  return make_queue_id(fmt::format("{:06X}", fnv1a(instance + "/" + host) & 0xFFFFFFu));
}

std::string make_queue_id(std::string_view host_hash) {
  static std::atomic<unsigned> counter{0};
  // The same clock as unix_now(), so an id's second is never later than a scan's cutoff taken after.
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return fmt::format("{:09X}{:05X}{}{:06X}{:04X}", static_cast<uint64_t>(ts.tv_sec) & 0xFFFFFFFFFull,
                     static_cast<unsigned>(ts.tv_nsec / 1000), host_hash,
                     static_cast<unsigned>(::getpid()) & 0xFFFFFFu, counter.fetch_add(1) & 0xFFFFu);
}

std::string Spool::new_id() const {
  return make_queue_id(host_hash_);
}

Spool::Spool(Options opts) : opts_(std::move(opts)) {
  if (opts_.hostname.empty()) opts_.hostname = system_hostname();
  if (opts_.instance.empty()) opts_.instance = opts_.hostname;
  if (opts_.owner_uid < 0) opts_.owner_uid = static_cast<long>(::geteuid());
  if (opts_.drop_uid < 0) opts_.drop_uid = opts_.owner_uid;
  host_hash_ = fmt::format("{:06X}", fnv1a(opts_.instance + "/" + opts_.hostname) & 0xFFFFFFu);
  lock_owner_ = std::make_shared<LockOwnerFile>(opts_.dir + "/tmp", opts_.instance, opts_.lock_stale_after);
}

Result<Spool> Spool::open(Options opts) {
  if (opts.dir.empty()) return make_error("spool_dir is empty");
  if (opts.tier_delays.empty()) return make_error("at least one tier is needed");
  while (opts.dir.size() > 1 && opts.dir.back() == '/') opts.dir.pop_back();
  Spool s(std::move(opts));
  if (auto r = make_dir(s.opts_.dir); !r) return r.error();
  struct stat st {};
  if (::stat(s.opts_.dir.c_str(), &st) != 0) return sys_error("stat", s.opts_.dir);
  if (!S_ISDIR(st.st_mode)) return make_error(s.opts_.dir + " is not a directory");
  if (static_cast<long>(st.st_uid) != s.opts_.owner_uid)
    return make_error(fmt::format("spool {} is owned by uid {}, not by uid {} (refusing to use it)",
                                  s.opts_.dir, st.st_uid, s.opts_.owner_uid));
  if (auto r = s.check_version(); !r) return r.error();
  if (auto r = s.create_layout(); !r) return r.error();
  std::string vpath = s.opts_.dir + "/" + std::string(kVersionFile);
  if (!path_exists(vpath)) {
    auto r = atomic_write(s.opts_.dir + "/tmp", vpath, {fmt::format("{} {}\n", kVersionTag, kSpoolVersion)});
    if (!r) return r.error();
  }
  return s;
}

Result<void> Spool::check_version() {
  std::string vpath = opts_.dir + "/" + std::string(kVersionFile);
  if (!path_exists(vpath)) return {};
  auto text = read_small_file(vpath, 256);
  if (!text) return text.error();
  std::string_view t = *text;
  if (t.substr(0, kVersionTag.size() + 1) != std::string(kVersionTag) + " ")
    return make_error(vpath + ": not a spoold spool version marker");
  t.remove_prefix(kVersionTag.size() + 1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  int v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size()) return make_error(vpath + ": unreadable version");
  if (v > kSpoolVersion || v < 1)
    return make_error(fmt::format("{}: spool format {} is not supported by this spoold (it reads 1..{})",
                                  vpath, v, kSpoolVersion));
  return {};
}

Result<void> Spool::create_layout() {
  for (const char* d : {"incoming", "queue", "failed", "bad", "hold", "tmp", "data"}) {
    if (auto r = make_dir(opts_.dir + "/" + d); !r) return r;
  }
  for (int t = 0; t < tiers(); ++t) {
    if (auto r = make_dir(place_dir(Place::queue, t)); !r) return r;
  }
  return fsync_dir(opts_.dir);
}

int64_t Spool::due_after(int tier, int64_t last_attempt) const {
  tier = std::clamp(tier, 0, tiers() - 1);
  return last_attempt + static_cast<int64_t>(opts_.tier_delays[static_cast<size_t>(tier)].count());
}

std::string Spool::place_dir(Place place, int tier) const {
  switch (place) {
    case Place::queue:
      return fmt::format("{}/queue/{}", opts_.dir, tier);
    case Place::hold:
      return opts_.dir + "/hold";
    case Place::failed:
      return opts_.dir + "/failed";
  }
  return opts_.dir;
}

std::string Spool::entry_path(const EntryRef& ref) const {
  return place_dir(ref.place, ref.tier) + "/" + ref.file_name();
}
std::string Spool::body_path(std::string_view id) const {
  return fmt::format("{}/data/{}", opts_.dir, id);
}
std::string Spool::lock_path(std::string_view id) const {
  return fmt::format("{}/data/{}.lock", opts_.dir, id);
}

Result<std::optional<Lock>> Spool::try_lock(std::string_view id) const {
  return Lock::try_acquire(lock_path(id), LockOptions{opts_.instance, opts_.lock_stale_after, lock_owner_});
}

Result<int64_t> Spool::fs_time() const {
  return fs_now(opts_.dir + "/tmp");
}

Result<void> Spool::probe_write() const {
  std::string path = fmt::format("{}/tmp/t.probe.{}.tmp", opts_.dir, unique_suffix());
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return sys_error("write probe", path);
  static const std::string block(4096, 'p');
  bool ok = ::write(fd.get(), block.data(), block.size()) == static_cast<ssize_t>(block.size());
  int err = errno;
  ::unlink(path.c_str());
  if (!ok) return sys_error("write probe", path, err == 0 ? ENOSPC : err);
  return {};
}

// ---- scans and statistics ------------------------------------------------------------------

Result<std::vector<EntryRef>> Scan::next(size_t max) {
  std::vector<EntryRef> out;
  while (out.size() < max) {
    auto name = dir_.next();
    if (!name) {
      done_ = true;
      break;
    }
    auto ref = parse_entry_name(*name, place_, tier_);
    if (ref && ref->when <= cutoff_) out.push_back(std::move(*ref));
  }
  return out;
}

Result<Scan> Spool::scan(Place place, int tier, int64_t cutoff) const {
  auto dir = DirReader::open(place_dir(place, tier));
  if (!dir) return dir.error();
  return Scan(std::move(*dir), place, tier, cutoff);
}

namespace {

Result<PlaceStats> place_stats(const std::string& dir, Place place, int tier) {
  auto rd = DirReader::open(dir);
  if (!rd) return rd.error();
  PlaceStats s;
  while (auto name = rd->next()) {
    auto ref = parse_entry_name(*name, place, tier);
    if (!ref) continue;
    ++s.count;
    int64_t t = id_time(ref->id);
    if (t >= 0 && (s.oldest_arrival == 0 || t < s.oldest_arrival)) s.oldest_arrival = t;
  }
  return s;
}

Result<size_t> count_names(const std::string& dir, bool (*want)(std::string_view)) {
  auto rd = DirReader::open(dir);
  if (!rd) return rd.error();
  size_t n = 0;
  while (auto name = rd->next()) n += want(*name) ? 1 : 0;
  return n;
}

bool is_drop_name(std::string_view n) {
  return !n.empty() && n[0] != '.' && n.find(".lock") == n.npos;
}
bool is_bad_name(std::string_view n) {
  return !n.empty() && n[0] != '.' && !ends_with(n, ".reason");
}

}  // namespace

Result<SpoolStats> Spool::stats() const {
  SpoolStats s;
  for (int t = 0; t < tiers(); ++t) {
    auto p = place_stats(place_dir(Place::queue, t), Place::queue, t);
    if (!p) return p.error();
    s.tiers.push_back(*p);
  }
  auto h = place_stats(place_dir(Place::hold, 0), Place::hold, 0);
  if (!h) return h.error();
  s.hold = *h;
  auto f = place_stats(place_dir(Place::failed, 0), Place::failed, 0);
  if (!f) return f.error();
  s.failed = *f;
  auto in = count_names(opts_.dir + "/incoming", is_drop_name);
  if (!in) return in.error();
  s.incoming = *in;
  auto bad = count_names(opts_.dir + "/bad", is_bad_name);
  if (!bad) return bad.error();
  s.bad = *bad;
  return s;
}

Result<std::vector<std::string>> Spool::list_incoming(
    size_t max, const std::function<bool(const std::string&)>& skip) const {
  auto rd = DirReader::open(opts_.dir + "/incoming");
  if (!rd) return rd.error();
  std::vector<std::string> out;
  while (out.size() < max) {
    auto name = rd->next();
    if (!name) break;
    if (is_drop_name(*name) && !(skip && skip(*name))) out.push_back(std::move(*name));
  }
  return out;
}

Result<std::optional<EntryRef>> Spool::find(std::string_view id) const {
  if (!valid_id_chars(id)) return std::optional<EntryRef>();
  std::vector<std::pair<Place, int>> places;
  places.reserve(static_cast<size_t>(tiers()) + 2);
  for (int t = 0; t < tiers(); ++t) places.emplace_back(Place::queue, t);
  places.emplace_back(Place::hold, 0);
  places.emplace_back(Place::failed, 0);
  for (auto [place, tier] : places) {
    auto rd = DirReader::open(place_dir(place, tier));
    if (!rd) return rd.error();
    while (auto name = rd->next()) {
      auto ref = parse_entry_name(*name, place, tier);
      if (ref && ref->id == id) return std::optional<EntryRef>(std::move(*ref));
    }
  }
  return std::optional<EntryRef>();
}

Result<Entry> Spool::read(const EntryRef& ref) const {
  auto text = read_small_file(entry_path(ref), kMaxEntryBytes);
  if (!text) return text.error();
  auto e = parse_entry(*text);
  if (!e) return make_error(entry_path(ref) + ": " + e.error().message);
  if (e->id != ref.id) return make_error(entry_path(ref) + ": id inside does not match the file name");
  return e;
}

// ---- recovery ------------------------------------------------------------------------------

Result<RecoverReport> Spool::recover() {
  RecoverReport rep;
  if (auto r = clean_stale_temps(opts_.dir + "/tmp", false, rep); !r) return r.error();
  if (auto r = clean_stale_temps(opts_.dir + "/data", true, rep); !r) return r.error();
  auto rd = DirReader::open(opts_.dir + "/data");
  if (!rd) return rd.error();
  while (auto name = rd->next()) {
    std::string_view n = *name;
    Result<bool> r = false;
    if (ends_with(n, ".new") && valid_id_chars(n.substr(0, n.size() - 4))) {
      r = recover_new(n.substr(0, n.size() - 4), rep);
    } else if (ends_with(n, ".done") && valid_id_chars(n.substr(0, n.size() - 5))) {
      r = recover_done(n.substr(0, n.size() - 5), rep);
    } else if (ends_with(n, ".lock") && valid_id_chars(n.substr(0, n.size() - 5))) {
      r = recover_lock(n.substr(0, n.size() - 5), rep);
    }
    if (!r) return r.error();
  }
  return rep;
}

// data/ID.new is a claimed drop (or an enqueued body) whose pickup did not finish.
Result<bool> Spool::recover_new(std::string_view id, RecoverReport& rep) {
  auto lock = try_lock(id);
  if (!lock) return lock.error();
  if (!*lock) {
    ++rep.busy;
    return false;
  }
  std::string claimed = body_path(id) + ".new";
  if (!path_exists(claimed)) return false;  // finished meanwhile
  // The envelope may be anywhere: a fresh claim writes it straight into its target place.
  auto where = find(id);
  if (!where) return where.error();
  if (*where) {
    if (auto r = durable_rename(claimed, body_path(id)); !r) return r.error();
    ++rep.pickups_completed;
  } else {
    // No entry was written: the drop goes back to incoming/ and is picked up afresh.
    if (auto r = durable_rename(claimed, opts_.dir + "/incoming/" + std::string(id)); !r) return r.error();
    ++rep.drops_restored;
  }
  return true;
}

// data/ID.done is an envelope whose removal did not finish: the body and it go.
Result<bool> Spool::recover_done(std::string_view id, RecoverReport& rep) {
  auto lock = try_lock(id);
  if (!lock) return lock.error();
  if (!*lock) {
    ++rep.busy;
    return false;
  }
  std::string done = body_path(id) + ".done";
  if (!path_exists(done)) return false;
  if (::unlink(body_path(id).c_str()) != 0 && errno != ENOENT) return sys_error("unlink", body_path(id));
  if (::unlink(done.c_str()) != 0 && errno != ENOENT) return sys_error("unlink", done);
  if (auto r = fsync_dir(opts_.dir + "/data"); !r) return r.error();
  ++rep.removals_completed;
  return true;
}

// A lock whose owner is provably dead (or that went stale) is taken and dropped, so it does not
// linger; a live lock is left alone (try_acquire has no side effects then).
Result<bool> Spool::recover_lock(std::string_view id, RecoverReport& rep) {
  if (!path_exists(lock_path(id))) return false;  // released meanwhile
  if (path_exists(body_path(id) + ".new") || path_exists(body_path(id) + ".done"))
    return false;  // handled above
  auto lock = try_lock(id);
  if (!lock) return lock.error();
  if (!*lock) return false;
  if (auto r = (*lock)->release(); !r) return r.error();
  ++rep.dead_locks_removed;
  return true;
}

// Temporary files (tmp/ writes, data/ lock temps and broken-lock asides) left by a crash are
// removed once they are older than lock_stale_after by the file system's clock — never sooner,
// because another host sharing the spool may be writing them right now.
Result<void> Spool::clean_stale_temps(const std::string& dir, bool lock_temps_only, RecoverReport& rep) {
  auto now = fs_time();
  if (!now) return now.error();
  auto rd = DirReader::open(dir);
  if (!rd) return rd.error();
  const std::string own_temp_prefix = fmt::format("t.{:x}.", static_cast<long>(::getpid()));
  while (auto name = rd->next()) {
    std::string_view n = *name;
    bool candidate =
        lock_temps_only ? (n.find(".lock.") != n.npos) : (n.rfind("t.", 0) == 0 && ends_with(n, ".tmp"));
    // This process's own temp files are in use (a message a slow client is still sending may go
    // untouched for longer than lock_stale_after); another process's are judged by their age.
    if (!candidate || (!lock_temps_only && n.rfind(own_temp_prefix, 0) == 0)) continue;
    std::string path = dir + "/" + *name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (*now - static_cast<int64_t>(st.st_mtim.tv_sec) <=
        static_cast<int64_t>(opts_.lock_stale_after.count()))
      continue;
    if (::unlink(path.c_str()) == 0) ++rep.temp_files_removed;
  }
  return {};
}

}  // namespace spoold::spool
