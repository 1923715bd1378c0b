// tests/spool/queue_test.cpp — the spool on real directories: layout and refusals, pickup of every
// kind of drop file, entries moving between tiers / hold / failed, due scans in bounded batches,
// and crash simulation: a forked child abort()s at each crash point, the parent recovers and
// checks that exactly one entry (or the untouched drop) is left.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "spool/crashpoint.h"
#include "spool/spool.h"
#include "tests/support/fixtures.h"

using namespace spoold::spool;
using namespace std::chrono_literals;
using spoold::test::read_file;
using spoold::test::TempDir;
using spoold::test::write_file;

namespace {

const std::string kMessage =
    "From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: test\n\nHello Bob.\n";
const std::string kEnvelope =
    "MAIL FROM:<alice@example.com>\nRCPT TO:<bob@example.org>\nRCPT TO:<carol@example.org>\n\n";

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& n : spoold::test::list_dir(dir))
    if (n != "." && n != "..") out.push_back(n);
  std::sort(out.begin(), out.end());
  return out;
}

struct Fixture {
  TempDir tmp;
  std::string dir = tmp / "spool";

  Options opts() const {
    Options o;
    o.dir = dir;
    o.tier_delays = {0s, 1800s, 14400s};
    o.max_message_size = 64 * 1024;
    o.lock_stale_after = 600s;
    o.instance = "test-instance";
    o.hostname = "host.test";
    return o;
  }
  Spool open(Options o) const {
    auto r = Spool::open(std::move(o));
    if (!r.ok()) FAIL(r.error().message);
    return std::move(*r);
  }
  Spool open() const { return open(opts()); }
  // Drops a file the documented way: written elsewhere on the file system, renamed in.
  void drop(const std::string& name, const std::string& content) const {
    std::string t = dir + "/tmp/.drop-" + name;
    write_file(t, content);
    REQUIRE(::rename(t.c_str(), (dir + "/incoming/" + name).c_str()) == 0);
  }
  // Every envelope in queue/*, hold/ and failed/ as "place/name".
  std::vector<std::string> envelopes() const {
    std::vector<std::string> out;
    for (const char* sub : {"queue/0", "queue/1", "queue/2", "hold", "failed"})
      for (auto& n : names_in(dir + "/" + sub))
        if (n.find(".lock") == std::string::npos && n[0] != '.') out.push_back(std::string(sub) + "/" + n);
    return out;
  }
};

std::vector<EntryRef> scan_all(Spool& s, Place place, int tier, int64_t cutoff, size_t batch) {
  auto sc = s.scan(place, tier, cutoff);
  REQUIRE(sc.ok());
  std::vector<EntryRef> out;
  for (int guard = 0; guard < 10000 && !sc->done(); ++guard) {
    auto b = sc->next(batch);
    REQUIRE(b.ok());
    CHECK(b->size() <= batch);
    out.insert(out.end(), b->begin(), b->end());
  }
  CHECK(sc->done());
  return out;
}

std::string body_message(Spool& s, const Entry& e) {
  auto b = s.open_body(e);
  REQUIRE(b.ok());
  std::string out(b->size, '\0');
  REQUIRE(::pread(b->fd.get(), out.data(), out.size(), static_cast<off_t>(b->offset)) ==
          static_cast<ssize_t>(out.size()));
  return out;
}

// Runs fn in a forked child with SPOOLD_CRASH_AT=point; true if the child died of abort().
bool crashes_at(const std::string& point, const std::function<void()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    struct rlimit no_core {
      0, 0
    };
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(SIGABRT, SIG_DFL);  // Catch2's fatal-signal reporter belongs to the parent
    ::setenv("SPOOLD_CRASH_AT", point.c_str(), 1);
    fn();
    ::_exit(0);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

PickupResult pickup_ok(Spool& s, const std::string& name) {
  auto r = s.pickup(name);
  if (!r.ok()) FAIL(r.error().message);
  return *r;
}

Claimed claim_ok(Spool& s, const EntryRef& ref) {
  auto c = s.claim(ref);
  if (!c.ok()) FAIL(c.error().message);
  REQUIRE(c->has_value());
  return std::move(**c);
}

EntryRef only_ref(Spool& s, Place place = Place::queue, int tier = 0) {
  auto refs = scan_all(s, place, tier, INT64_MAX, 100);
  REQUIRE(refs.size() == 1);
  return refs[0];
}

}  // namespace

TEST_CASE("crash points are compiled into this test build", "[spool]") {
  REQUIRE(crashpoints_enabled());
}

