// tests/daemon/decide_test.cpp — the outcome of a delivery attempt (daemon/decide.h), one row per
// line of the table in decide.h, plus the rules under it.
#include "daemon/decide.h"

#include <catch2/catch.hpp>

using namespace spoold;
using namespace spoold::daemon;
using smtp::Outcome;
using smtp::Status;

namespace {

constexpr int64_t kNow = 1'700'000'000;

spool::Entry entry(size_t recipients, std::string sender = "alice@example.org") {
  spool::Entry e;
  e.id = "ID";
  e.sender = std::move(sender);
  e.arrived = kNow - 100;
  for (size_t i = 0; i < recipients; ++i) {
    spool::Recipient rc;
    rc.address = "r" + std::to_string(i) + "@example.net";
    e.recipients.push_back(rc);
  }
  return e;
}

RecipientResult sent(size_t i) {
  return {i, Outcome{Status::sent, 250, "2.0.0", "ok", false}, "mx[192.0.2.1]:25"};
}
RecipientResult bounced(size_t i) {
  return {i, Outcome{Status::permanent, 550, "5.1.1", "no such user", false}, "mx[192.0.2.1]:25"};
}
RecipientResult deferred(size_t i) {
  return {i, Outcome{Status::temporary, 451, "4.3.0", "try later", false}, "mx[192.0.2.1]:25"};
}
RecipientResult skipped(size_t i, int64_t postpone_s) {
  RecipientResult r{i, Outcome{Status::temporary, 0, "4.4.1", "not tried: 192.0.2.1:25 failed 3 s ago"},
                    "none", false};
  r.postpone_s = postpone_s;
  return r;
}
RecipientResult not_attempted(size_t i) {
  return {i, Outcome{Status::temporary, 0, "4.3.2", "mail system is shutting down"}, "none", false};
}

TierPolicy policy(int warning_tier = 0) {
  return TierPolicy{{0, 1800, 14400}, warning_tier};
}

using Results = std::vector<std::optional<RecipientResult>>;

}  // namespace

TEST_CASE("decide: one row per outcome", "[decide]") {
  struct Row {
    const char* what;
    size_t recipients;
    Results results;
    int tier;
    Action action;
    int to_tier;
    int64_t due;
    size_t bounces;
    std::vector<LogStatus> logs;
    bool attempted;
  };
  const Row rows[] = {
      {"all sent → removed",
       2,
       {sent(0), sent(1)},
       0,
       Action::remove,
       0,
       kNow,
       0,
       {LogStatus::sent, LogStatus::sent},
       true},
      {"one bounced, all final → DSN, failed/",
       2,
       {sent(0), bounced(1)},
       0,
       Action::to_failed,
       0,
       kNow,
       1,
       {LogStatus::sent, LogStatus::bounced},
       true},
      {"one deferred → next tier, due after its delay",
       2,
       {sent(0), deferred(1)},
       0,
       Action::next_tier,
       1,
       kNow + 1800,
       0,
       {LogStatus::sent, LogStatus::deferred},
       true},
      {"deferred in tier 1 → tier 2",
       1,
       {deferred(0)},
       1,
       Action::next_tier,
       2,
       kNow + 14400,
       0,
       {LogStatus::deferred},
       true},
      {"deferred in the last tier → expired, DSN, failed/",
       2,
       {deferred(0), bounced(1)},
       2,
       Action::to_failed,
       2,
       kNow,
       2,
       {LogStatus::expired, LogStatus::bounced},
       true},
      {"every server skipped → postponed in its tier, no attempt",
       1,
       {skipped(0, 7)},
       1,
       Action::postpone,
       1,
       kNow + 7,
       0,
       {LogStatus::deferred},
       false},
      {"skipped in the last tier beside a deferral → postponed, never expired untried",
       2,
       {deferred(0), skipped(1, 9)},
       2,
       Action::postpone,
       2,
       kNow + 9,
       0,
       {LogStatus::deferred, LogStatus::deferred},
       true},
      {"not attempted (stopping) → released as it was",
       1,
       {not_attempted(0)},
       0,
       Action::release,
       0,
       kNow,
       0,
       {},
       false},
      {"no result at all → released", 1, {std::nullopt}, 1, Action::release, 1, kNow + 1800, 0, {}, false},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    Plan p = decide(entry(r.recipients), r.results, r.tier, policy(), kNow);
    CHECK(std::string(to_string(p.action)) == to_string(r.action));
    CHECK(p.attempted == r.attempted);
    if (r.action == Action::next_tier || r.action == Action::postpone) {
      CHECK(p.tier == r.to_tier);
      CHECK(p.due == r.due);
    }
    CHECK(p.bounces.size() == r.bounces);
    REQUIRE(p.logs.size() == r.logs.size());
    for (size_t i = 0; i < r.logs.size(); ++i)
      CHECK(std::string(to_string(p.logs[i].status)) == to_string(r.logs[i]));
    CHECK(p.entry.attempts == (r.attempted ? 1 : 0));
    CHECK(p.entry.last_attempt == (r.attempted ? kNow : 0));
  }
}

