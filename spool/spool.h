// spool/spool.h — the on-disk queue: layout, pickup of drop files, queue entries, tier moves,
// locks, scans. The daemon calls it from the libuv thread pool; it never touches an event loop.
// Rule: every change is made of durable steps (atomic_write / rename + fsync(dir)) ordered so a
// crash between any two leaves either the drop file or exactly one entry; recover() finishes or
// undoes the interrupted step. An entry is changed only while its Lock is held (Claimed).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "spool/atomic_write.h"
#include "spool/drop.h"
#include "spool/entry.h"
#include "spool/fs_util.h"
#include "spool/lock.h"

namespace spoold::spool {

inline constexpr int kSpoolVersion = 1;  // the VERSION file says "spoold-spool 1"

struct Options {
  std::string dir;                                // spool_dir
  std::vector<std::chrono::seconds> tier_delays;  // one per tier; tier_delays.size() = number of tiers
  uint64_t max_message_size = 50ull * 1024 * 1024;
  std::chrono::seconds lock_stale_after{600};
  std::string instance;  // written into lock files; "" = hostname
  std::string hostname;  // part of the queue-id host hash
  long owner_uid = -1;   // the uid the spool must belong to; -1 = geteuid()
  long drop_uid = -1;    // the uid drop files must belong to; -1 = owner_uid
};

// Where an entry's envelope lives. queue: queue/<tier>/; hold: hold/; failed: failed/.
enum class Place { queue, hold, failed };
std::string_view to_string(Place p);

// An entry as seen in a directory listing: "<when>-<id>" where `when` is the due time (queue),
// the time it was held (hold) or the time it failed (failed), in unix seconds.
struct EntryRef {
  Place place = Place::queue;
  int tier = 0;  // meaningful for Place::queue
  int64_t when = 0;
  std::string id;
  std::string file_name() const;  // "<when>-<id>", when zero-padded to 10 digits
};

// A new queue id for the spool these options open, without opening it (`sendmail -bs` names its
// drop with it, so the id it reports is the one the daemon keeps; see Spool::reusable_id()).
std::string new_queue_id(const Options& options);
// The id format itself (spool.cpp): arrival time, then host_hash, pid and a per-process counter.
std::string make_queue_id(std::string_view host_hash);

// Parses "<digits>-<id>"; nullopt for anything else (locks, dot-files, foreign names).
std::optional<EntryRef> parse_entry_name(std::string_view name, Place place, int tier);
// The arrival time (unix seconds) encoded at the front of a queue id; -1 if not an id.
int64_t id_time(std::string_view id);

// An entry we hold the lock for. Destroying it releases the lock.
struct Claimed {
  Lock lock;
  EntryRef ref;
  Entry entry;
  // A drop claimed by claim_fresh(): its body is data/ID.new and no envelope exists on disk yet.
  // move() writes the envelope first (then the body takes its final name); remove() just unlinks.
  bool fresh = false;
};

// A new message given in memory (bounces, DSNs, `sendmail` fallback).
struct NewMessage {
  std::string sender;  // "" = null sender
  std::vector<std::string> recipients;
  std::string_view message;  // the RFC 5322 message
};

enum class PickupOutcome { queued, bad, gone, ignored };
std::string_view to_string(PickupOutcome o);

struct PickupResult {
  PickupOutcome outcome = PickupOutcome::gone;
  std::string id;      // queued
  std::string reason;  // bad (also written to bad/NAME.reason)
  std::string sender;  // queued: for "QID: from=<sender>, size=BYTES, nrcpt=N"
  uint64_t size = 0;
  size_t nrcpt = 0;
};

// claim_fresh(): the pickup outcome, and for a good drop the claimed message ready to deliver.
struct FreshPickup {
  PickupResult result;
  std::optional<Claimed> claimed;
};

struct RecoverReport {
  size_t pickups_completed = 0;  // entry was written: the body was moved into place
  size_t drops_restored = 0;     // no entry yet: the claimed drop went back to incoming/
  size_t removals_completed = 0;
  size_t temp_files_removed = 0;
  size_t dead_locks_removed = 0;  // locks left by a dead process (or older than lock_stale_after)
  size_t busy = 0;                // left alone because another live process holds the lock
};

struct PlaceStats {
  size_t count = 0;
  int64_t oldest_arrival = 0;  // from the queue ids; 0 when empty
};

struct SpoolStats {
  std::vector<PlaceStats> tiers;
  PlaceStats hold, failed;
  size_t incoming = 0, bad = 0;
};

// The message bytes of an entry: read `size` bytes starting at `offset` of fd.
struct Body {
  Fd fd;
  uint64_t offset = 0;
  uint64_t size = 0;
};

// Streams one directory of entries, yielding those with when <= cutoff, at most `max` per batch.
class Scan {
 public:
  Result<std::vector<EntryRef>> next(size_t max);
  bool done() const { return done_; }