TEST_CASE("open creates the layout and the version marker", "[spool][layout]") {
  Fixture f;
  auto s = f.open();
  for (const char* d : {"", "/incoming", "/queue", "/queue/0", "/queue/1", "/queue/2", "/failed", "/bad",
                        "/hold", "/tmp", "/data"}) {
    struct stat st {};
    INFO(d);
    REQUIRE(::stat((f.dir + d).c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 0777) == 0700);
  }
  CHECK(read_file(f.dir + "/VERSION") == "spoold-spool 1\n");
  struct stat st {};
  REQUIRE(::stat((f.dir + "/VERSION").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(names_in(f.dir + "/tmp").empty());
  // Opening again is fine and changes nothing.
  auto again = Spool::open(f.opts());
  CHECK(again.ok());
}

TEST_CASE("open refuses a newer or unknown version and a foreign owner", "[spool][layout]") {
  Fixture f;
  { auto s = f.open(); }
  write_file(f.dir + "/VERSION", "spoold-spool 2\n");
  auto newer = Spool::open(f.opts());
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.error().message.find("spool format 2 is not supported") != std::string::npos);
  write_file(f.dir + "/VERSION", "something else\n");
  auto garbage = Spool::open(f.opts());
  REQUIRE_FALSE(garbage.ok());
  CHECK(garbage.error().message.find("not a spoold spool") != std::string::npos);
  write_file(f.dir + "/VERSION", "spoold-spool 1\n");
  auto o = f.opts();
  o.owner_uid = static_cast<long>(::geteuid()) + 1;
  auto foreign = Spool::open(o);
  REQUIRE_FALSE(foreign.ok());
  CHECK(foreign.error().message.find("owned by uid") != std::string::npos);
}

// A scan cut off at unix_now() must see an entry enqueued just before: its id's second may never be
// ahead of the clock the daemon reads next (time(2) lags the precise clock after a second turns).
TEST_CASE("a queue id is never from a later second than unix_now() read after it", "[spool][ids]") {
  Fixture f;
  auto s = f.open();
  auto start = std::chrono::steady_clock::now();
  int64_t first = spoold::unix_now();
  int ahead = 0, rounds = 0;
  // Long enough to cross at least one second boundary, where the two clocks can disagree.
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1300)) {
    std::string id = s.new_id();
    if (id_time(id) > spoold::unix_now()) ++ahead;
    ++rounds;
  }
  CHECK(spoold::unix_now() > first);
  CHECK(rounds > 1000);
  CHECK(ahead == 0);
}

TEST_CASE("queue ids sort by arrival and are unique", "[spool][ids]") {
  Fixture f;
  auto s = f.open();
  std::set<std::string> seen;
  std::string prev;
  for (int i = 0; i < 2000; ++i) {
    std::string id = s.new_id();
    CHECK(id.size() == 30);
    // Time and counter both grow within one process, except where the 16-bit counter wraps inside
    // one microsecond (the ids stay unique: the time part differs before the counter comes round).
    bool wrapped = !prev.empty() && prev.substr(26) == "FFFF";
    CHECK((id > prev || wrapped));
    CHECK(seen.insert(id).second);
    CHECK(std::abs(id_time(id) - static_cast<int64_t>(::time(nullptr))) <= 2);
    prev = id;
  }
  auto other = f.opts();
  other.instance = "another-host";
  auto s2 = f.open(other);
  CHECK(s2.new_id().substr(14, 6) != s.new_id().substr(14, 6));  // host hash differs
}

TEST_CASE("pickup of an envelope-first drop keeps the body in place", "[spool][pickup]") {
  Fixture f;
  auto s = f.open();
  f.drop("m1", kEnvelope + kMessage);
  struct stat before {};
  REQUIRE(::stat((f.dir + "/incoming/m1").c_str(), &before) == 0);
  auto r = pickup_ok(s, "m1");
  REQUIRE(r.outcome == PickupOutcome::queued);
  CHECK(r.sender == "alice@example.com");
  CHECK(r.nrcpt == 2);
  CHECK(r.size == kMessage.size());
  CHECK(names_in(f.dir + "/incoming").empty());
  auto env = f.envelopes();
  REQUIRE(env.size() == 1);
  CHECK(env[0] == "queue/0/" + EntryRef{Place::queue, 0, id_time(r.id), r.id}.file_name());
  // The body is the drop file itself (same inode), not a copy.
  struct stat after {};
  REQUIRE(::stat(s.body_path(r.id).c_str(), &after) == 0);
  CHECK(after.st_ino == before.st_ino);
  CHECK(names_in(f.dir + "/data") == std::vector<std::string>{r.id});
  auto c = claim_ok(s, only_ref(s));
  CHECK(c.entry.id == r.id);
  CHECK(c.entry.sender == "alice@example.com");
  REQUIRE(c.entry.recipients.size() == 2);
  CHECK(c.entry.recipients[1].address == "carol@example.org");
  CHECK(c.entry.recipients[1].state == RcptState::pending);
  CHECK(c.entry.flags.missing_date);
  CHECK(c.entry.flags.missing_message_id);
  CHECK(c.entry.arrived == id_time(r.id));
  CHECK(body_message(s, c.entry) == kMessage);
}

TEST_CASE("pickup of a bare RFC 5322 drop uses sendmail -t semantics", "[spool][pickup]") {
  Fixture f;
  auto s = f.open();
  std::string msg =
      "From: a@x.org\r\nTo: b@x.org\r\nBcc: hidden@x.org\r\nDate: today\r\n\r\nbody \xe2\x9c\x93\r\n";
  f.drop("bare", msg);
  auto r = pickup_ok(s, "bare");
  REQUIRE(r.outcome == PickupOutcome::queued);
  auto c = claim_ok(s, only_ref(s));
  CHECK(c.entry.sender == "a@x.org");
  REQUIRE(c.entry.recipients.size() == 2);
  CHECK(c.entry.recipients[1].address == "hidden@x.org");
  CHECK(c.entry.flags.has_bcc);
  CHECK(c.entry.flags.eight_bit);
  CHECK_FALSE(c.entry.flags.missing_date);
  CHECK(c.entry.body_offset == 0);
  CHECK(body_message(s, c.entry) == msg);
}