TEST_CASE("decide: what is recorded in the entry", "[decide]") {
  Plan p = decide(entry(3), {sent(0), bounced(1), deferred(2)}, 0, policy(), kNow);
  const auto& rc = p.entry.recipients;
  CHECK(rc[0].state == spool::RcptState::sent);
  CHECK(rc[1].state == spool::RcptState::bounced);
  CHECK(rc[2].state == spool::RcptState::pending);
  for (const auto& r : rc) CHECK(r.attempts == 1);
  CHECK(rc[1].last_reply == "550 5.1.1 no such user");
  REQUIRE(p.bounces.size() == 1);
  CHECK(p.bounces[0].address == "r1@example.net");
  CHECK(p.bounces[0].status == "5.1.1");
  CHECK(p.bounces[0].diagnostic == "smtp; 550 5.1.1 no such user");
  CHECK(p.bounces[0].remote_mta == "mx");
  CHECK(p.action == Action::next_tier);  // the bounce goes now; the deferred one waits in tier 1
}

TEST_CASE("decide: an expired recipient is reported with its last reply", "[decide]") {
  Plan p = decide(entry(1), {deferred(0)}, 2, policy(), kNow);
  CHECK(p.action == Action::to_failed);
  CHECK(p.entry.recipients[0].state == spool::RcptState::expired);
  REQUIRE(p.bounces.size() == 1);
  CHECK(p.bounces[0].status == "4.4.7");
  CHECK(p.bounces[0].diagnostic == "x-spoold; delivery time expired; last reply: 451 4.3.0 try later");
}

TEST_CASE("decide: a null sender never gets a DSN or a warning", "[decide]") {
  Plan p = decide(entry(1, ""), {bounced(0)}, 0, policy(1), kNow);
  CHECK(p.action == Action::to_failed);
  CHECK(p.bounces.empty());
  p = decide(entry(1, ""), {deferred(0)}, 0, policy(1), kNow);
  CHECK_FALSE(p.warn);
  CHECK_FALSE(p.entry.flags.warning_sent);
}

TEST_CASE("decide: the delay warning goes once, entering delay_warning_tier", "[decide]") {
  Plan p = decide(entry(1), {deferred(0)}, 0, policy(1), kNow);
  CHECK(p.warn);
  CHECK(p.entry.flags.warning_sent);
  Plan again = decide(p.entry, {deferred(0)}, 0, policy(1), kNow);  // flushed back to tier 0, say
  CHECK_FALSE(again.warn);
  CHECK_FALSE(decide(entry(1), {deferred(0)}, 1, policy(1), kNow).warn);  // into tier 2: not the one
  CHECK_FALSE(decide(entry(1), {deferred(0)}, 0, policy(0), kNow).warn);  // warnings off
}

TEST_CASE("decide: an entry left final by a crash finishes its move", "[decide]") {
  auto e = entry(2);
  e.recipients[0].state = spool::RcptState::sent;
  e.recipients[1].state = spool::RcptState::sent;
  CHECK(decide(e, {std::nullopt, std::nullopt}, 1, policy(), kNow).action == Action::remove);
  e.recipients[1].state = spool::RcptState::bounced;
  Plan p = decide(e, {std::nullopt, std::nullopt}, 1, policy(), kNow);
  CHECK(p.action == Action::to_failed);
  CHECK(p.bounces.empty());  // its bounce was queued before the outcomes were written
}

TEST_CASE("notify_wants: which reports a recipient's NOTIFY asks for", "[decide][dsn]") {
  struct Row {
    const char* notify;
    bool failed, delayed, relayed;
  };
  const Row rows[] = {
      {"", true, true, false},  // no NOTIFY: failures and delays, as Postfix and sendmail
      {"NEVER", false, false, false},
      {"SUCCESS", false, false, true},
      {"FAILURE", true, false, false},
      {"DELAY", false, true, false},
      {"SUCCESS,FAILURE,DELAY", true, true, true},
      {"FAILURE,DELAY", true, true, false},
      {"SUCCESS,DELAY", false, true, true},
  };
  for (const auto& r : rows) {
    INFO(r.notify);
    CHECK(notify_wants(r.notify, DsnAction::failed) == r.failed);
    CHECK(notify_wants(r.notify, DsnAction::delayed) == r.delayed);
    CHECK(notify_wants(r.notify, DsnAction::relayed) == r.relayed);
  }
}

