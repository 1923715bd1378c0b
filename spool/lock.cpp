// spool/lock.cpp — see lock.h. The classic link(2) recipe from open(2)'s NFS notes, plus
// staleness judged against the file system's clock and an inode-checked break.
#include "spool/lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <ctime>

#include <fmt/format.h>

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

std::optional<LockOwner> parse_owner(std::string_view text) {
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
  o.boot_id = std::string(fields[2]);
  o.token = std::string(fields[4]);
  if (std::from_chars(fields[1].data(), fields[1].data() + fields[1].size(), o.pid).ec != std::errc())
    return std::nullopt;
  if (std::from_chars(fields[3].data(), fields[3].data() + fields[3].size(), o.time).ec != std::errc())
    return std::nullopt;
  return o;
}

bool owner_provably_dead(const LockOwner& o, const LockOptions& opts) {
  if (o.instance != sanitize(opts.instance) || o.boot_id != boot_id()) return false;  // another host or boot
  if (o.pid <= 0 || o.pid == static_cast<long>(::getpid())) return false;
  return ::kill(static_cast<pid_t>(o.pid), 0) != 0 && errno == ESRCH;
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
  auto owner = parse_owner(v.content);
  bool aged =
      fs_now - static_cast<int64_t>(st.st_mtim.tv_sec) > static_cast<int64_t>(opts.stale_after.count());
  v.stale = aged || (owner && owner_provably_dead(*owner, opts));
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
  std::string aside = fmt::format("{}.stale.{}", path, unique_suffix());
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

LockPool::~LockPool() {
  for (const auto& f : free_) ::unlink(f.c_str());
}

std::optional<std::string> LockPool::take() {
  std::lock_guard<std::mutex> g(mu_);
  if (free_.empty()) return std::nullopt;
  std::string f = std::move(free_.back());
  free_.pop_back();
  return f;
}

LockPool::Given LockPool::give(const std::string& path, ino_t ino, const std::string& content) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (free_.size() >= max_free_) return Given::declined;
  }
  std::string target = fmt::format("{}/t.lock-free.{}.tmp", dir_, unique_suffix());
  if (::rename(path.c_str(), target.c_str()) != 0) return Given::declined;
  // Between our check and the rename, someone may have broken our lock and taken a fresh one at
  // `path`: if what we moved is not ours, it goes back (link never overwrites) and is not pooled.
  if (!same_lock(target, ino, content)) {
    (void)::link(target.c_str(), path.c_str());
    ::unlink(target.c_str());
    return Given::not_ours;
  }
  std::lock_guard<std::mutex> g(mu_);
  free_.push_back(std::move(target));
  return Given::pooled;
}

size_t LockPool::free_files() const {
  std::lock_guard<std::mutex> g(mu_);
  return free_.size();
}

Result<std::optional<Lock>> Lock::try_acquire(const std::string& path, const LockOptions& opts) {
  std::string content =
      fmt::format("{} {} {} {} {}\n", sanitize(opts.instance), static_cast<long>(::getpid()), boot_id(),
                  static_cast<long long>(::time(nullptr)), unique_suffix());
  for (int round = 0; round < 3; ++round) {
    std::string mine = fmt::format("{}.{}.tmp", path, unique_suffix());
    struct stat st {};
    {
      // A pooled file is renamed to our unique name (only one taker can succeed) and rewritten in
      // place: no inode is allocated. Otherwise a new file, as always.
      bool recycled = false;
      if (opts.pool)
        if (auto f = opts.pool->take()) recycled = ::rename(f->c_str(), mine.c_str()) == 0;
      Fd fd(recycled ? ::open(mine.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
                     : ::open(mine.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
      if (!fd.valid()) {
        int err = errno;
        if (recycled) ::unlink(mine.c_str());
        return sys_error("create lock file", mine, err);
      }
      // pwrite + a shrink that keeps the first block: the file keeps its block, and its mtime is
      // now (a fresh lock is never judged by an old mtime).
      if (::pwrite(fd.get(), content.data(), content.size(), 0) != static_cast<ssize_t>(content.size()) ||
          ::fstat(fd.get(), &st) != 0 ||
          (st.st_size > static_cast<off_t>(content.size()) &&
           ::ftruncate(fd.get(), static_cast<off_t>(content.size())) != 0)) {
        int err = errno;
        ::unlink(mine.c_str());
        return sys_error("write lock file", mine, err);
      }
    }
    int link_rc = ::link(mine.c_str(), path.c_str());
    int link_errno = errno;
    struct stat after {};
    bool won = ::stat(mine.c_str(), &after) == 0 && after.st_nlink == 2;
    ::unlink(mine.c_str());
    if (won) return std::optional<Lock>(Lock(path, after.st_dev, after.st_ino, content, opts.pool));
    if (link_rc != 0 && link_errno != EEXIST) return sys_error("link lock", path, link_errno);
    Verdict v = judge(path, static_cast<int64_t>(st.st_mtim.tv_sec), opts);
    if (v.vanished) continue;
    if (!v.stale || !break_stale(path, v)) return std::optional<Lock>();
  }
  return std::optional<Lock>();
}

Lock::~Lock() {
  if (held_) (void)release();
}

Lock::Lock(Lock&& o) noexcept
    : path_(std::move(o.path_)),
      content_(std::move(o.content_)),
      dev_(o.dev_),
      ino_(o.ino_),
      held_(o.held_),
      pool_(o.pool_) {
  o.held_ = false;
}

Lock& Lock::operator=(Lock&& o) noexcept {
  if (this != &o) {
    if (held_) (void)release();
    path_ = std::move(o.path_);
    content_ = std::move(o.content_);
    dev_ = o.dev_;
    ino_ = o.ino_;
    held_ = o.held_;
    pool_ = o.pool_;
    o.held_ = false;
  }
  return *this;
}

bool Lock::still_held() const {
  return held_ && same_lock(path_, ino_, content_);
}

Result<void> refresh_lock(const LockId& id) {
  if (!same_lock(id.path, id.ino, id.content)) return make_error("lock " + id.path + " is no longer ours");
  if (::utimensat(AT_FDCWD, id.path.c_str(), nullptr, 0) != 0) return sys_error("touch lock", id.path);
  return {};
}

Result<void> Lock::refresh() {
  if (!held_) return make_error("lock " + path_ + " is no longer ours");
  return refresh_lock(id());
}

Result<void> Lock::release() {
  if (!held_) return {};
  held_ = false;
  if (!same_lock(path_, ino_, content_))
    return make_error("lock " + path_ + " was taken over before release");
  if (pool_) {
    switch (pool_->give(path_, ino_, content_)) {
      case LockPool::Given::pooled:
        return {};
      case LockPool::Given::not_ours:  // the same verdict as the check above, reached a moment later
        return make_error("lock " + path_ + " was taken over before release");
      case LockPool::Given::declined:
        break;
    }
  }
  if (::unlink(path_.c_str()) != 0) return sys_error("unlink lock", path_);
  return {};
}

Result<LockOwner> read_lock_owner(const std::string& path) {
  auto text = read_small_file(path, 512);
  if (!text) return text.error();
  auto o = parse_owner(*text);
  if (!o) return make_error("unreadable lock file " + path);
  return *o;
}

}  // namespace spoold::spool