TEST_CASE("unusable drop files go to bad/ with a reason", "[spool][pickup]") {
  Fixture f;
  auto o = f.opts();
  o.max_message_size = 1000;
  auto s = f.open(o);
  struct Case {
    std::string name;
    std::function<void()> make;
    std::string reason;
  };
  std::string outside = f.tmp / "outside";
  write_file(outside, kEnvelope + kMessage);
  std::vector<Case> cases = {
      {"garbage", [&] { f.drop("garbage", "hello\n"); }, "neither an envelope"},
      {"norcpt", [&] { f.drop("norcpt", "From: a@x.org\n\nbody\n"); }, "no recipients"},
      {"huge", [&] { f.drop("huge", kEnvelope + kMessage + std::string(2000, 'x')); },
       "exceeds max_message_size"},
      {"symlink", [&] { REQUIRE(::symlink(outside.c_str(), (f.dir + "/incoming/symlink").c_str()) == 0); },
       "symbolic link"},
      {"fifo", [&] { REQUIRE(::mkfifo((f.dir + "/incoming/fifo").c_str(), 0600) == 0); }, "FIFO"},
      {"hardlink",
       [&] {
         write_file(f.tmp / "hl", kEnvelope + kMessage);
         REQUIRE(::link((f.tmp / "hl").c_str(), (f.dir + "/incoming/hardlink").c_str()) == 0);
       },
       "hard links"},
  };
  for (auto& c : cases) {
    INFO(c.name);
    c.make();
    auto r = pickup_ok(s, c.name);
    CHECK(r.outcome == PickupOutcome::bad);
    CHECK(r.reason.find(c.reason) != std::string::npos);
    CHECK(path_exists(f.dir + "/bad/" + c.name));
    CHECK(read_file(f.dir + "/bad/" + c.name + ".reason") == r.reason + "\n");
  }
  CHECK(names_in(f.dir + "/incoming").empty());
  CHECK(f.envelopes().empty());
  CHECK(read_file(outside) == kEnvelope + kMessage);  // the symlink target was never touched
  auto st = s.stats();
  REQUIRE(st.ok());
  CHECK(st->bad == cases.size());
  // A second bad file of the same name does not overwrite the first.
  f.drop("garbage", "again\n");
  auto again = pickup_ok(s, "garbage");
  CHECK(again.outcome == PickupOutcome::bad);
  CHECK(read_file(f.dir + "/bad/garbage") == "hello\n");
}

TEST_CASE("drop files owned by another uid are refused", "[spool][pickup]") {
  Fixture f;
  auto o = f.opts();
  o.drop_uid = static_cast<long>(::geteuid()) + 1;
  auto s = f.open(o);
  f.drop("mine", kEnvelope + kMessage);
  auto r = pickup_ok(s, "mine");
  CHECK(r.outcome == PickupOutcome::bad);
  CHECK(r.reason.find("owned by uid") != std::string::npos);
}

TEST_CASE("dot-files and lock names in incoming/ are ignored; vanished drops are gone", "[spool][pickup]") {
  Fixture f;
  auto s = f.open();
  f.drop(".partial", kEnvelope + kMessage);
  f.drop("x.lock", kEnvelope + kMessage);
  f.drop("real", kEnvelope + kMessage);
  auto list = s.list_incoming(10);
  REQUIRE(list.ok());
  CHECK(*list == std::vector<std::string>{"real"});
  CHECK(pickup_ok(s, ".partial").outcome == PickupOutcome::ignored);
  CHECK(pickup_ok(s, "x.lock").outcome == PickupOutcome::ignored);
  CHECK(pickup_ok(s, "../VERSION").outcome == PickupOutcome::ignored);
  CHECK(pickup_ok(s, "nonexistent").outcome == PickupOutcome::gone);
  CHECK(path_exists(f.dir + "/incoming/.partial"));
  CHECK(names_in(f.dir + "/data").empty());  // a vanished drop leaves no lock behind
  auto limited = s.list_incoming(0);
  REQUIRE(limited.ok());
  CHECK(limited->empty());
}

TEST_CASE("enqueue writes a message given in memory durably", "[spool][enqueue]") {
  Fixture f;
  auto s = f.open();
  auto id = s.enqueue(NewMessage{"", {"bob@example.org", "x@y.org"}, kMessage});
  REQUIRE(id.ok());
  auto c = claim_ok(s, only_ref(s));
  CHECK(c.entry.id == *id);
  CHECK(c.entry.sender.empty());
  CHECK(c.entry.recipients.size() == 2);
  CHECK(body_message(s, c.entry) == kMessage);
  // The body file is itself an envelope-first drop file.
  CHECK(read_file(s.body_path(*id)).rfind("MAIL FROM:<>\nRCPT TO:<bob@example.org>\n", 0) == 0);
  CHECK_FALSE(s.enqueue(NewMessage{"bad sender", {"x@y.org"}, kMessage}).ok());
  CHECK_FALSE(s.enqueue(NewMessage{"", {}, kMessage}).ok());
  CHECK_FALSE(s.enqueue(NewMessage{"", {"x\r\n@y.org"}, kMessage}).ok());
}

