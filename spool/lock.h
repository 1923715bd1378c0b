// spool/lock.h — NFS-safe exclusive locks on spool entries (DESIGN.md guarantee 3).
// Rule: a lock is ours only if link() of our unique file made its link count 2 — link()'s return
// value is not trusted (NFS may retransmit). A lock is broken only when its owner is provably dead
// (same instance and boot id, pid gone) or it was not refreshed for stale_after by the FILE
// SYSTEM's clock; the breaker renames it aside and checks the inode, so two breakers never both win.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace spoold::spool {

class LockPool;

struct LockOptions {
  std::string instance;                   // who we are; written into the lock file
  std::chrono::seconds stale_after{600};  // lock_stale_after
  LockPool* pool = nullptr;               // reuse released lock files (see LockPool); null = off
};

// Released lock files kept for the next lock instead of being deleted. Creating and deleting a
// file per lock costs an inode allocation and a free — on ext4 without a journal the allocator
// scans recently deleted inodes, and a `discard` mount trims the freed block synchronously; that
// was the largest part of spoold's CPU per message. A recycled file is renamed into place and
// rewritten (new contents, new token), so it is a new lock by inode AND contents as before.
// The free files are <dir>/t.lock-free.<unique>.tmp: recover() deletes them once they have been
// unused for lock_stale_after, so a crash leaves nothing behind for long. Thread-safe.
class LockPool {
 public:
  explicit LockPool(std::string dir, size_t max_free = 256) : dir_(std::move(dir)), max_free_(max_free) {}
  ~LockPool();  // deletes the files still free
  LockPool(const LockPool&) = delete;
  LockPool& operator=(const LockPool&) = delete;

  std::optional<std::string> take();
  // Moves the released lock file at `path` into the pool. `declined`: the pool is full or the
  // rename failed — the caller deletes the file. `not_ours`: what the rename moved was someone
  // else's fresh lock (ours was broken after the caller's check); it was put back untouched.
  enum class Given { pooled, declined, not_ours };
  Given give(const std::string& path, ino_t ino, const std::string& content);
  size_t free_files() const;

 private:
  std::string dir_;
  size_t max_free_;
  mutable std::mutex mu_;
  std::vector<std::string> free_;
};

// What a lock file says about its holder: "<instance> <pid> <boot-id> <unix-time> <token>\n".
// The token makes every lock's contents unique, so a lock is recognised by inode AND contents:
// inode numbers are reused at once on many file systems and alone prove nothing.
struct LockOwner {
  std::string instance;
  long pid = 0;
  std::string boot_id;
  int64_t time = 0;
  std::string token;
};

// What identifies a held lock on disk (path, inode, contents), copyable so the lock can be
// refreshed on another thread than the one that owns the Lock (the daemon's thread pool).
struct LockId {
  std::string path, content;
  ino_t ino = 0;
};
// Touches the lock if it is still the one `id` names; an error if it is not (broken or released).
Result<void> refresh_lock(const LockId& id);

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
  LockId id() const { return LockId{path_, content_, ino_}; }

 private:
  Lock(std::string path, dev_t dev, ino_t ino, std::string content, LockPool* pool)
      : path_(std::move(path)),
        content_(std::move(content)),
        dev_(dev),
        ino_(ino),
        held_(true),
        pool_(pool) {}
  std::string path_;
  std::string content_;  // what we wrote; part of the lock's identity
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool held_ = false;
  LockPool* pool_ = nullptr;  // where the file goes on release (null: deleted)
};

Result<LockOwner> read_lock_owner(const std::string& path);
// This machine's boot id (/proc/sys/kernel/random/boot_id), read once.
const std::string& boot_id();

}  // namespace spoold::spool
