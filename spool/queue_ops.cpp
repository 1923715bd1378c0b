// spool/queue_ops.cpp — what happens to an entry once it is queued: claim (lock + read), move
// between tiers / hold / failed, removal, and access to its body.
// Rule: all of these need the entry's Lock; a move first rewrites the envelope in place
// (atomic_write) and then renames it, so a crash between leaves one valid envelope — at worst in
// its old place with new contents, which only means an early retry (at-least-once).
// Removal renames the envelope to data/ID.done first, so recover() can finish it.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "spool/crashpoint.h"
#include "spool/spool.h"

namespace spoold::spool {

Result<std::optional<Claimed>> Spool::claim(const EntryRef& ref) {
  auto lock = try_lock(ref.id);
  if (!lock) return lock.error();
  if (!*lock) return std::optional<Claimed>();
  auto text = read_small_file(entry_path(ref), kMaxEntryBytes);
  if (!text) {
    if (text.error().code == ENOENT) return std::optional<Claimed>();  // moved or removed meanwhile
    return text.error();
  }
  auto e = parse_entry(*text);
  if (e && e->id != ref.id) e = make_error("the id inside does not match the file name");
  if (!e) return quarantine(ref, e.error().message);
  // An entry whose pickup was interrupted after the envelope was written: finish it now.
  std::string body = body_path(ref.id);
  if (!path_exists(body) && path_exists(body + ".new")) {
    if (auto r = durable_rename(body + ".new", body); !r) return r.error();
  }
  return std::optional<Claimed>(Claimed{std::move(**lock), ref, std::move(*e)});
}

// An envelope that cannot be read would be retried on every scan for ever: it goes to
// bad/<name>.entry with a reason (its body stays in data/<id>), and the caller gets an error.
Error Spool::quarantine(const EntryRef& ref, const std::string& why) {
  std::string target = fmt::format("{}/bad/{}.entry", opts_.dir, ref.file_name());
  std::string reason =
      fmt::format("unreadable queue entry {} (body: data/{}): {}", entry_path(ref), ref.id, why);
  if (auto r = atomic_write(opts_.dir + "/tmp", target + ".reason", {reason, "\n"}); !r) return r.error();
  if (auto r = durable_rename(entry_path(ref), target); !r) return r.error();
  return make_error(reason + " — moved to " + target);
}

Result<void> Spool::move(Claimed& c, Place place, int tier, int64_t when) {
  if (!c.lock.still_held()) return make_error("lock for " + c.ref.id + " is no longer held");
  if (place == Place::queue && (tier < 0 || tier >= tiers()))
    return make_error(fmt::format("tier {} out of range 0..{}", tier, tiers() - 1));
  if (place != Place::queue) tier = 0;
  EntryRef to{place, tier, when, c.ref.id};
  if (c.fresh) {
    // The envelope is written straight to its target place, then the body takes its final name;
    // recover_new() finds an envelope anywhere, so a crash between the two completes, not repeats.
    if (auto r = write_entry(entry_path(to), c.entry); !r) return r;
    crashpoint("fresh.after_entry");
    if (auto r = durable_rename(body_path(c.ref.id) + ".new", body_path(c.ref.id)); !r) return r;
    c.fresh = false;
    c.ref = std::move(to);
    return {};
  }
  std::string from = entry_path(c.ref);
  if (auto r = write_entry(from, c.entry); !r) return r;
  crashpoint("move.after_write");
  std::string target = entry_path(to);
  if (target != from) {
    if (auto r = durable_rename(from, target); !r) return r;
  }
  crashpoint("move.after_rename");
  c.ref = std::move(to);
  return {};
}

Result<void> Spool::fail(Claimed& c, std::string reason, int64_t now) {
  c.entry.reason = std::move(reason);
  return move(c, Place::failed, 0, now);
}

Result<void> Spool::remove(Claimed& c) {
  if (!c.lock.still_held()) return make_error("lock for " + c.ref.id + " is no longer held");
  std::string body = body_path(c.ref.id);
  if (c.fresh) {
    // Nothing else exists on disk. No fsync: if the unlink is lost (power failure), recover()
    // returns the drop to incoming/ and it is sent again — at-least-once, never lost.
    if (::unlink((body + ".new").c_str()) != 0 && errno != ENOENT) return sys_error("unlink", body + ".new");
    crashpoint("fresh.after_remove");
    return c.lock.release();
  }
  if (auto r = durable_rename(entry_path(c.ref), body + ".done"); !r) return r;
  crashpoint("remove.after_envelope");
  if (::unlink(body.c_str()) != 0 && errno != ENOENT) return sys_error("unlink", body);
  crashpoint("remove.after_body");
  if (::unlink((body + ".done").c_str()) != 0 && errno != ENOENT) return sys_error("unlink", body + ".done");
  if (auto r = fsync_dir(opts_.dir + "/data"); !r) return r;
  return c.lock.release();
}

Result<void> Spool::unclaim(Claimed& c) {
  if (!c.fresh) return c.lock.release();
  if (!c.lock.still_held()) return make_error("lock for " + c.ref.id + " is no longer held");
  std::string claimed = body_path(c.ref.id) + ".new";
  // A failed move() may still have left its envelope (a write that failed after its rename):
  // then the pickup is completed, as recover() would, rather than undone.
  auto where = find(c.ref.id);
  if (!where) return where.error();
  if (*where) {
    if (auto r = durable_rename(claimed, body_path(c.ref.id)); !r) return r;
  } else if (auto r = durable_rename(claimed, opts_.dir + "/incoming/" + c.ref.id); !r) {
    return r;
  }
  c.fresh = false;
  return c.lock.release();
}

Result<void> Spool::return_fresh(Claimed& c) {
  if (!c.fresh) return make_error("return_fresh: " + c.ref.id + " is not a fresh claim");
  if (!c.lock.still_held()) return make_error("lock for " + c.ref.id + " is no longer held");
  std::string claimed = body_path(c.ref.id) + ".new";
  std::string back = opts_.dir + "/incoming/" + c.ref.id;
  // Never over a drop a producer happened to name like the id: that would destroy it. On EEXIST
  // the claim stays ours (the caller delivers it now).
  if (::renameat2(AT_FDCWD, claimed.c_str(), AT_FDCWD, back.c_str(), RENAME_NOREPLACE) != 0)
    return sys_error("return to incoming/", claimed);
  c.fresh = false;
  return c.lock.release();
}

Result<Body> Spool::open_body(const Entry& e) const {
  std::string path = body_path(e.id);
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid() && errno == ENOENT) {  // a fresh claim: the body still has its claim name
    path += ".new";
    fd = Fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!fd.valid()) return sys_error("open body", path);
  return Body{std::move(fd), e.body_offset, e.body_size};
}

}  // namespace spoold::spool