TEST_CASE("entries move between tiers, hold and failed, and are removed", "[spool][queue]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  auto id = pickup_ok(s, "m").id;
  {
    auto c = claim_ok(s, only_ref(s));
    c.entry.recipients[0].state = RcptState::sent;
    c.entry.recipients[0].last_reply = "250 2.0.0 Ok";
    c.entry.recipients[1].last_reply = "451 4.3.0 later";
    c.entry.recipients[1].attempts = 1;
    c.entry.last_attempt = 1000;
    c.entry.attempts = 1;
    REQUIRE(s.reschedule(c, 1, s.due_after(1, 1000)).ok());
    CHECK(c.ref.tier == 1);
    CHECK(c.ref.when == 1000 + 1800);
  }
  CHECK(f.envelopes() == std::vector<std::string>{"queue/1/0000002800-" + id});
  auto ref = only_ref(s, Place::queue, 1);
  auto e = s.read(ref);
  REQUIRE(e.ok());
  CHECK(e->recipients[0].state == RcptState::sent);
  CHECK(e->recipients[1].last_reply == "451 4.3.0 later");
  {
    auto c = claim_ok(s, ref);
    REQUIRE(s.hold(c, 5000).ok());
  }
  CHECK(f.envelopes() == std::vector<std::string>{"hold/0000005000-" + id});
  {
    auto found = s.find(id);
    REQUIRE(found.ok());
    REQUIRE(found->has_value());
    CHECK((*found)->place == Place::hold);
    auto c = claim_ok(s, **found);
    REQUIRE(s.release_to_queue(c, 6000).ok());
  }
  CHECK(f.envelopes() == std::vector<std::string>{"queue/0/0000006000-" + id});
  {
    auto c = claim_ok(s, only_ref(s));
    c.entry.recipients[1].state = RcptState::expired;
    REQUIRE(s.fail(c, "expired after the last tier", 7000).ok());
  }
  CHECK(f.envelopes() == std::vector<std::string>{"failed/0000007000-" + id});
  auto failed = s.read(only_ref(s, Place::failed));
  REQUIRE(failed.ok());
  CHECK(failed->reason == "expired after the last tier");
  CHECK(failed->all_final());
  {
    auto c = claim_ok(s, only_ref(s, Place::failed));
    REQUIRE(s.remove(c).ok());
  }
  CHECK(f.envelopes().empty());
  CHECK(names_in(f.dir + "/data").empty());
  // tmp/ holds only this process's lock owner file (every lock was one of its hard links; the
  // Spool deletes it when it goes) — no scratch file is left behind.
  auto left = names_in(f.dir + "/tmp");
  REQUIRE(left.size() == 1);
  CHECK(left[0].rfind("t.lock-owner.", 0) == 0);
  struct stat st {};
  REQUIRE(::stat((f.dir + "/tmp/" + left[0]).c_str(), &st) == 0);
  CHECK(st.st_nlink == 1);  // no lock links to it any more
}

TEST_CASE("claims exclude each other and notice moved entries", "[spool][queue]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  pickup_ok(s, "m");
  auto ref = only_ref(s);
  {
    auto c = claim_ok(s, ref);
    auto second = s.claim(ref);
    REQUIRE(second.ok());
    CHECK_FALSE(second->has_value());
    REQUIRE(s.reschedule(c, 2, 123).ok());
  }
  auto stale = s.claim(ref);  // the old name is gone
  REQUIRE(stale.ok());
  CHECK_FALSE(stale->has_value());
  CHECK(names_in(f.dir + "/data").size() == 1);  // no lock left behind
  auto bad_tier = claim_ok(s, only_ref(s, Place::queue, 2));
  CHECK_FALSE(s.reschedule(bad_tier, 3, 0).ok());
}

TEST_CASE("scans yield due entries in bounded batches", "[spool][scan]") {
  Fixture f;
  auto s = f.open();
  std::set<std::string> due_ids;
  for (int i = 1; i <= 25; ++i) {
    auto id = s.enqueue(NewMessage{"a@x.org", {"b@x.org"}, kMessage});
    REQUIRE(id.ok());
    auto c = claim_ok(s, EntryRef{Place::queue, 0, id_time(*id), *id});
    REQUIRE(s.reschedule(c, 1, i * 100).ok());
    if (i * 100 <= 1250) due_ids.insert(*id);
  }
  for (size_t batch : {1u, 4u, 7u, 100u}) {
    INFO(batch);
    auto refs = scan_all(s, Place::queue, 1, 1250, batch);
    std::set<std::string> got;
    for (auto& r : refs) {
      CHECK(r.when <= 1250);
      CHECK(r.tier == 1);
      got.insert(r.id);
    }
    CHECK(got == due_ids);
    CHECK(refs.size() == due_ids.size());  // no duplicates
  }
  CHECK(scan_all(s, Place::queue, 0, INT64_MAX, 10).empty());
  // Lock files and dot-files in a tier directory are not entries.
  write_file(f.dir + "/queue/1/.hidden", "x");
  write_file(f.dir + "/queue/1/0000000001-ABC.lock", "x");
  CHECK(scan_all(s, Place::queue, 1, INT64_MAX, 10).size() == 25);
  auto st = s.stats();
  REQUIRE(st.ok());
  REQUIRE(st->tiers.size() == 3);
  CHECK(st->tiers[0].count == 0);
  CHECK(st->tiers[1].count == 25);
  CHECK(std::abs(st->tiers[1].oldest_arrival - static_cast<int64_t>(::time(nullptr))) <= 5);
  CHECK(st->hold.count == 0);
  CHECK(st->failed.count == 0);
}

TEST_CASE("entry names carry the due time", "[spool][scan]") {
  auto r = parse_entry_name("0000001234-0655F1A2B0F4240ABCDEF00303900A1", Place::queue, 2);
  REQUIRE(r.has_value());
  CHECK(r->when == 1234);
  CHECK(r->tier == 2);
  CHECK(r->file_name() == "0000001234-0655F1A2B0F4240ABCDEF00303900A1");
  for (const char* bad : {"", "-abc", "123", "123-", "12a-ABC", "123-AB.lock", "123-AB C", ".123-AB"})
    CHECK_FALSE(parse_entry_name(bad, Place::queue, 0).has_value());
}

// ---- crash simulation ----------------------------------------------------------------------

