// spool/lock.cpp — see lock.h. The link(2) recipe from open(2)'s NFS notes — judged by the inode
// the lock path names, not by link()'s return value — plus staleness judged against the file
// system's clock and an inode-checked break.
#include "spool/lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <string_view>

#include <fmt/format.h>

#include "common/clock.h"
#include "spool/atomic_write.h"
#include "spool/crashpoint.h"
#include "spool/fs_util.h"

namespace spoold::spool {

const std::string& boot_id() {
  static const std::string id = [] {
    auto r = read_small_file("/proc/sys/kernel/random/boot_id", 256);
    std::string s = r ? *r : std::string("unknown-boot");
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    return s;
  }();
  return id;
}

namespace {

std::string sanitize(std::string_view s) {
  std::string out;
  for (char c : s) out += std::isgraph(static_cast<unsigned char>(c)) ? c : '_';
  return out.empty() ? "_" : out;
}

// "<dev>:<ino>" of a namespace link such as /proc/self/ns/pid: two processes share the namespace
// exactly when both numbers match (namespaces(7)); "" if it cannot be read (no /proc).
std::string ns_id(const char* link) {
  struct stat st {};
  if (::stat(link, &st) != 0) return "";
  return fmt::format("{}:{}", static_cast<unsigned long long>(st.st_dev),
                     static_cast<unsigned long long>(st.st_ino));
}

// Field 22 of a /proc/<pid>/stat text: the start time in clock ticks after boot; 0 if unreadable.
// The command name (field 2) may hold spaces and parentheses, so fields count from the last ')'.
uint64_t stat_start_time(std::string_view text) {
  auto close = text.rfind(')');
  if (close == std::string_view::npos) return 0;
  text.remove_prefix(close + 1);
  for (int field = 3; field <= 22; ++field) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    auto token = text.substr(0, text.find_first_of(" \n"));
    text.remove_prefix(token.size());
    if (token.empty()) return 0;
    uint64_t v = 0;
    if (field == 22)
      return std::from_chars(token.data(), token.data() + token.size(), v).ec == std::errc() ? v : 0;
  }
  return 0;
}

uint64_t start_time_of(const std::string& stat_path) {
  auto text = read_small_file(stat_path, 4096);
  return text ? stat_start_time(*text) : 0;
}

// Whether /proc shows our own PID namespace, so /proc/<pid> is the process kill(pid) reaches (after
// a bare `unshare -pf` it is still the parent's). NSpid in /proc/self/status lists our pid in each
// namespace from /proc's down to ours: a single entry, ours, when they are the same.
bool proc_is_ours(long pid) {
  auto text = read_small_file("/proc/self/status", 65536);
  if (!text) return false;
  auto at = text->find("\nNSpid:");
  if (at == std::string::npos) return false;
  std::string_view line(*text);
  line = line.substr(at + 7);
  line = line.substr(0, line.find('\n'));
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  long listed = 0;
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), listed);
  return ec == std::errc() && end == line.data() + line.size() && listed == pid;
}

// This process as a lock owner, plus whether it can read other pids' start times.
struct Self {
  long pid = 0;
  LockOwner owner;
  bool proc_is_ours = false;
};

// Worked out once per thread and process: a forked child is another process (its own pid and
// start time), and a thread-local cache needs no mutex that a fork could leave locked.
const Self& self() {
  thread_local Self s;
  long pid = static_cast<long>(::getpid());
  if (s.pid == pid) return s;
  s.pid = pid;
  s.owner = LockOwner{};
  s.owner.pid = pid;
  s.owner.boot_id = boot_id();
  s.owner.pidns = ns_id("/proc/self/ns/pid");
  s.owner.timens = ns_id("/proc/self/ns/time");  // "" before Linux 5.6: then there are none
  s.owner.start_time = start_time_of("/proc/self/stat");
  s.proc_is_ours = proc_is_ours(pid);
  return s;
}

// What the kernel says about `pid` in our namespace: gone, or alive since when (if /proc tells).
PidProbe probe_pid(long pid, bool proc_ours) {
  PidProbe p;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
    p.exists = false;
    return p;
  }
  if (proc_ours) p.start_time = start_time_of(fmt::format("/proc/{}/stat", pid));
  return p;
}

bool dead_by_pid(const LockOwner& o, const LockOptions& opts) {
  const Self& me = self();
  LockOwner judge = me.owner;
  judge.instance = sanitize(opts.instance);
  return owner_provably_dead(o, judge, [&](long pid) { return probe_pid(pid, me.proc_is_ours); });
}

