// spool/pickup.cpp — turning a drop file into a queue entry, and enqueueing a message from memory.
// Rule (the order of durable steps, each a crash point):
//   lock ID → rename incoming/NAME → data/ID.new (the claim) → write queue/0/<t>-ID
//   → rename data/ID.new → data/ID → unlock.
// Before the entry exists, recover() moves data/ID.new back to incoming/; after, it completes the
// last rename. So a crash leaves the drop or one entry, never both, never neither. The body is
// never copied: the drop file itself becomes data/ID.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>

#include "common/clock.h"

#include <fmt/format.h>

#include "spool/crashpoint.h"
#include "spool/spool.h"

namespace spoold::spool {

namespace {

bool ignored_name(std::string_view name) {
  return name.empty() || name[0] == '.' || name.find('/') != name.npos || name.find(".lock") != name.npos;
}

std::string file_kind(mode_t m) {
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  return "not a regular file";
}

// Slack over max_message_size for the envelope lines before the message; checked before parsing
// so a huge file is refused without reading it. The exact limit applies to the message itself.
PickupResult outcome_only(PickupOutcome o, std::string reason = "") {
  PickupResult r;
  r.outcome = o;
  r.reason = std::move(reason);
  return r;
}

constexpr uint64_t kEnvelopeSlack = 1024 * 1024;

Entry entry_from(const DropInfo& info, std::string id) {
  Entry e;
  e.arrived = id_time(id);
  e.id = std::move(id);
  e.sender = info.sender;
  for (size_t i = 0; i < info.recipients.size(); ++i)
    e.recipients.push_back(Recipient{info.recipients[i], RcptState::pending, 0, "",
                                     i < info.recipient_dsn.size() ? info.recipient_dsn[i] : RecipientDsn{}});
  e.dsn = info.dsn;
  e.body_offset = info.body_offset;
  e.body_size = info.message_size();
  e.longest_line = info.longest_line;
  e.flags.missing_date = info.missing_date;
  e.flags.missing_message_id = info.missing_message_id;
  e.flags.eight_bit = info.eight_bit;
  e.flags.has_bcc = info.has_bcc;
  return e;
}

}  // namespace

bool Spool::reusable_id(std::string_view name, int64_t now) const {
  int64_t t = id_time(name);
  if (t < 0 || name.substr(14, 6) != host_hash_) return false;
  if (t > now + kIdReuseFuture.count() || t < now - kIdReuseAge.count()) return false;
  for (char c : name)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::islower(static_cast<unsigned char>(c)))
      return false;
  return !path_exists(body_path(name)) && !path_exists(body_path(name) + ".new");
}

Spool::IdLock Spool::id_for_drop(std::string_view name) const {
  if (reusable_id(name, unix_now())) {
    auto lock = try_lock(name);
    if (!lock || *lock) return {std::string(name), std::move(lock)};
  }
  std::string id = new_id();
  auto lock = try_lock(id);
  return {std::move(id), std::move(lock)};
}

Result<void> Spool::write_entry(const std::string& path, const Entry& e) const {
  return atomic_write(opts_.dir + "/tmp", path, {format_entry(e)});
}

Result<PickupResult> Spool::pickup(std::string_view name) {
  if (ignored_name(name)) return outcome_only(PickupOutcome::ignored);
  auto [id, lock] = id_for_drop(name);
  if (!lock) return lock.error();
  if (!*lock) return make_error("fresh queue id " + id + " is already locked");
  crashpoint("pickup.after_lock");
  std::string claimed = body_path(id) + ".new";
  std::string from = opts_.dir + "/incoming/" + std::string(name);
  if (::rename(from.c_str(), claimed.c_str()) != 0) {
    if (errno == ENOENT) return outcome_only(PickupOutcome::gone);  // another daemon claimed it
    return sys_error("claim", from);
  }
  if (auto r = fsync_dir(opts_.dir + "/data"); !r) return r.error();
  if (auto r = fsync_dir(opts_.dir + "/incoming"); !r) return r.error();
  crashpoint("pickup.after_claim");
  return finish_pickup(claimed, name, std::move(id), **lock);
}