TEST_CASE("a crash at any step of pickup leaves the drop or exactly one entry", "[spool][crash]") {
  for (const char* point : {"pickup.after_lock", "pickup.after_claim", "atomic.after_fsync",
                            "atomic.after_rename", "pickup.after_entry", "pickup.after_body"}) {
    INFO(point);
    Fixture f;
    auto s = f.open();
    f.drop("m", kEnvelope + kMessage);
    REQUIRE(crashes_at(point, [&] {
      auto child = Spool::open(f.opts());
      if (child.ok()) (void)child->pickup("m");
    }));
    auto rep = s.recover();
    REQUIRE(rep.ok());
    auto incoming = s.list_incoming(10);
    REQUIRE(incoming.ok());
    CHECK(incoming->size() + f.envelopes().size() == 1);
    for (auto& name : *incoming) CHECK(pickup_ok(s, name).outcome == PickupOutcome::queued);
    REQUIRE(f.envelopes().size() == 1);
    std::string id;
    {
      auto c = claim_ok(s, only_ref(s));
      id = c.entry.id;
      CHECK(c.entry.recipients.size() == 2);
      CHECK(body_message(s, c.entry) == kMessage);
    }
    // Nothing but the body is left in data/: no claimed drop, no lock of the dead child.
    CHECK(names_in(f.dir + "/data") == std::vector<std::string>{id});
  }
}

TEST_CASE("a crash at any step of enqueue leaves a restorable drop or one entry", "[spool][crash]") {
  for (const char* point :
       {"atomic.after_fsync", "atomic.after_rename", "enqueue.after_body", "enqueue.after_entry"}) {
    INFO(point);
    Fixture f;
    auto s = f.open();
    REQUIRE(crashes_at(point, [&] {
      auto child = Spool::open(f.opts());
      if (child.ok()) (void)child->enqueue(NewMessage{"", {"bob@example.org"}, kMessage});
    }));
    REQUIRE(s.recover().ok());
    auto incoming = s.list_incoming(10);
    REQUIRE(incoming.ok());
    for (auto& name : *incoming) CHECK(pickup_ok(s, name).outcome == PickupOutcome::queued);
    auto env = f.envelopes();
    if (std::string(point) == "atomic.after_fsync") {
      // The body never reached data/: nothing was queued, and nothing half-written remains.
      CHECK(env.empty());
      continue;
    }
    REQUIRE(env.size() == 1);
    auto c = claim_ok(s, only_ref(s));
    CHECK(c.entry.sender.empty());
    CHECK(c.entry.recipients.size() == 1);
    CHECK(body_message(s, c.entry) == kMessage);
  }
}

TEST_CASE("a crash at any step of an entry update leaves exactly one entry", "[spool][crash]") {
  for (const char* point :
       {"atomic.after_fsync", "atomic.after_rename", "move.after_write", "move.after_rename"}) {
    INFO(point);
    Fixture f;
    auto s = f.open();
    f.drop("m", kEnvelope + kMessage);
    auto id = pickup_ok(s, "m").id;
    auto ref = only_ref(s);
    REQUIRE(crashes_at(point, [&] {
      auto child = Spool::open(f.opts());
      if (!child.ok()) return;
      auto c = child->claim(ref);
      if (!c.ok() || !c->has_value()) return;
      (*c)->entry.recipients[0].state = RcptState::sent;
      (*c)->entry.last_attempt = 4000;
      (void)child->reschedule(**c, 1, 5000);
    }));
    REQUIRE(s.recover().ok());
    auto env = f.envelopes();
    REQUIRE(env.size() == 1);
    auto found = s.find(id);
    REQUIRE(found.ok());
    REQUIRE(found->has_value());
    auto c = claim_ok(s, **found);  // the dead child's lock is broken: same host, pid gone
    bool updated = c.entry.recipients[0].state == RcptState::sent;
    bool moved = c.ref.tier == 1 && c.ref.when == 5000;
    CHECK((updated || !moved));  // moved implies updated: the envelope is rewritten before it moves
    CHECK(c.entry.recipients[1].state == RcptState::pending);
    CHECK(body_message(s, c.entry) == kMessage);
  }
}

TEST_CASE("a crash at any step of a removal is finished by recover", "[spool][crash]") {
  for (const char* point : {"remove.after_envelope", "remove.after_body"}) {
    INFO(point);
    Fixture f;
    auto s = f.open();
    f.drop("m", kEnvelope + kMessage);
    pickup_ok(s, "m");
    auto ref = only_ref(s);
    REQUIRE(crashes_at(point, [&] {
      auto child = Spool::open(f.opts());
      if (!child.ok()) return;
      auto c = child->claim(ref);
      if (c.ok() && c->has_value()) (void)child->remove(**c);
    }));
    auto rep = s.recover();
    REQUIRE(rep.ok());
    CHECK(rep->removals_completed == 1);
    CHECK(f.envelopes().empty());
    CHECK(names_in(f.dir + "/data").empty());
  }
}