TEST_CASE("decide: NOTIFY selects the recipients of each report", "[decide][dsn]") {
  spool::Entry e = entry(4);
  e.recipients[0].dsn.notify = "NEVER";
  e.recipients[1].dsn.notify = "SUCCESS";
  e.recipients[1].dsn.orcpt = "rfc822;R1@example.net";
  e.recipients[2].dsn.notify = "SUCCESS";
  RecipientResult passed = sent(2);
  passed.outcome.dsn_passed = true;  // the next hop offered DSN: it reports success, not us
  Plan p = decide(e, {bounced(0), sent(1), passed, sent(3)}, 0, policy(), kNow);
  CHECK(p.bounces.empty());  // NEVER
  REQUIRE(p.relayed.size() == 1);
  CHECK(p.relayed[0].address == "r1@example.net");
  CHECK(p.relayed[0].action == DsnAction::relayed);
  CHECK(p.relayed[0].status == "2.0.0");
  CHECK(p.relayed[0].orcpt == "rfc822;R1@example.net");
  CHECK(p.entry.recipients[0].state == spool::RcptState::bounced);  // logged and recorded all the same

  spool::Entry x = entry(2);
  x.recipients[0].dsn.notify = "DELAY";
  Plan q = decide(x, {deferred(0), deferred(1)}, 2, policy(), kNow);  // out of tiers: both expire
  REQUIRE(q.bounces.size() == 1);
  CHECK(q.bounces[0].address == "r1@example.net");
}

TEST_CASE("make_dsn: mixed actions, ENVID, ORCPT and what is attached", "[dsn]") {
  DsnInput in;
  in.reporting_mta = "mx.test";
  in.original_qid = "Q";
  in.original_sender = "a@b.test";
  in.envid = "E 1";
  in.recipients = {{"x@y.test", "5.1.1", "smtp; 550 5.1.1 no", "mx", DsnAction::failed, "rfc822;X@y.test"},
                   {"z@y.test", "2.0.0", "smtp; 250 ok", "mx", DsnAction::relayed, ""}};
  in.original_headers = "Subject: s\n";
  in.original_message = "Subject: s\n\nbody\xc3\xa9\n";
  in.original_size = in.original_message.size();
  in.boundary_seed = "B";
  std::string m = make_dsn(in);
  INFO(m);
  CHECK(m.find("Subject: Undelivered Mail Returned to Sender\r\n") != std::string::npos);
  CHECK(m.find("Original-Envelope-Id: E 1\r\nReporting-MTA: dns; mx.test\r\n") != std::string::npos);
  CHECK(m.find("Original-Recipient: rfc822; X@y.test\r\nFinal-Recipient: rfc822; x@y.test\r\nAction: "
               "failed\r\n") != std::string::npos);
  CHECK(m.find("Final-Recipient: rfc822; z@y.test\r\nAction: relayed\r\nStatus: 2.0.0\r\n") !=
        std::string::npos);
  CHECK(m.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: s\r\n") !=
        std::string::npos);  // no RET=FULL
  CHECK(m.find("Its header section is\r\nattached below.") != std::string::npos);

  in.ret_full = true;
  m = make_dsn(in);  // 8-bit: a report carrying it could not pass a server without 8BITMIME
  CHECK(m.find("message/rfc822") == std::string::npos);
  CHECK(m.find("so only its header section is") != std::string::npos);
  in.original_message = "Subject: s\n\nbody\n";
  m = make_dsn(in);
  CHECK(m.find("Content-Type: message/rfc822\r\n\r\nSubject: s\r\n\r\nbody\r\n") != std::string::npos);
  CHECK(m.find("It's attached below.") != std::string::npos);
  in.original_size = kDsnFullMessageLimit + 1;  // too big to return whole
  in.original_message.clear();
  m = make_dsn(in);
  CHECK(m.find("Content-Type: text/rfc822-headers") != std::string::npos);
  CHECK(m.find("so only its header section is") != std::string::npos);

  in.recipients = {{"z@y.test", "2.0.0", "smtp; 250 ok", "mx", DsnAction::relayed, ""}};
  m = make_dsn(in);  // a success report never returns the message, RET=FULL or not
  CHECK(m.find("Subject: Successful Mail Delivery Report\r\n") != std::string::npos);
  CHECK(m.find("message/rfc822") == std::string::npos);
}
