// spool/lock.h — NFS-safe exclusive locks on spool entries (docs/design.md guarantee 3).
// Rule: a lock is a hard link of its holder's owner file at the lock path. It is ours only while
// the lock path is our owner file's inode — link()'s return value is not trusted (NFS may
// retransmit). We keep that file open, so its inode number cannot be reused while we look. A lock
// is broken only when its owner is provably dead (owner_provably_dead: same instance, boot and PID
// namespace, and its pid gone or now another process) or it was not refreshed for stale_after by
// the FILE SYSTEM's clock; the breaker renames it aside and checks inode and contents, so two
// breakers never both win. A pid means nothing outside its PID namespace (containers), so an owner
// in another namespace — or one whose namespace is unknown (an older lock) — is judged by age only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace spoold::spool {

struct LockOptions {
  std::string instance;                   // who we are; written into the owner file
  std::chrono::seconds stale_after{600};  // lock_stale_after
  // The process's shared owner file (see LockOwnerFile); null = a private one per lock, created
  // next to the lock and unlinked once linked (the classic one-file-per-lock recipe).
  std::shared_ptr<class LockOwnerFile> owner;
};

// One file per process whose hard links are the process's locks: `<dir>/t.lock-owner.<unique>.tmp`
// holding "<instance> <pid> <context> <unix-time> <token>\n". Taking a lock is then one link()
// and one stat() — no inode allocated, no data block — where a file per lock cost an inode
// allocation and a free (on ext4 without a journal the allocator scans recently deleted inodes:
// the largest part of the daemon's CPU per message), and a full disk could not take new locks.
// All locks of a process share the owner file's mtime, so one touch refreshes them all.
// recover() deletes owner files not touched for lock_stale_after; one in use is touched before
// it is linked whenever its last touch is older than a quarter of that, so a lock never starts
// out looking stale, and a new one is made if the name was deleted (or the link count is full).
// Thread-safe. A forked child makes its own (the pid in the contents must be the holder's).
class LockOwnerFile {
 public:
  LockOwnerFile(std::string dir, std::string instance, std::chrono::seconds stale_after);
  ~LockOwnerFile();  // unlinks the name; locks still linked keep the inode
  LockOwnerFile(const LockOwnerFile&) = delete;
  LockOwnerFile& operator=(const LockOwnerFile&) = delete;

  // One generation of the owner file: its fd stays open while any lock links to it.
  struct File {
    std::string path, content;
    UniqueFd fd;
    dev_t dev = 0;
    ino_t ino = 0;
    std::chrono::steady_clock::time_point touched{};
  };
  // The current file, touched if due (created on first use, or again after `retire`).
  Result<std::shared_ptr<File>> current();
  // `f` can take no more links (its name is gone, or EMLINK): the next current() makes a new one.
  void retire(const std::shared_ptr<File>& f);

  // Lock paths this process holds through its owner file: a second acquire of one of them from
  // another thread would find "our" inode there and must not count it as won.
  bool mark_held(const std::string& lock_path);
  void unmark_held(const std::string& lock_path);

 private:
  Result<std::shared_ptr<File>> make_file();
  void adopt_locked();  // with mu_ held: start afresh if this is not the process that made file_
  std::string dir_, instance_;
  std::chrono::seconds stale_after_;
  std::mutex mu_;
  std::shared_ptr<File> file_;
  long pid_ = 0;  // the process that made file_
  std::set<std::string> held_;
};

// What a lock file says about its holder: "<instance> <pid> <context> <unix-time> <token>\n"
// (unix-time: when the owner file was made). The token makes every owner file's contents unique,
// so another process recognises a lock it judged by inode AND contents: it does not hold the file
// open, and inode numbers are reused at once on many file systems.
// <context> says where <pid> means something: "<boot-id>,pidns=<dev>:<ino>,timens=<dev>:<ino>,
// start=<ticks>" ("-" for an unknown value). Older spoolds wrote the bare boot id there; they
// compare the whole field with their boot id, so to them a new lock is from "another boot" and
// judged by age only — never by a pid they cannot interpret.
struct LockOwner {
  std::string instance;
  long pid = 0;
  std::string boot_id;
  int64_t time = 0;
  std::string token;
  // The owner's PID (and time) namespace, "<dev>:<ino>" of /proc/self/ns/pid (…/time); "" when
  // unknown — an older lock, or no /proc — and then its pid proves nothing.
  std::string pidns, timens;
  // /proc/<pid>/stat field 22 (clock ticks after boot, as seen in timens); 0 = unknown. Tells
  // "the owner is alive" from "another process got its pid".
  uint64_t start_time = 0;
};
std::string format_lock_owner(const LockOwner& o);  // the line above, with its newline
std::optional<LockOwner> parse_lock_owner(std::string_view text);
// This process as a lock owner (time and token left empty): what its owner files say.
LockOwner lock_owner_self(const std::string& instance);

// What the judge's kernel says about a pid, looked up in the judge's own PID namespace.
struct PidProbe {
  bool exists = true;       // kill(pid, 0) did not fail with ESRCH
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22; 0 = unknown (no /proc of our namespace)
};
using PidProber = std::function<PidProbe(long pid)>;
// The pure rule: may `me` break `lock` without waiting for it to go stale? Only if the lock names
// our instance, boot and PID namespace, and its pid is gone or (same time namespace, start times
// known) now belongs to a process started at another time. `probe` is only asked when the pid is
// meaningful to us. Anything else — another host, boot or namespace, a lock without a namespace —
// is judged by age only (live owners refresh their locks).
bool owner_provably_dead(const LockOwner& lock, const LockOwner& me, const PidProber& probe);

// What identifies a held lock on disk (path, inode, contents), copyable so the lock can be
// refreshed on another thread than the one that owns the Lock (the daemon's thread pool).
struct LockId {
  std::string path, content;
  ino_t ino = 0;
};
// Touches the lock if it is still the one `id` names; an error if it is not (broken or released).
Result<void> refresh_lock(const LockId& id);
// The lock path still names the lock `id` describes (false: broken by someone, or released).
bool lock_still_ours(const LockId& id);

class Lock {
 public:
  // nullopt when someone else holds a lock that is not stale; an Error on I/O trouble.
  static Result<std::optional<Lock>> try_acquire(const std::string& path, const LockOptions& opts);

  ~Lock();  // releases
  Lock(Lock&& o) noexcept;
  Lock& operator=(Lock&& o) noexcept;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Touch the lock so it does not go stale; an error if it is no longer ours (it was broken).
  Result<void> refresh();
  // Remove the lock if it is still ours; an error says it was taken over meanwhile.
  Result<void> release();
  // Still ours on disk (same inode at the lock path)?
  bool still_held() const;
  bool held() const { return held_; }
  const std::string& path() const { return path_; }
  LockId id() const { return LockId{path_, file_ ? file_->content : "", file_ ? file_->ino : 0}; }

 private:
  Lock(std::string path, std::shared_ptr<LockOwnerFile::File> file, std::shared_ptr<LockOwnerFile> shared)
      : path_(std::move(path)), file_(std::move(file)), shared_(std::move(shared)), held_(true) {}
  std::string path_;
  std::shared_ptr<LockOwnerFile::File> file_;  // the inode linked at path_ (kept open)
  std::shared_ptr<LockOwnerFile> shared_;      // the process's owner file, or null (a private file)
  bool held_ = false;
};

Result<LockOwner> read_lock_owner(const std::string& path);
// This machine's boot id (/proc/sys/kernel/random/boot_id), read once.
const std::string& boot_id();

}  // namespace spoold::spool