// unique_suffix() is "<pid>.<counter>": unique on one host and in one PID namespace only. Daemons
// in containers are often both pid 1, and hosts sharing an NFS spool repeat pids too, so the names
// and tokens made here carry 64 random bits as well (owner files are made with O_EXCL, and a
// breaker's rename aside would replace another breaker's file of the same name).
std::string lock_unique() {
  uint64_t r = 0;
  if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r))
    r = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return fmt::format("{}.{:016x}", unique_suffix(), r);
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

// Fills boot_id, pidns, timens and start_time from "<boot-id>[,key=value]..."; unknown keys are
// skipped (a later version may add some), "-" means unknown.
void parse_context(std::string_view field, LockOwner& o) {
  auto comma = field.find(',');
  o.boot_id = std::string(field.substr(0, comma));
  while (comma != std::string_view::npos) {
    field.remove_prefix(comma + 1);
    comma = field.find(',');
    auto item = field.substr(0, comma);
    auto eq = item.find('=');
    if (eq == std::string_view::npos) continue;
    auto key = item.substr(0, eq), value = item.substr(eq + 1);
    if (value == "-") continue;
    if (key == "pidns") o.pidns = std::string(value);
    if (key == "timens") o.timens = std::string(value);
    if (key == "start") (void)std::from_chars(value.data(), value.data() + value.size(), o.start_time);
  }
}

struct Verdict {
  bool vanished = false;  // no lock file any more: just try again
  bool stale = false;
  ino_t ino = 0;
  std::string content;  // with ino, identifies exactly the lock we judged
};

// Reads the lock through one fd so the contents and the inode we judge belong together.
Verdict judge(const std::string& path, int64_t fs_now, const LockOptions& opts) {
  Verdict v;
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    v.vanished = errno == ENOENT;
    return v;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return v;
  v.ino = st.st_ino;
  char buf[512];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n > 0) v.content.assign(buf, static_cast<size_t>(n));
  auto owner = parse_lock_owner(v.content);
  bool aged =
      fs_now - static_cast<int64_t>(st.st_mtim.tv_sec) > static_cast<int64_t>(opts.stale_after.count());
  v.stale = aged || (owner && dead_by_pid(*owner, opts));
  return v;
}

bool same_lock(const std::string& path, ino_t ino, const std::string& content) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || st.st_ino != ino) return false;
  auto now = read_small_file(path, 512);
  return now && *now == content;
}

// Renames the judged lock aside; true if what we moved was exactly the lock we judged stale.
bool break_stale(const std::string& path, const Verdict& judged) {
  std::string aside = fmt::format("{}.stale.{}", path, lock_unique());
  if (::rename(path.c_str(), aside.c_str()) != 0) return errno == ENOENT;
  crashpoint("lock.after_break_rename");
  bool ours = same_lock(aside, judged.ino, judged.content);
  if (!ours) {
    // We displaced a fresh lock another breaker just took: put it back (link never overwrites).
    (void)::link(aside.c_str(), path.c_str());
  }
  ::unlink(aside.c_str());
  return ours;
}

}  // namespace

LockOwnerFile::LockOwnerFile(std::string dir, std::string instance, std::chrono::seconds stale_after)
    : dir_(std::move(dir)), instance_(std::move(instance)), stale_after_(stale_after) {}

LockOwnerFile::~LockOwnerFile() {
  if (file_ && pid_ == static_cast<long>(::getpid())) ::unlink(file_->path.c_str());
}

namespace {

std::string owner_content(const std::string& instance) {
  LockOwner o = lock_owner_self(instance);
  o.time = unix_now();
  o.token = lock_unique();
  return format_lock_owner(o);
}

// Creates `path` exclusively with `content`; the returned file's mtime is now (the fs clock).
Result<std::shared_ptr<LockOwnerFile::File>> create_owner_file(std::string path, std::string content) {
  auto f = std::make_shared<LockOwnerFile::File>();
  f->fd = UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!f->fd.valid()) return sys_error("create lock file", path);
  struct stat st {};
  if (::write(f->fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()) ||
      ::fstat(f->fd.get(), &st) != 0) {
    int err = errno ? errno : EIO;
    ::unlink(path.c_str());
    return sys_error("write lock file", path, err);
  }
  f->path = std::move(path);
  f->content = std::move(content);
  f->dev = st.st_dev;
  f->ino = st.st_ino;
  f->touched = std::chrono::steady_clock::now();
  return f;
}