// Checks the claimed drop (kind, links, owner, size) and parses it. On refusal the file is already
// in bad/ and `bad` says so; the returned error then has code -1 (not an I/O failure).
Result<DropInfo> Spool::inspect_drop(const std::string& claimed, std::string_view name, PickupResult& bad) {
  auto refuse = [&](std::string why) -> Result<DropInfo> {
    auto r = to_bad(claimed, name, std::move(why));
    if (!r) return r.error();
    bad = std::move(*r);
    return make_error(bad.reason, -1);
  };
  Fd fd(::open(claimed.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ELOOP) return refuse("symbolic link refused");
    return refuse(fmt::format("cannot open: {}", std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error("fstat", claimed);
  if (!S_ISREG(st.st_mode)) return refuse(file_kind(st.st_mode) + " refused");
  if (st.st_nlink != 1) return refuse(fmt::format("file has {} hard links (refused)", st.st_nlink));
  if (static_cast<long>(st.st_uid) != opts_.drop_uid)
    return refuse(fmt::format("file owned by uid {}, not {} (refused)", st.st_uid, opts_.drop_uid));
  if (static_cast<uint64_t>(st.st_size) > opts_.max_message_size + kEnvelopeSlack)
    return refuse(
        fmt::format("file of {} bytes exceeds max_message_size {}", st.st_size, opts_.max_message_size));
  auto info = parse_drop_fd(fd.get());
  if (!info) return refuse(info.error().message);
  if (info->message_size() > opts_.max_message_size)
    return refuse(fmt::format("message of {} bytes exceeds max_message_size {}", info->message_size(),
                              opts_.max_message_size));
  return info;
}

Result<PickupResult> Spool::finish_pickup(const std::string& claimed, std::string_view name, std::string id,
                                          Lock& lock) {
  PickupResult bad;
  auto info = inspect_drop(claimed, name, bad);
  if (!info) {
    if (info.error().code == -1) return bad;
    return info.error();
  }
  Entry e = entry_from(*info, id);
  EntryRef ref{Place::queue, 0, e.arrived, id};
  if (auto r = write_entry(entry_path(ref), e); !r) return r.error();
  crashpoint("pickup.after_entry");
  if (auto r = durable_rename(claimed, body_path(id)); !r) return r.error();
  crashpoint("pickup.after_body");
  if (auto r = lock.release(); !r) return r.error();
  return PickupResult{PickupOutcome::queued, std::move(id),        "",
                      info->sender,          info->message_size(), info->recipients.size()};
}

Result<FreshPickup> Spool::claim_fresh(std::string_view name) {
  FreshPickup out;
  if (ignored_name(name)) {
    out.result = outcome_only(PickupOutcome::ignored);
    return out;
  }
  auto [id, lock] = id_for_drop(name);
  if (!lock) return lock.error();
  if (!*lock) return make_error("fresh queue id " + id + " is already locked");
  std::string claimed = body_path(id) + ".new";
  std::string from = opts_.dir + "/incoming/" + std::string(name);
  if (::rename(from.c_str(), claimed.c_str()) != 0) {
    if (errno == ENOENT) {  // another daemon claimed it
      out.result = outcome_only(PickupOutcome::gone);
      return out;
    }
    return sys_error("claim", from);
  }
  crashpoint("fresh.after_claim");
  PickupResult bad;
  auto info = inspect_drop(claimed, name, bad);
  if (!info) {
    if (info.error().code != -1) return info.error();
    out.result = std::move(bad);
    return out;
  }
  Entry e = entry_from(*info, id);
  out.result = PickupResult{PickupOutcome::queued,  id, "", info->sender, info->message_size(),
                            info->recipients.size()};
  out.claimed.emplace(
      Claimed{std::move(**lock), EntryRef{Place::queue, 0, e.arrived, id}, std::move(e), true});
  return out;
}

// bad/NAME.reason is written before bad/NAME appears, so a file in bad/ always has its reason.
Result<PickupResult> Spool::to_bad(const std::string& from, std::string_view name, std::string reason) {
  std::string target = opts_.dir + "/bad/" + std::string(name);
  if (path_exists(target) || path_exists(target + ".reason"))
    target = fmt::format("{}/bad/{}.{}", opts_.dir, name, unique_suffix());
  if (auto r = atomic_write(opts_.dir + "/tmp", target + ".reason", {reason, "\n"}); !r) return r.error();
  if (auto r = durable_rename(from, target); !r) return r.error();
  return outcome_only(PickupOutcome::bad, std::move(reason));
}

Result<std::string> Spool::enqueue(const NewMessage& msg) {
  if (!msg.sender.empty() && !valid_mailbox(msg.sender))
    return make_error("invalid sender <" + msg.sender + ">");
  if (msg.recipients.empty()) return make_error("no recipients");
  // The body file is an envelope-first drop file, so recover() can hand it back to incoming/.
  for (const auto& r : msg.recipients)
    if (!valid_mailbox(r)) return make_error("invalid recipient <" + r + ">");
  std::string head = drop_envelope(msg.sender, msg.recipients);
  DropParser parser;
  (void)parser.feed(head);
  (void)parser.feed(msg.message);
  auto info = parser.finish();
  if (!info) return make_error("message not queueable: " + info.error().message);
  std::string id = new_id();
  auto lock = try_lock(id);
  if (!lock) return lock.error();
  if (!*lock) return make_error("fresh queue id " + id + " is already locked");
  std::string body = body_path(id);
  if (auto r = atomic_write(opts_.dir + "/tmp", body + ".new", {head, msg.message}); !r) return r.error();
  crashpoint("enqueue.after_body");
  Entry e = entry_from(*info, id);
  if (auto r = write_entry(entry_path(EntryRef{Place::queue, 0, e.arrived, id}), e); !r) return r.error();
  crashpoint("enqueue.after_entry");
  if (auto r = durable_rename(body + ".new", body); !r) return r.error();
  if (auto r = (*lock)->release(); !r) return r.error();
  return id;
}

}  // namespace spoold::spool

namespace spoold::spool {

std::vector<Result<void>> Spool::publish(const std::vector<Publication>& batch) const {
  std::vector<Result<void>> out;
  out.reserve(batch.size());
  bool placed = false;
  for (const auto& p : batch) {
    out.push_back(p.file->place(opts_.dir + "/incoming/" + p.id));
    placed = placed || out.back().ok();
  }
  if (!placed) return out;
  if (auto r = fsync_dir(opts_.dir + "/incoming"); !r)
    for (auto& o : out) o = r.error();
  return out;
}

}  // namespace spoold::spool