TEST_CASE("recover leaves live locks and fresh temporary files alone", "[spool][recover]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  pickup_ok(s, "m");
  auto c = claim_ok(s, only_ref(s));  // held by this (live) process
  write_file(f.dir + "/tmp/t.123.0.tmp", "being written by someone");
  auto rep = s.recover();
  REQUIRE(rep.ok());
  CHECK(rep->dead_locks_removed == 0);
  CHECK(rep->temp_files_removed == 0);
  CHECK(c.lock.still_held());
  CHECK(path_exists(f.dir + "/tmp/t.123.0.tmp"));
  // Once old by the file system's clock, the temporary file goes.
  struct timespec old[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
  REQUIRE(::utimensat(AT_FDCWD, (f.dir + "/tmp/t.123.0.tmp").c_str(), old, 0) == 0);
  auto rep2 = s.recover();
  REQUIRE(rep2.ok());
  CHECK(rep2->temp_files_removed == 1);
  CHECK_FALSE(path_exists(f.dir + "/tmp/t.123.0.tmp"));
}

TEST_CASE("an unreadable envelope is moved to bad/ instead of failing every scan", "[spool][queue]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  auto id = pickup_ok(s, "m").id;
  auto ref = only_ref(s);
  write_file(s.entry_path(ref),
             "spoold-entry 1\nid " + id + "\nrcpt pending 0 <a@x.org> x\n");  // no end line
  auto c = s.claim(ref);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().message.find("truncated") != std::string::npos);
  CHECK(f.envelopes().empty());
  CHECK(path_exists(f.dir + "/bad/" + ref.file_name() + ".entry"));
  CHECK(read_file(f.dir + "/bad/" + ref.file_name() + ".entry.reason").find("data/" + id) !=
        std::string::npos);
  CHECK(path_exists(s.body_path(id)));                               // the message itself is kept
  CHECK(names_in(f.dir + "/data") == std::vector<std::string>{id});  // lock released
  auto st = s.stats();
  REQUIRE(st.ok());
  CHECK(st->bad == 1);
}

TEST_CASE("a crash while breaking a dead owner's lock leaves the entry claimable", "[spool][crash]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  auto id = pickup_ok(s, "m").id;
  auto ref = only_ref(s);
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  // A lock of this boot and PID namespace whose process is gone: provably dead, broken at once.
  LockOwner gone = lock_owner_self("test-instance");
  gone.pid = dead;
  gone.time = 1;
  write_file(s.lock_path(id), format_lock_owner(gone));
  REQUIRE(crashes_at("lock.after_break_rename", [&] {
    auto child = Spool::open(f.opts());
    if (child.ok()) (void)child->claim(ref);
  }));
  {
    auto c = claim_ok(s, ref);  // the lock was renamed aside before the crash: free now
    CHECK(c.entry.id == id);
  }
  // The renamed-aside lock is swept once it is older than lock_stale_after.
  std::vector<std::string> aside;
  for (auto& n : names_in(f.dir + "/data"))
    if (n.find(".lock.stale.") != std::string::npos) aside.push_back(n);
  REQUIRE(aside.size() == 1);
  struct timespec old[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
  REQUIRE(::utimensat(AT_FDCWD, (f.dir + "/data/" + aside[0]).c_str(), old, 0) == 0);
  auto rep = s.recover();
  REQUIRE(rep.ok());
  CHECK(rep->temp_files_removed == 1);
  CHECK(names_in(f.dir + "/data") == std::vector<std::string>{id});
}

TEST_CASE("recover removes a dead process's leftover lock", "[spool][recover]") {
  Fixture f;
  auto s = f.open();
  REQUIRE(crashes_at("pickup.after_lock", [&] {
    f.drop("m", kEnvelope + kMessage);
    auto child = Spool::open(f.opts());
    if (child.ok()) (void)child->pickup("m");
  }));
  auto locks = names_in(f.dir + "/data");
  REQUIRE(locks.size() == 1);
  CHECK(locks[0].find(".lock") != std::string::npos);
  auto rep = s.recover();
  REQUIRE(rep.ok());
  CHECK(rep->dead_locks_removed == 1);
  CHECK(names_in(f.dir + "/data").empty());
  CHECK(names_in(f.dir + "/incoming") == std::vector<std::string>{"m"});
}

TEST_CASE("processes hammering one entry never hold it together and lose no update", "[spool][lock]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  pickup_ok(s, "m");
  const EntryRef ref = only_ref(s);
  const std::string holder = f.tmp / "holder";
  constexpr int kProcs = 4, kRounds = 25;
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcs; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      auto child = Spool::open(f.opts());
      if (!child.ok()) ::_exit(2);
      auto deadline = std::chrono::steady_clock::now() + 60s;
      for (int round = 0; round < kRounds; ++round) {
        std::optional<Claimed> c;
        while (!c) {
          if (std::chrono::steady_clock::now() > deadline) ::_exit(3);
          auto r = child->claim(ref);
          if (!r.ok()) ::_exit(4);
          c = std::move(*r);
          if (!c) ::usleep(200);
        }
        int fd = ::open(holder.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0) ::_exit(5);  // someone else is inside too
        ::close(fd);
        c->entry.attempts += 1;  // a read-modify-write that would lose counts without exclusion
        c->entry.recipients[0].last_reply = "round " + std::to_string(round) + " by " + std::to_string(i);
        if (!child->reschedule(*c, 0, ref.when).ok()) ::_exit(6);
        ::unlink(holder.c_str());
      }
      ::_exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
  }
  auto e = s.read(ref);
  REQUIRE(e.ok());
  CHECK(e->attempts == kProcs * kRounds);
  CHECK(f.envelopes().size() == 1);
  CHECK(names_in(f.dir + "/data").size() == 1);  // no lock left
}

TEST_CASE("a lock left by another host is broken only after lock_stale_after", "[spool][lock]") {
  Fixture f;
  auto o = f.opts();
  o.lock_stale_after = 60s;
  auto s = f.open(o);
  f.drop("m", kEnvelope + kMessage);
  auto id = pickup_ok(s, "m").id;
  auto ref = only_ref(s);
  write_file(s.lock_path(id), "other-host 4242 other-boot 1\n");
  auto busy = s.claim(ref);
  REQUIRE(busy.ok());
  CHECK_FALSE(busy->has_value());  // fresh by the file system's clock, whatever its contents say
  struct timespec old[2] = {{::time(nullptr) - 120, 0}, {::time(nullptr) - 120, 0}};
  REQUIRE(::utimensat(AT_FDCWD, s.lock_path(id).c_str(), old, 0) == 0);
  auto c = claim_ok(s, ref);
  auto owner = read_lock_owner(s.lock_path(id));
  REQUIRE(owner.ok());
  CHECK(owner->instance == "test-instance");
  CHECK(owner->pid == ::getpid());
  // While we hold it and refresh it, it never looks stale to anyone.
  REQUIRE(::utimensat(AT_FDCWD, s.lock_path(id).c_str(), old, 0) == 0);
  REQUIRE(c.lock.refresh().ok());
  auto other = o;
  other.instance = "other-host";
  auto s2 = f.open(other);
  auto second = s2.claim(ref);
  REQUIRE(second.ok());
  CHECK_FALSE(second->has_value());
}