// The file system's clock: touch our own file and read its mtime back.
Result<int64_t> fs_now_via(const LockOwnerFile::File& f) {
  struct stat st {};
  if (::futimens(f.fd.get(), nullptr) != 0 || ::fstat(f.fd.get(), &st) != 0)
    return sys_error("touch lock file", f.path);
  return static_cast<int64_t>(st.st_mtim.tv_sec);
}

// The lock path names exactly the inode we keep open: ours (see the file comment).
bool links_to(const std::string& path, const LockOwnerFile::File& f) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && st.st_ino == f.ino && st.st_dev == f.dev;
}

}  // namespace

Result<std::shared_ptr<LockOwnerFile::File>> LockOwnerFile::make_file() {
  return create_owner_file(fmt::format("{}/t.lock-owner.{}.tmp", dir_, lock_unique()),
                           owner_content(instance_));
}

void LockOwnerFile::adopt_locked() {
  long pid = static_cast<long>(::getpid());
  if (pid_ == pid) return;
  // First use, or a forked child: the parent's file and locks are not ours.
  file_.reset();
  held_.clear();
  pid_ = pid;
}

Result<std::shared_ptr<LockOwnerFile::File>> LockOwnerFile::current() {
  std::lock_guard<std::mutex> g(mu_);
  adopt_locked();
  if (!file_) {
    auto f = make_file();
    if (!f) return f.error();
    file_ = std::move(*f);
    return file_;
  }
  auto now = std::chrono::steady_clock::now();
  if (now - file_->touched > stale_after_ / 4) {
    if (::futimens(file_->fd.get(), nullptr) != 0) return sys_error("touch lock file", file_->path);
    file_->touched = now;
  }
  return file_;
}

void LockOwnerFile::retire(const std::shared_ptr<File>& f) {
  std::lock_guard<std::mutex> g(mu_);
  if (file_ != f) return;  // another thread retired it already
  ::unlink(f->path.c_str());
  file_.reset();
}

bool LockOwnerFile::mark_held(const std::string& lock_path) {
  std::lock_guard<std::mutex> g(mu_);
  adopt_locked();
  return held_.insert(lock_path).second;
}

void LockOwnerFile::unmark_held(const std::string& lock_path) {
  std::lock_guard<std::mutex> g(mu_);
  held_.erase(lock_path);
}

Result<std::optional<Lock>> Lock::try_acquire(const std::string& path, const LockOptions& opts) {
  const auto& shared = opts.owner;
  if (shared && !shared->mark_held(path)) return std::optional<Lock>();  // another thread of ours has it
  auto unmark = [&] {
    if (shared) shared->unmark_held(path);
  };
  for (int round = 0; round < 4; ++round) {
    std::shared_ptr<LockOwnerFile::File> file;
    if (shared) {
      auto f = shared->current();
      if (!f) {
        unmark();
        return f.error();
      }
      file = std::move(*f);
    } else {
      auto f = create_owner_file(fmt::format("{}.{}.tmp", path, lock_unique()), owner_content(opts.instance));
      if (!f) return f.error();
      file = std::move(*f);
    }
    int link_rc = ::link(file->path.c_str(), path.c_str());
    int link_errno = errno;
    bool won = links_to(path, *file);
    if (!shared) ::unlink(file->path.c_str());  // the lock keeps the inode (and we its fd)
    if (won) return std::optional<Lock>(Lock(path, std::move(file), shared));
    if (link_rc != 0 && shared && (link_errno == ENOENT || link_errno == EMLINK)) {
      // Our owner file's name was deleted (recover() of another process found it untouched for
      // lock_stale_after) or it has as many links as the file system allows: use a new one.
      shared->retire(file);
      continue;
    }
    if (link_rc != 0 && link_errno != EEXIST) {
      unmark();
      return sys_error("link lock", path, link_errno);
    }
    auto fs_now = fs_now_via(*file);
    if (!fs_now) {
      unmark();
      return fs_now.error();
    }
    Verdict v = judge(path, *fs_now, opts);
    if (v.vanished) continue;
    // Our own inode after all (link() reported a failure for a link it made: an NFS retransmit).
    if (v.ino == file->ino && links_to(path, *file))
      return std::optional<Lock>(Lock(path, std::move(file), shared));
    if (!v.stale || !break_stale(path, v)) {
      unmark();
      return std::optional<Lock>();
    }
  }
  unmark();
  return std::optional<Lock>();
}