 private:
  friend class Spool;
  Scan(DirReader dir, Place place, int tier, int64_t cutoff)
      : dir_(std::move(dir)), place_(place), tier_(tier), cutoff_(cutoff) {}
  DirReader dir_;
  Place place_;
  int tier_;
  int64_t cutoff_;
  bool done_ = false;
};

class Spool {
 public:
  // Creates the layout if missing (0700), checks owner and VERSION. Refuses a spool owned by
  // another uid or written by a newer, unknown format.
  static Result<Spool> open(Options opts);

  const Options& options() const { return opts_; }
  int tiers() const { return static_cast<int>(opts_.tier_delays.size()); }
  const std::string& dir() const { return opts_.dir; }
  // When an entry whose last attempt was at `last_attempt` is next due in `tier`.
  int64_t due_after(int tier, int64_t last_attempt) const;

  // Run once at start (and safe to run any time): finish or undo steps a crash interrupted.
  Result<RecoverReport> recover();

  // Up to `max` names in incoming/ that pickup() would look at (dot-files and locks skipped, and
  // names `skip` says no to).
  Result<std::vector<std::string>> list_incoming(
      size_t max, const std::function<bool(const std::string&)>& skip = nullptr) const;
  // Claims incoming/NAME, parses it and creates its entry in queue/0 (due at once).
  Result<PickupResult> pickup(std::string_view name);
  // The fast path for a drop that will be attempted at once: lock a new id, rename the drop to
  // data/ID.new and parse it — no envelope is written and nothing is fsynced (a drop is durable
  // when its writer renamed it in; a crash leaves it in incoming/ or in data/ID.new, which
  // recover() returns to incoming/). The caller either removes it (delivered: one unlink) or
  // move()s it, which writes the envelope durably — so the common case costs no fsync at all.
  Result<FreshPickup> claim_fresh(std::string_view name);
  // The file holding the message of a claimed entry (data/ID, or data/ID.new when fresh).
  std::string body_file(const Claimed& c) const { return body_path(c.ref.id) + (c.fresh ? ".new" : ""); }
  // Durably queues a message given in memory into queue/0; returns its id.
  Result<std::string> enqueue(const NewMessage& msg);

  // Entries in queue/<tier> (or hold/, failed/) with when <= cutoff, streamed.
  Result<Scan> scan(Place place, int tier, int64_t cutoff) const;
  // Locks the entry and reads it; nullopt if another process holds it or it has moved/gone.
  // An unreadable envelope is moved to bad/<name>.entry (+ .reason) and reported as an error.
  Result<std::optional<Claimed>> claim(const EntryRef& ref);
  // Finds an entry by id in any place (a directory walk; for operator commands, not hot paths).
  Result<std::optional<EntryRef>> find(std::string_view id) const;
  // Reads an entry without locking (status, show).
  Result<Entry> read(const EntryRef& ref) const;