// ---- the fast path: claim_fresh ----------------------------------------------------------------

TEST_CASE("claim_fresh claims a drop without writing an envelope; remove just unlinks", "[spool][fresh]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  auto r = s.claim_fresh("m");
  REQUIRE(r.ok());
  CHECK(r->result.outcome == PickupOutcome::queued);
  REQUIRE(r->claimed.has_value());
  Claimed& c = *r->claimed;
  CHECK(c.fresh);
  CHECK(c.entry.recipients.size() == 2);
  CHECK(f.envelopes().empty());  // nothing written
  CHECK(s.body_file(c) == f.dir + "/data/" + c.entry.id + ".new");
  CHECK(body_message(s, c.entry) == kMessage);
  REQUIRE(s.remove(c).ok());
  CHECK(names_in(f.dir + "/data").empty());
  CHECK(names_in(f.dir + "/incoming").empty());
}

TEST_CASE("a fresh claim that must be remembered is moved with its envelope", "[spool][fresh]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  auto r = s.claim_fresh("m");
  REQUIRE(r.ok());
  REQUIRE(r->claimed.has_value());
  Claimed& c = *r->claimed;
  std::string id = c.entry.id;
  c.entry.recipients[0].state = RcptState::sent;
  REQUIRE(s.reschedule(c, 1, 5000).ok());
  CHECK_FALSE(c.fresh);
  CHECK(f.envelopes() ==
        std::vector<std::string>{"queue/1/" + EntryRef{Place::queue, 1, 5000, id}.file_name()});
  CHECK(::access((f.dir + "/data/" + id).c_str(), F_OK) == 0);
  c.lock.release().ok();
  auto again = claim_ok(s, only_ref(s, Place::queue, 1));
  CHECK(again.entry.recipients[0].state == RcptState::sent);
  CHECK(body_message(s, again.entry) == kMessage);
}

TEST_CASE("unclaim hands a fresh drop back to incoming/; a queued entry keeps its envelope",
          "[spool][fresh]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  auto r = s.claim_fresh("m");
  REQUIRE(r.ok());
  REQUIRE(r->claimed.has_value());
  std::string id = r->claimed->entry.id;
  REQUIRE(s.unclaim(*r->claimed).ok());
  CHECK_FALSE(r->claimed->lock.still_held());
  CHECK(names_in(f.dir + "/data").empty());
  CHECK(names_in(f.dir + "/incoming") == std::vector<std::string>{id});
  CHECK(f.envelopes().empty());
  // It is an ordinary drop again: claimed afresh, same message.
  auto again = s.claim_fresh(id);
  REQUIRE(again.ok());
  REQUIRE(again->claimed.has_value());
  CHECK(body_message(s, again->claimed->entry) == kMessage);

  // A queued entry: unclaim only releases the lock; envelope and body stay.
  REQUIRE(s.reschedule(*again->claimed, 1, 5000).ok());
  auto envelopes = f.envelopes();
  REQUIRE(s.unclaim(*again->claimed).ok());
  CHECK(f.envelopes() == envelopes);
  auto c = claim_ok(s, only_ref(s, Place::queue, 1));
  CHECK(body_message(s, c.entry) == kMessage);
}

TEST_CASE("return_fresh hands a fresh drop back to incoming/ by its id; list_incoming skips on request",
          "[spool][fresh]") {
  Fixture f;
  auto s = f.open();
  f.drop("m", kEnvelope + kMessage);
  f.drop("n", kEnvelope + kMessage);
  auto r = s.claim_fresh("m");
  REQUIRE(r.ok());
  REQUIRE(r->claimed.has_value());
  std::string id = r->claimed->entry.id;
  REQUIRE(s.return_fresh(*r->claimed).ok());
  CHECK_FALSE(r->claimed->lock.still_held());
  CHECK_FALSE(r->claimed->fresh);
  CHECK(names_in(f.dir + "/data").empty());
  CHECK(f.envelopes().empty());
  auto all = s.list_incoming(10);
  REQUIRE(all.ok());
  CHECK(all->size() == 2);
  auto rest = s.list_incoming(10, [&](const std::string& n) { return n == id; });
  REQUIRE(rest.ok());
  CHECK(*rest == std::vector<std::string>{"n"});
  // A second return, or one of a claim that is not fresh, is refused and changes nothing.
  CHECK_FALSE(s.return_fresh(*r->claimed).ok());
  auto again = s.claim_fresh(id);
  REQUIRE(again.ok());
  REQUIRE(again->claimed.has_value());
  CHECK(again->claimed->entry.id == id);  // its own id: a fresh one of this spool (Spool::reusable_id)
  CHECK(body_message(s, again->claimed->entry) == kMessage);
  // A drop already named like the id is never overwritten: the return is refused, both remain.
  f.drop(again->claimed->entry.id, "producer's own\n");
  CHECK_FALSE(s.return_fresh(*again->claimed).ok());
  CHECK(again->claimed->lock.still_held());
  CHECK(read_file(f.dir + "/incoming/" + again->claimed->entry.id) == "producer's own\n");
  CHECK(body_message(s, again->claimed->entry) == kMessage);
}