Lock::~Lock() {
  if (held_) (void)release();
}

Lock::Lock(Lock&& o) noexcept
    : path_(std::move(o.path_)), file_(std::move(o.file_)), shared_(std::move(o.shared_)), held_(o.held_) {
  o.held_ = false;
}

Lock& Lock::operator=(Lock&& o) noexcept {
  if (this != &o) {
    if (held_) (void)release();
    path_ = std::move(o.path_);
    file_ = std::move(o.file_);
    shared_ = std::move(o.shared_);
    held_ = o.held_;
    o.held_ = false;
  }
  return *this;
}

bool Lock::still_held() const {
  return held_ && file_ && links_to(path_, *file_);
}

Result<void> refresh_lock(const LockId& id) {
  if (!same_lock(id.path, id.ino, id.content)) return make_error("lock " + id.path + " is no longer ours");
  if (::utimensat(AT_FDCWD, id.path.c_str(), nullptr, 0) != 0) return sys_error("touch lock", id.path);
  return {};
}

bool lock_still_ours(const LockId& id) {
  return same_lock(id.path, id.ino, id.content);
}

Result<void> Lock::refresh() {
  if (!held_) return make_error("lock " + path_ + " is no longer ours");
  return refresh_lock(id());
}

Result<void> Lock::release() {
  if (!held_) return {};
  held_ = false;
  // Unmarked only once the link is gone: until then another thread of ours taking this lock would
  // find our inode at the path and count it as won.
  struct Unmark {
    LockOwnerFile* owner;
    const std::string& path;
    ~Unmark() {
      if (owner) owner->unmark_held(path);
    }
  } unmark{shared_.get(), path_};
  if (!links_to(path_, *file_)) return make_error("lock " + path_ + " was taken over before release");
  if (::unlink(path_.c_str()) != 0) return sys_error("unlink lock", path_);
  return {};
}

std::optional<LockOwner> parse_lock_owner(std::string_view text) {
  LockOwner o;
  std::string_view fields[5];
  for (size_t i = 0; i < 5; ++i) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    auto sp = text.find_first_of(" \n");
    fields[i] = text.substr(0, sp);
    text = sp == std::string_view::npos ? std::string_view() : text.substr(sp);
    if (fields[i].empty() && i < 4) return std::nullopt;  // the token (5th) is optional
  }
  o.instance = std::string(fields[0]);
  parse_context(fields[2], o);
  o.token = std::string(fields[4]);
  if (std::from_chars(fields[1].data(), fields[1].data() + fields[1].size(), o.pid).ec != std::errc())
    return std::nullopt;
  if (std::from_chars(fields[3].data(), fields[3].data() + fields[3].size(), o.time).ec != std::errc())
    return std::nullopt;
  return o;
}

std::string format_lock_owner(const LockOwner& o) {
  return fmt::format("{} {} {},pidns={},timens={},start={} {} {}\n", sanitize(o.instance), o.pid,
                     sanitize(o.boot_id), or_dash(o.pidns), or_dash(o.timens),
                     o.start_time ? std::to_string(o.start_time) : "-", o.time, o.token);
}

LockOwner lock_owner_self(const std::string& instance) {
  LockOwner o = self().owner;
  o.instance = sanitize(instance);
  return o;
}

bool owner_provably_dead(const LockOwner& lock, const LockOwner& me, const PidProber& probe) {
  // Another host (instance) or another boot: the pid is not ours to look up.
  if (lock.instance != me.instance || lock.boot_id != me.boot_id) return false;
  // A pid names a process only inside its PID namespace. A lock without one (an older spoold) may
  // be a live daemon's in another container with the same instance name: age decides.
  if (lock.pidns.empty() || lock.pidns != me.pidns || lock.pid <= 0) return false;
  PidProbe p = probe(lock.pid);
  if (!p.exists) return true;
  // The pid is taken — by the owner, or by a process that got it after the owner died. Start times
  // are shifted by the time namespace they are read in, so only compare them within one.
  bool comparable = lock.start_time != 0 && p.start_time != 0 && lock.timens == me.timens;
  return comparable && p.start_time != lock.start_time;
}

Result<LockOwner> read_lock_owner(const std::string& path) {
  auto text = read_small_file(path, 512);
  if (!text) return text.error();
  auto o = parse_lock_owner(*text);
  if (!o) return make_error("unreadable lock file " + path);
  return *o;
}

}  // namespace spoold::spool