  // Writes c.entry and moves it to place/tier with the given `when` (due/held/failed time).
  Result<void> move(Claimed& c, Place place, int tier, int64_t when);
  // Shorthands: keep the place, reschedule; next tier; hold/release; fail.
  Result<void> reschedule(Claimed& c, int tier, int64_t due) { return move(c, Place::queue, tier, due); }
  Result<void> hold(Claimed& c, int64_t now) { return move(c, Place::hold, 0, now); }
  Result<void> release_to_queue(Claimed& c, int64_t now) { return move(c, Place::queue, 0, now); }
  Result<void> fail(Claimed& c, std::string reason, int64_t now);
  // Removes envelope and body (delivered, or failed/ past retention); releases the lock.
  Result<void> remove(Claimed& c);
  // Gives up a claim whose outcome could not be written (a full disk): a fresh claim goes back to
  // incoming/ (a rename needs no space), so it is picked up again once claims work, instead of
  // waiting for the next sweep; what the attempt achieved is forgotten (at-least-once). A queued
  // entry just keeps its envelope as it was. Releases the lock.
  Result<void> unclaim(Claimed& c);
  // Hands a fresh claim that was never move()d back to incoming/ (as incoming/ID), releasing the
  // lock: the daemon does not want it in memory yet. Nothing is fsynced: a crash leaves it in
  // incoming/ or in data/ID.new, which recover() returns. A later pickup keeps the id (reusable_id()).
  Result<void> return_fresh(Claimed& c);

  // ---- messages received over SMTP (the daemon's listener) ----
  // A new temporary file in tmp/ for a message being received: the caller writes a whole drop
  // file into it (drop_envelope(), then the message) and sync()s it.
  Result<TempFile> receive_file() const { return TempFile::create(opts_.dir + "/tmp"); }
  struct Publication {
    TempFile* file = nullptr;  // synced
    std::string id;            // from new_id(): its name in incoming/, and its queue id at pickup
  };
  // Renames every file of the batch to incoming/<id> (never over an existing file), then fsyncs
  // incoming/ once for all of them: group commit. A message is durable when its result is ok.
  // When the fsync fails, every file of the batch fails; those already renamed stay in incoming/
  // (a client told 451 retries, so the message may be delivered twice: at least once).
  std::vector<Result<void>> publish(const std::vector<Publication>& batch) const;

  Result<Body> open_body(const Entry& e) const;
  Result<SpoolStats> stats() const;
  // The file system's clock as seen from this spool (for lock and retention decisions).
  Result<int64_t> fs_time() const;
  // Whether a write needing a new data block succeeds now (a 4 KiB file in tmp/, not fsynced,
  // deleted at once): the daemon asks before claiming anything while the spool was found full.
  Result<void> probe_write() const;

  // Paths (for the daemon's logs and spoolctl).
  std::string place_dir(Place place, int tier) const;
  std::string entry_path(const EntryRef& ref) const;
  std::string body_path(std::string_view id) const;
  std::string lock_path(std::string_view id) const;
  std::string new_id() const;

 private:
  explicit Spool(Options opts);
  Result<void> create_layout();
  Result<void> check_version();
  Result<std::optional<Lock>> try_lock(std::string_view id) const;
  // A drop named with a queue id of this spool (the listener's) keeps it at pickup, so the id the
  // client was told is the one in the log; any other name, a foreign, future or old id, or one
  // already in data/ gets a fresh id.
  static constexpr std::chrono::seconds kIdReuseFuture{60}, kIdReuseAge{86'400};
  bool reusable_id(std::string_view name, int64_t now) const;
  struct IdLock {
    std::string id;
    Result<std::optional<Lock>> lock;
  };
  IdLock id_for_drop(std::string_view name) const;
  Result<PickupResult> to_bad(const std::string& from, std::string_view name, std::string reason);
  Result<DropInfo> inspect_drop(const std::string& claimed, std::string_view name, PickupResult& bad);
  Result<PickupResult> finish_pickup(const std::string& claimed, std::string_view name, std::string id,
                                     Lock& lock);
  Result<void> write_entry(const std::string& path, const Entry& e) const;
  Error quarantine(const EntryRef& ref, const std::string& why);
  Result<bool> recover_new(std::string_view id, RecoverReport& rep);
  Result<bool> recover_done(std::string_view id, RecoverReport& rep);
  Result<bool> recover_lock(std::string_view id, RecoverReport& rep);
  Result<void> clean_stale_temps(const std::string& dir, bool lock_temps_only, RecoverReport& rep);

  Options opts_;
  std::string host_hash_;                      // 6 hex digits of hash(instance/hostname)
  std::shared_ptr<LockOwnerFile> lock_owner_;  // this process's locks are its hard links
};

}  // namespace spoold::spool