TEST_CASE("bad drops go to bad/ through claim_fresh too", "[spool][fresh]") {
  Fixture f;
  auto s = f.open();
  f.drop("junk", "this is not mail\n");
  auto r = s.claim_fresh("junk");
  REQUIRE(r.ok());
  CHECK(r->result.outcome == PickupOutcome::bad);
  CHECK_FALSE(r->claimed.has_value());
  CHECK(::access((f.dir + "/bad/junk.reason").c_str(), F_OK) == 0);
}

TEST_CASE("a crash at any step of the fresh path loses nothing and leaves one copy",
          "[spool][crash][fresh]") {
  // fresh.after_claim: drop renamed into data/ID.new, nothing else → recover returns it to incoming/.
  // fresh.after_entry: envelope written in queue/1, body still data/ID.new → recover completes it.
  // fresh.after_remove: delivered and unlinked → nothing left (the lock of the dead child goes).
  for (const char* point : {"fresh.after_claim", "fresh.after_entry", "fresh.after_remove"}) {
    INFO(point);
    Fixture f;
    auto s = f.open();
    f.drop("m", kEnvelope + kMessage);
    std::string p = point;
    REQUIRE(crashes_at(point, [&] {
      auto child = Spool::open(f.opts());
      if (!child.ok()) return;
      auto r = child->claim_fresh("m");
      if (!r.ok() || !r->claimed) return;
      if (p == "fresh.after_entry") (void)child->reschedule(*r->claimed, 1, 5000);
      if (p == "fresh.after_remove") (void)child->remove(*r->claimed);
    }));
    REQUIRE(s.recover().ok());
    auto incoming = s.list_incoming(10);
    REQUIRE(incoming.ok());
    if (p == "fresh.after_claim") {
      CHECK(incoming->size() == 1);
      CHECK(f.envelopes().empty());
    } else if (p == "fresh.after_entry") {
      CHECK(incoming->empty());
      REQUIRE(f.envelopes().size() == 1);
      auto c = claim_ok(s, only_ref(s, Place::queue, 1));
      CHECK(body_message(s, c.entry) == kMessage);
    } else {
      CHECK(incoming->empty());
      CHECK(f.envelopes().empty());
      CHECK(names_in(f.dir + "/data").empty());
    }
  }
}

TEST_CASE("received messages are published into incoming/ as a group and keep their id", "[spool][receive]") {
  Fixture f;
  Spool s = f.open();
  std::vector<std::string> ids;
  std::vector<TempFile> files;
  for (int i = 0; i < 3; ++i) {
    auto t = s.receive_file();
    REQUIRE(t.ok());
    std::string head = drop_envelope("a@client.test", {"r" + std::to_string(i) + "@example.test"});
    REQUIRE(t->write(head + "Subject: " + std::to_string(i) + "\r\n\r\nbody\r\n").ok());
    REQUIRE(t->sync().ok());
    files.push_back(std::move(*t));
    ids.push_back(s.new_id());
  }
  std::vector<Spool::Publication> batch;
  for (size_t i = 0; i < files.size(); ++i) batch.push_back({&files[i], ids[i]});
  auto res = s.publish(batch);
  REQUIRE(res.size() == 3);
  for (auto& r : res) CHECK(r.ok());
  CHECK(names_in(f.dir + "/incoming") == std::vector<std::string>(ids.begin(), ids.end()));
  CHECK(names_in(f.dir + "/tmp").size() <= 1);  // only the lock owner file, no temp left
  // The pickup keeps the id the client was told, on both paths.
  auto p = pickup_ok(s, ids[0]);
  CHECK(p.id == ids[0]);
  auto fresh = s.claim_fresh(ids[1]);
  REQUIRE(fresh.ok());
  CHECK(fresh->result.id == ids[1]);
  // A file already placed is never replaced: the second publish of the same id fails.
  auto t = s.receive_file();
  REQUIRE(t.ok());
  REQUIRE(t->write("x").ok());
  REQUIRE(t->sync().ok());
  auto again = s.publish({{&*t, ids[2]}});
  REQUIRE(again.size() == 1);
  CHECK_FALSE(again[0].ok());
  CHECK(read_file(f.dir + "/incoming/" + ids[2]).find("Subject: 2") != std::string::npos);
}

TEST_CASE("a drop keeps its name as queue id only when it is a fresh id of this spool", "[spool][receive]") {
  Fixture f;
  Spool s = f.open();
  Fixture other;
  auto o = other.opts();
  o.instance = "another-instance";
  Spool foreign = other.open(o);
  const std::string msg = "MAIL FROM:<a@b.test>\nRCPT TO:<c@d.test>\n\nSubject: x\n\nbody\n";
  std::string own = s.new_id();
  std::string theirs = foreign.new_id();
  std::string lower = own;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string old_id = "000000001" + own.substr(9);  // from 1970: would expire at once
  for (const auto& n : {own, theirs, lower, old_id, std::string("plain-name")}) f.drop(n, msg);
  CHECK(pickup_ok(s, own).id == own);
  for (const auto& n : {theirs, lower, old_id, std::string("plain-name")}) {
    auto p = pickup_ok(s, n);
    CHECK(p.outcome == PickupOutcome::queued);
    CHECK(p.id != n);
  }
  // An id already in the queue is not taken again by a second drop of that name.
  f.drop(own, msg);
  auto dup = pickup_ok(s, own);
  CHECK(dup.outcome == PickupOutcome::queued);
  CHECK(dup.id != own);
}
