// tests/ctl/ctl_unit_test.cpp — the pure parts of spoolctl/sendmail/mailq: argument parsing,
// human formatting, reading stdin with and without the dot rule, and building drop files.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <csignal>

#include <thread>

#include "control/json.h"
#include "ctl/args.h"
#include "ctl/format.h"
#include "ctl/submit.h"
#include "ctl/wait.h"
#include "spool/drop.h"
#include "tests/support/hostile_headers.h"

using spoold::control::Json;
namespace ctl = spoold::ctl;

TEST_CASE("personality comes from the basename of argv[0]") {
  CHECK(ctl::personality_of("/usr/sbin/sendmail") == ctl::Personality::sendmail);
  CHECK(ctl::personality_of("sendmail") == ctl::Personality::sendmail);
  CHECK(ctl::personality_of("/usr/bin/mailq") == ctl::Personality::mailq);
  CHECK(ctl::personality_of("/usr/bin/newaliases") == ctl::Personality::newaliases);
  CHECK(ctl::personality_of("./build/ctl/spoolctl") == ctl::Personality::spoolctl);
  CHECK(ctl::personality_of("/opt/sendmail-dir/spoolctl") == ctl::Personality::spoolctl);
}

TEST_CASE("newaliases arguments") {
  auto none = ctl::parse_newaliases_args({});
  REQUIRE(none.ok());
  CHECK(none->config.empty());
  CHECK(ctl::parse_newaliases_args({"-C", "/x.yaml"})->config == "/x.yaml");
  CHECK(ctl::parse_newaliases_args({"--config", "/x.yaml", "-v"})->config == "/x.yaml");
  CHECK(ctl::parse_newaliases_args({"--config=/y.yaml"})->config == "/y.yaml");
  CHECK(ctl::parse_newaliases_args({"--help"})->help);
  CHECK(ctl::parse_newaliases_args({"-C"}).error().message == "-C needs a file");
  CHECK(ctl::parse_newaliases_args({"x"}).error().message == "unknown argument 'x'");
}

TEST_CASE("spoolctl arguments") {
  auto a =
      ctl::parse_ctl_args({"--config", "/x.yaml", "list", "--tier", "2", "--domain=example.org", "--json"});
  REQUIRE(a.ok());
  CHECK(a->config == "/x.yaml");
  CHECK(a->command == "list");
  CHECK(a->tier == 2);
  CHECK(a->domain == "example.org");
  CHECK(a->json);

  auto f = ctl::parse_ctl_args({"flush", "ID1", "ID2"});
  REQUIRE(f.ok());
  CHECK(f->ids == std::vector<std::string>{"ID1", "ID2"});

  auto s = ctl::parse_ctl_args({"--config=/c", "send", "-t", "-f", "me@x", "--json"});
  REQUIRE(s.ok());
  CHECK(s->config == "/c");
  CHECK(s->send_args == std::vector<std::string>{"-t", "-f", "me@x", "--json"});
  CHECK(ctl::parse_ctl_args({"--help"})->help);
}

TEST_CASE("spoolctl usage errors") {
  struct Case {
    std::vector<std::string> args;
    std::string why;
  };
  const std::vector<Case> cases = {
      {{}, "no command"},
      {{"frob"}, "unknown command"},
      {{"show"}, "exactly one"},
      {{"show", "A", "B"}, "exactly one"},
      {{"hold"}, "at least one"},
      {{"delete"}, "at least one"},
      {{"status", "X"}, "takes no message ids"},
      {{"list", "--tier", "x"}, "non-negative number"},
      {{"list", "--tier", "-1"}, "non-negative number"},
      {{"list", "--tier"}, "needs a value"},
      {{"hold", "--tier", "1", "ID"}, "takes no --tier"},
      {{"flush", "--tier", "1", "ID"}, "not both"},
      {{"list", "--place", "attic"}, "--place must be"},
      {{"status", "--bogus"}, "unknown option"},
  };
  for (const auto& c : cases) {
    INFO(c.why);
    auto r = ctl::parse_ctl_args(c.args);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(c.why) != std::string::npos);
  }
}

TEST_CASE("mailq arguments") {
  auto a = ctl::parse_mailq_args({"-C", "/c.yaml", "--json"});
  REQUIRE(a.ok());
  CHECK(a->command == "list");
  CHECK(a->config == "/c.yaml");
  CHECK(a->json);
  CHECK_FALSE(ctl::parse_mailq_args({"-C"}).ok());
}

TEST_CASE("sendmail arguments as cron, mailx, PHP and git send-email pass them") {
  auto cron = ctl::parse_sendmail_args({"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"});
  REQUIRE(cron.ok());
  CHECK(cron->full_name == "CronDaemon");
  CHECK(cron->ignore_dots);
  CHECK(cron->recipients == std::vector<std::string>{"root"});
  CHECK(cron->warnings.size() == 2);

  auto php = ctl::parse_sendmail_args({"-t", "-i"});
  REQUIRE(php.ok());
  CHECK(php->extract);
  CHECK(php->ignore_dots);
  CHECK(php->warnings.empty());

  auto clustered = ctl::parse_sendmail_args({"-ti", "-fme@x.org", "-F", "Me Myself", "--", "-odd@x.org"});
  REQUIRE(clustered.ok());
  CHECK(clustered->extract);
  CHECK(clustered->ignore_dots);
  CHECK(clustered->sender == "me@x.org");
  CHECK(clustered->full_name == "Me Myself");
  CHECK(clustered->recipients == std::vector<std::string>{"-odd@x.org"});

  auto r = ctl::parse_sendmail_args({"-r", "<>", "-oi", "-C", "/c.yaml", "a@b.c"});
  REQUIRE(r.ok());
  CHECK(r->sender == "<>");
  CHECK(r->ignore_dots);
  CHECK(r->config == "/c.yaml");

  CHECK(ctl::parse_sendmail_args({"-bp"})->mode == ctl::SendmailMode::list);
  CHECK(ctl::parse_sendmail_args({"-q"})->mode == ctl::SendmailMode::flush);
  CHECK(ctl::parse_sendmail_args({"-bm", "x@y.z"})->mode == ctl::SendmailMode::deliver);
  CHECK(ctl::parse_sendmail_args({"-bs"})->mode == ctl::SendmailMode::smtp);
  CHECK(ctl::parse_sendmail_args({"-bs", "-C", "/c.yaml"})->config == "/c.yaml");
}

TEST_CASE("sendmail legacy options are ignored with one warning each") {
  auto a = ctl::parse_sendmail_args({"-odx", "-oem", "-oXlog", "-v", "-U", "-L", "tag", "x@y.z"});
  REQUIRE(a.ok());
  CHECK(a->recipients == std::vector<std::string>{"x@y.z"});
  CHECK(a->warnings.size() == 6);
  CHECK(a->warnings[0] == "ignoring option -odx");
  CHECK(a->warnings[5] == "ignoring option -L tag");
  CHECK_FALSE(a->ignore_dots);
}

TEST_CASE("submission modes: -odq/-odi/-odb and spoolctl send --mode/--timeout") {
  CHECK(ctl::parse_sendmail_args({"x@y.z"})->submit == ctl::SubmitMode::deferred);
  CHECK(ctl::parse_sendmail_args({"-odi", "x@y.z"})->submit == ctl::SubmitMode::interactive);
  CHECK(ctl::parse_sendmail_args({"-odb", "x@y.z"})->submit == ctl::SubmitMode::background);
  CHECK(ctl::parse_sendmail_args({"-odi", "-odq", "x@y.z"})->submit == ctl::SubmitMode::deferred);
  CHECK(ctl::parse_sendmail_args({"-odi", "x@y.z"})->warnings.empty());
  CHECK(ctl::parse_sendmail_args({"x@y.z"})->wait_timeout == std::chrono::minutes(2));
  auto s = ctl::parse_ctl_args({"send", "--mode", "interactive", "--timeout=90s", "-f", "a@b.c", "x@y.z"});
  REQUIRE(s.ok());
  CHECK(s->send_mode == "interactive");
  CHECK(s->send_timeout == std::chrono::seconds(90));
  CHECK(s->send_args == std::vector<std::string>{"-f", "a@b.c", "x@y.z"});
  CHECK_FALSE(ctl::parse_ctl_args({"send", "--mode", "later", "x@y.z"}).ok());
  CHECK_FALSE(ctl::parse_ctl_args({"send", "--mode", "background", "--timeout", "soon", "x@y.z"}).ok());
  CHECK_FALSE(ctl::parse_ctl_args({"send", "--timeout", "1m", "x@y.z"}).ok());  // for a waiting mode only
  auto w = ctl::parse_ctl_args({"watch", "ID1", "ID2", "--json"});
  REQUIRE(w.ok());
  CHECK(w->ids == std::vector<std::string>{"ID1", "ID2"});
  CHECK(w->json);
}

namespace {

Json delivery(const std::string& to, const std::string& status, const std::string& reason) {
  return Json()
      .set("event", "delivery")
      .set("qid", "Q")
      .set("to", to)
      .set("status", status)
      .set("reason", reason);
}
Json attempt(int pending) {
  return Json().set("event", "attempt").set("qid", "Q").set("pending", pending).set("action", "x");
}

}  // namespace

TEST_CASE("OutcomeWait: an attempt's records become a verdict") {
  using V = ctl::OutcomeWait::Verdict;
  SECTION("all sent") {
    ctl::OutcomeWait w;
    CHECK(w.feed(delivery("a@x", "sent", "250 ok")) == V::waiting);
    CHECK(w.feed(delivery("b@x", "sent", "250 ok")) == V::waiting);
    CHECK(w.feed(attempt(0)) == V::sent);
  }
  SECTION("one bounced, one sent: failed, naming the bounced one") {
    ctl::OutcomeWait w;
    w.feed(delivery("a@x", "sent", "250 ok"));
    w.feed(delivery("b@x", "bounced", "550 5.1.1 no such user"));
    CHECK(w.feed(attempt(0)) == V::failed);
    CHECK(w.failures() == std::vector<std::string>{"<b@x>: 550 5.1.1 no such user"});
    CHECK(w.any_sent());
  }
  SECTION("a deferral") {
    ctl::OutcomeWait w;
    w.feed(delivery("a@x", "deferred", "451 4.3.0 busy"));
    CHECK(w.feed(attempt(1)) == V::deferred);
    CHECK(w.deferral() == "<a@x>: 451 4.3.0 busy");
    CHECK_FALSE(w.maybe_delivered());
  }
  SECTION("a deferral after the final dot may have delivered") {
    ctl::OutcomeWait w;
    w.feed(delivery("a@x", "deferred", "timeout in state dot (after the final dot: possible duplicate)"));
    CHECK(w.feed(attempt(1)) == V::deferred);
    CHECK(w.maybe_delivered());
  }
  SECTION("an attempt handed back without results is no outcome; other events are ignored") {
    ctl::OutcomeWait w;
    CHECK(w.feed(attempt(2)) == V::waiting);
    CHECK(w.feed(Json().set("event", "lost").set("count", 3)) == V::waiting);
    w.feed(delivery("a@x", "sent", "250"));
    w.feed(delivery("b@x", "sent", "250"));
    CHECK(w.feed(attempt(0)) == V::sent);
  }
}

TEST_CASE("conclude: exit codes, messages, and when a withdrawal is allowed") {
  using V = ctl::OutcomeWait::Verdict;
  using M = ctl::SubmitMode;
  using K = ctl::Withdrawal::Kind;
  int withdrawals = 0;
  ctl::Withdrawal answer{K::done, ""};
  auto withdraw = [&] {
    ++withdrawals;
    return answer;
  };
  ctl::OutcomeWait none;
  ctl::OutcomeWait deferred;
  deferred.feed(delivery("a@x", "deferred", "451 busy"));
  deferred.feed(attempt(1));
  ctl::OutcomeWait dup;
  dup.feed(delivery("a@x", "deferred", "421 (after the final dot: possible duplicate)"));
  dup.feed(attempt(1));
  ctl::OutcomeWait partly;
  partly.feed(delivery("a@x", "sent", "250"));
  partly.feed(delivery("b@x", "deferred", "451 busy"));
  partly.feed(attempt(1));
  ctl::OutcomeWait failed;
  failed.feed(delivery("b@x", "bounced", "550 no"));
  failed.feed(attempt(0));
  ctl::OutcomeWait mixed;  // one bounced, one deferred: the verdict is the deferral
  mixed.feed(delivery("b@x", "bounced", "550 no"));
  mixed.feed(delivery("c@x", "deferred", "451 busy"));
  CHECK(mixed.feed(attempt(1)) == V::deferred);

  CHECK(ctl::conclude(M::interactive, none, V::sent, false, 69, withdraw).exit_code == 0);
  auto f = ctl::conclude(M::interactive, failed, V::failed, false, 69, withdraw);
  CHECK(f.exit_code == 69);
  CHECK(f.messages == std::vector<std::string>{"failed: <b@x>: 550 no"});
  CHECK(ctl::conclude(M::background, failed, V::failed, false, 1, withdraw).exit_code == 1);
  CHECK(withdrawals == 0);

  auto w = ctl::conclude(M::interactive, deferred, V::deferred, false, 69, withdraw);
  CHECK(w.exit_code == 75);
  CHECK(w.messages == std::vector<std::string>{"withdrawn: deferred: <a@x>: 451 busy"});
  CHECK(withdrawals == 1);
  auto t = ctl::conclude(M::interactive, none, V::waiting, true, 69, withdraw);
  CHECK(t.exit_code == 75);
  CHECK(t.messages == std::vector<std::string>{"withdrawn: no outcome within the timeout"});
  CHECK(withdrawals == 2);
  // A permanent failure is told whatever the end: withdrawn or queued.
  auto mi = ctl::conclude(M::interactive, mixed, V::deferred, false, 69, withdraw);
  CHECK(mi.exit_code == 75);
  CHECK(mi.messages ==
        std::vector<std::string>{"failed: <b@x>: 550 no", "withdrawn: deferred: <c@x>: 451 busy"});
  auto mb = ctl::conclude(M::background, mixed, V::deferred, false, 69, withdraw);
  CHECK(mb.exit_code == 0);
  CHECK(mb.messages ==
        std::vector<std::string>{"failed: <b@x>: 550 no", "queued: deferred: <c@x>: 451 busy"});
  CHECK(withdrawals == 3);

  // Never withdrawn: background, a possible delivery, a recipient already sent.
  auto b = ctl::conclude(M::background, deferred, V::deferred, false, 69, withdraw);
  CHECK(b.exit_code == 0);
  CHECK(b.messages == std::vector<std::string>{"queued: deferred: <a@x>: 451 busy"});
  auto d = ctl::conclude(M::interactive, dup, V::deferred, false, 69, withdraw);
  CHECK(d.exit_code == 0);
  CHECK(d.messages[0].starts_with("queued, not withdrawn: possibly delivered"));
  auto p = ctl::conclude(M::interactive, partly, V::deferred, false, 69, withdraw);
  CHECK(p.exit_code == 0);
  CHECK(p.messages[0].starts_with("queued, not withdrawn: some recipients were sent"));
  CHECK(withdrawals == 3);
  // The spool's answer decides the rest; only `done` is exit 75.
  const std::pair<K, const char*> kinds[] = {
      {K::in_flight, "queued, not withdrawn: possibly delivered (an attempt is running"},
      {K::refused, "queued, not withdrawn: some recipients were sent (no outcome"},
      {K::gone, "not withdrawn: the message is no longer in the spool"},
      {K::unknown, "queued, not withdrawn: spoold did not answer (timed out"},
      {K::failed, "queued, not withdrawn: disk full (no outcome"},
  };
  for (const auto& [kind, text] : kinds) {
    answer = {kind, kind == K::refused  ? "some recipients were sent"
                    : kind == K::failed ? "disk full"
                                        : "timed out"};
    auto r = ctl::conclude(M::interactive, none, V::waiting, true, 69, withdraw);
    INFO(r.messages.at(0));
    CHECK(r.exit_code == 0);
    CHECK(r.messages.at(0).starts_with(text));
  }
  CHECK(withdrawals == 8);
}

TEST_CASE("OutcomeWait: an attempt whose outcome was not written is no verdict") {
  ctl::OutcomeWait w;
  w.feed(delivery("a@x", "sent", "250"));
  CHECK(w.feed(attempt(0).set("error", "No space left on device")) == ctl::OutcomeWait::Verdict::waiting);
}

TEST_CASE("sendmail -N, -R and -V are the DSN requests, in canonical form") {
  auto a = ctl::parse_sendmail_args({"-N", "delay, Failure", "-Rhdrs", "-V", "env+1", "x@y.z"});
  REQUIRE(a.ok());
  CHECK(a->warnings.empty());
  CHECK(a->dsn_notify == "FAILURE,DELAY");
  CHECK(a->dsn_ret == "HDRS");
  CHECK(a->dsn_envid == "env+1");
  CHECK(ctl::parse_sendmail_args({"-Nnever", "x@y.z"})->dsn_notify == "NEVER");
  for (std::vector<std::string> bad : {std::vector<std::string>{"-N", "never,success"},
                                       {"-N", "sometimes"},
                                       {"-N", ""},
                                       {"-R", "all"},
                                       {"-V", "tab\there"},
                                       {"-V", std::string(101, 'e')}}) {
    INFO(bad[0] + " " + bad[1]);
    CHECK_FALSE(ctl::parse_sendmail_args(bad).ok());
  }
}

TEST_CASE("sendmail usage errors") {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"-f"}, {"-bs", "x@y.z"}, {"-bd"}, {"-o"}, {"-C"}}) {
    INFO(args[0]);
    CHECK_FALSE(ctl::parse_sendmail_args(args).ok());
  }
}

TEST_CASE("ages print as their two largest units") {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {-5, "0s"},    {0, "0s"},       {1, "1s"},      {59, "59s"},      {60, "1m"},
      {61, "1m1s"},  {3600, "1h"},    {3660, "1h1m"}, {11520, "3h12m"}, {11525, "3h12m"},
      {86400, "1d"}, {93600, "1d2h"}, {172800, "2d"}};
  for (const auto& [secs, text] : cases) {
    INFO(secs);
    CHECK(ctl::format_age(secs) == text);
  }
}

TEST_CASE("tables align columns, numbers to the right") {
  ctl::Table t({"name", "n"}, {1});
  t.add({"a", "1"});
  t.add({"longer", "100"});
  CHECK(t.render() == "name      n\na         1\nlonger  100\n");
}

TEST_CASE("status renders the usage totals: since start, this instance, all instances") {
  auto status = Json::parse(
      R"({"ok":true,"daemon":{"running":false,"pid":0,"uptime_s":0,"instance":"a"},"tiers":[],
          "incoming":0,"failed":0,"bad":0,"held":0,"in_flight":0,"counters":{},"destinations":[],
          "usage":{"instance":"a","since":1700000000,"since_start":null,
            "total":{"spooled":{"messages":3,"recipients":4,"bytes":300},"sent":{"messages":2,"recipients":3,"bytes":200}},
            "all_instances":{"spooled":{"messages":5,"recipients":6,"bytes":500}},
            "instances":[{"instance":"a"},{"instance":"b"}],"problems":["usage/c: line 1: not a usage file"]}})");
  REQUIRE(status.ok());
  std::string s = ctl::format_status(*status, 0);
  INFO(s);
  CHECK(s.find("since start") == std::string::npos);  // no daemon: nothing counted since a start
  CHECK(s.find("\nusage (messages/recipients/bytes):\n") != std::string::npos);
  CHECK(s.find("\ntotal, instance a") != std::string::npos);
  CHECK(s.find("  3/4/300  2/3/200     0/0/0") != std::string::npos);
  CHECK(s.find("\ntotal, all 2 instances  5/6/500    0/0/0") != std::string::npos);
  CHECK(s.find("usage: usage/c: line 1: not a usage file\n") != std::string::npos);
  CHECK(s.find("counters:") == std::string::npos);
  // Without a usage object (an older daemon's answer): no table.
  auto old = Json::parse(R"({"ok":true,"daemon":{"running":false},"tiers":[]})");
  REQUIRE(old.ok());
  CHECK(ctl::format_status(*old, 0).find("usage") == std::string::npos);
}

TEST_CASE("status, list and show render the protocol JSON") {
  auto status = Json::parse(
      R"({"ok":true,"daemon":{"running":true,"pid":42,"uptime_s":11520,"instance":"a"},
          "tiers":[{"tier":0,"delay_s":0,"messages":3,"oldest_s":125},{"tier":1,"delay_s":1800,"messages":0,"oldest_s":0}],
          "incoming":1,"failed":2,"bad":0,"held":1,"in_flight":4,
          "counters":{"picked_up":9,"sent":7,"deferred":1,"bounced":0,"expired":0},
          "destinations":[{"hop":"mx.example.org","sessions":2,"queued":5}]})");
  REQUIRE(status.ok());
  std::string s = ctl::format_status(*status, 0);
  CHECK(s.find("running, pid 42, up 3h12m") != std::string::npos);
  CHECK(s.find("\ntier  delay  messages  oldest\n   0     0s         3    2m5s\n") != std::string::npos);
  CHECK(s.find("   1    30m         0       -") != std::string::npos);
  CHECK(s.find("incoming 1  held 1  failed 2  bad 0  in flight 4") != std::string::npos);
  CHECK(s.find("sent 7") != std::string::npos);
  CHECK(s.find("mx.example.org") != std::string::npos);

  auto list = Json::parse(
      R"({"ok":true,"truncated":false,"messages":[{"id":"ABC","place":"hold","held":true,"sender":"",
          "size":2048,"arrived":1700000000,"recipients":[{"address":"bob@example.org","state":"pending",
          "attempts":1,"last_reply":"451 4.7.1 later"},{"address":"c@example.org","state":"sent","attempts":1,"last_reply":""}]}]})");
  REQUIRE(list.ok());
  std::string l = ctl::format_list(*list, 0);
  CHECK(l.rfind("-Queue ID-", 0) == 0);
  CHECK(l.find("ABC!") != std::string::npos);
  CHECK(l.find("MAILER-DAEMON") != std::string::npos);
  CHECK(l.find("(451 4.7.1 later)\n") != std::string::npos);
  CHECK(l.find("c@example.org [sent]") != std::string::npos);
  CHECK(l.find("-- 2 Kbytes in 1 Request.") != std::string::npos);
  CHECK(ctl::format_list(*Json::parse(R"({"ok":true,"messages":[]})"), 0) == "Mail queue is empty\n");

  auto show = Json::parse(
      R"({"ok":true,"message":{"id":"ABC","place":"queue","tier":2,"held":false,"sender":"a@b.c","size":10,
          "arrived":1000,"last_attempt":0,"attempts":0,"next_attempt":5000,"recipients":[],
          "headers":"Subject: x\r\nFrom: a@b.c\r\n"}})");
  REQUIRE(show.ok());
  std::string sh = ctl::format_show(*show, 2000);
  CHECK(sh.find("queue, tier 2") != std::string::npos);
  CHECK(sh.find("(16m40s ago)") != std::string::npos);
  CHECK(sh.find("(in 50m)") != std::string::npos);
  CHECK(sh.find("  Subject: x\n  From: a@b.c\n") != std::string::npos);
  CHECK(sh.find("dsn") == std::string::npos);  // nothing about DSN when the submission asked for none

  auto dsn = Json::parse(
      R"({"ok":true,"message":{"id":"ABC","place":"queue","tier":1,"held":false,"sender":"a@b.c","size":10,
          "arrived":1000,"last_attempt":0,"attempts":0,"next_attempt":5000,"ret":"HDRS","envid":"env 1",
          "recipients":[{"address":"x@y.z","state":"pending","attempts":1,"last_reply":"451 later",
                         "notify":"SUCCESS,DELAY","orcpt":"rfc822;X@y.z"},
                        {"address":"w@y.z","state":"pending","attempts":1,"last_reply":"451 later"}],
          "headers":""}})");
  REQUIRE(dsn.ok());
  std::string d = ctl::format_show(*dsn, 2000);
  INFO(d);
  CHECK(d.find("dsn:           RET=HDRS ENVID=env 1\n") != std::string::npos);
  CHECK(d.find("NOTIFY=SUCCESS,DELAY ORCPT=rfc822;X@y.z  451 later") != std::string::npos);
  CHECK(d.find("w@y.z      pending         1  -") != std::string::npos);
}

namespace {

// Feeds `input` through a pipe to read_message (a writer thread, so large inputs cannot block).
spoold::Result<std::string> read_through_pipe(const std::string& input, bool ignore_dots, uint64_t max) {
  ::signal(SIGPIPE, SIG_IGN);  // read_message may stop reading (too big) while the writer writes
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::thread writer([&] {
    size_t off = 0;
    while (off < input.size()) {
      ssize_t n = ::write(fds[1], input.data() + off, input.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(fds[1]);
  });
  auto r = ctl::read_message(fds[0], ignore_dots, max);
  ::close(fds[0]);
  writer.join();
  return r;
}

ctl::SubmitOptions opts(std::vector<std::string> rcpts) {
  ctl::SubmitOptions o;
  o.recipients = std::move(rcpts);
  o.default_sender = "joe@host.test";
  o.qualify_domain = "host.test";
  return o;
}

}  // namespace

TEST_CASE("a line with only a dot ends the message unless -i") {
  const std::string in = "Subject: x\n\nline 1\n.\nline 3\n";
  CHECK(*read_through_pipe(in, false, 1000) == "Subject: x\n\nline 1\n");
  CHECK(*read_through_pipe(in, true, 1000) == in);
  CHECK(*read_through_pipe("a\r\n.\r\nb\r\n", false, 1000) == "a\r\n");
  CHECK(*read_through_pipe(".\nb\n", false, 1000) == "");
  CHECK(*read_through_pipe("a\n..\nb\n", false, 1000) == "a\n..\nb\n");  // not SMTP: no unstuffing
  CHECK(*read_through_pipe("a\n.", false, 1000) == "a\n");               // a last "." without newline
  CHECK(*read_through_pipe("a\n. \nb", false, 1000) == "a\n. \nb");
  std::string big(200000, 'x');
  auto r = read_through_pipe(big, true, 1000);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ctl::kExDataErr);
}

TEST_CASE("header fields are unfolded and end at the empty line") {
  auto f = ctl::header_fields("To: a@b.c,\r\n  d@e.f\r\nX-Y:z\r\n\r\nNot: header\r\n");
  REQUIRE(f.size() == 2);
  CHECK(f[0].name == "to");
  CHECK(f[0].value == " a@b.c,  d@e.f");
  CHECK(f[1].name == "x-y");
  CHECK(ctl::header_fields("just text\nTo: x@y.z\n").empty());
}

TEST_CASE("a drop is envelope first and parses to the same envelope") {
  auto s = ctl::build_submission("Subject: hi\nFrom: Ann <ann@x.org>\n\nbody\n",
                                 opts({"bob@example.org, carl@example.org", "root"}));
  REQUIRE(s.ok());
  CHECK(s->sender == "joe@host.test");
  CHECK(s->recipients == std::vector<std::string>{"bob@example.org", "carl@example.org", "root@host.test"});
  CHECK(s->drop.rfind("MAIL FROM:<joe@host.test>\nRCPT TO:<bob@example.org>\n", 0) == 0);
  auto info = spoold::spool::parse_drop(s->drop);
  REQUIRE(info.ok());
  CHECK(info->format == spoold::spool::DropFormat::envelope_first);
  CHECK(info->recipients == s->recipients);
  CHECK(s->drop.substr(info->body_offset) == "Subject: hi\nFrom: Ann <ann@x.org>\n\nbody\n");
}

TEST_CASE("DSN requests of the command line are in the drop's envelope lines") {
  auto o = opts({"bob@example.org", "carl@example.org"});
  o.dsn = {"FULL", "e 1"};
  o.dsn_notify = "SUCCESS";
  auto s = ctl::build_submission("Subject: hi\n\nbody\n", o);
  REQUIRE(s.ok());
  INFO(s->drop);
  CHECK(s->drop.rfind(
            "MAIL FROM:<joe@host.test> RET=FULL ENVID=e+201\nRCPT TO:<bob@example.org> NOTIFY=SUCCESS\n"
            "RCPT TO:<carl@example.org> NOTIFY=SUCCESS\n\nFrom: joe@host.test\nSubject: hi\n",
            0) == 0);
  auto info = spoold::spool::parse_drop(s->drop);
  REQUIRE(info.ok());
  CHECK(info->dsn == spoold::spool::MessageDsn{"FULL", "e 1"});
  REQUIRE(info->recipient_dsn.size() == 2);
  CHECK(info->recipient_dsn[1].notify == "SUCCESS");
}

TEST_CASE("-t takes To, Cc and Bcc (Bcc stays for the daemon to strip) and the sender from the headers") {
  auto o = opts({"extra@example.org"});
  o.extract = true;
  auto s = ctl::build_submission(
      "From: Ann <ann@x.org>\nTo: bob@example.org,\n carl@example.org\nCc: Dee <dee@example.net>\nBcc: "
      "hidden@example.com\n\nhi\n",
      o);
  REQUIRE(s.ok());
  CHECK(s->sender == "ann@x.org");
  CHECK(s->recipients == std::vector<std::string>{"extra@example.org", "bob@example.org", "carl@example.org",
                                                  "dee@example.net", "hidden@example.com"});
  auto info = spoold::spool::parse_drop(s->drop);
  REQUIRE(info.ok());
  CHECK(info->has_bcc);
  CHECK(s->drop.find("\nBcc: hidden@example.com\n") != std::string::npos);
}

TEST_CASE("-t: -f wins over the headers, and unqualified header addresses get the host name") {
  auto o = opts({});
  o.extract = true;
  o.sender = "bounces@x.org";
  auto s = ctl::build_submission("To: root, bob@example.org\nSubject: cron\n\nhi\n", o);
  REQUIRE(s.ok());
  CHECK(s->sender == "bounces@x.org");
  CHECK(s->recipients == std::vector<std::string>{"root@host.test", "bob@example.org"});
  CHECK(s->drop.find("\n\nFrom: bounces@x.org\nTo: root, bob@example.org\n") != std::string::npos);
}

TEST_CASE("-f forms: address, bare local part, null sender") {
  struct Case {
    std::string flag, sender;
  };
  for (const auto& c : std::vector<Case>{{"a@b.org", "a@b.org"},
                                         {"<a@b.org>", "a@b.org"},
                                         {"daemon", "daemon@host.test"},
                                         {"<>", ""},
                                         {"", ""}}) {
    INFO(c.flag);
    auto o = opts({"x@y.org"});
    o.sender = c.flag;
    auto s = ctl::build_submission("Subject: s\n\nb\n", o);
    REQUIRE(s.ok());
    CHECK(s->sender == c.sender);
    CHECK(s->drop.rfind("MAIL FROM:<" + c.sender + ">\n", 0) == 0);
  }
}

TEST_CASE("-F names the From: we add, never one the message has") {
  auto o = opts({"x@y.org"});
  o.full_name = "Joe \"The\" Doe";
  auto s = ctl::build_submission("Subject: s\n\nb\n", o);
  REQUIRE(s.ok());
  CHECK(s->drop.find("\n\nFrom: \"Joe \\\"The\\\" Doe\" <joe@host.test>\nSubject: s\n") != std::string::npos);
  o.full_name = "Cron Daemon\nBcc: evil@x.org";  // a newline must not start a header
  s = ctl::build_submission("Subject: s\n\nb\n", o);
  REQUIRE(s.ok());
  CHECK(s->drop.find("\nBcc:") == std::string::npos);
  o.full_name = "Plain Name";
  s = ctl::build_submission("From: me@x.org\n\nb\n", o);
  REQUIRE(s.ok());
  CHECK(s->drop.find("Plain Name") == std::string::npos);
  s = ctl::build_submission("plain text, no headers\n", o);
  REQUIRE(s.ok());
  CHECK(s->drop.find("\n\nFrom: Plain Name <joe@host.test>\n\nplain text, no headers\n") !=
        std::string::npos);
}

TEST_CASE("a leading mbox From line is dropped") {
  auto s =
      ctl::build_submission("From joe Sat Jan  1 00:00:00 2000\nFrom: joe@x.org\n\nb\n", opts({"x@y.org"}));
  REQUIRE(s.ok());
  CHECK(s->drop.find("From joe") == std::string::npos);
}

TEST_CASE("data errors: no recipients, bad addresses, too big") {
  auto none = ctl::build_submission("Subject: s\n\nb\n", opts({}));
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == ctl::kExDataErr);
  auto t = opts({});
  t.extract = true;
  auto none_t = ctl::build_submission("Subject: s\n\nb\n", t);
  REQUIRE_FALSE(none_t.ok());
  CHECK(none_t.error().message.find("To:") != std::string::npos);
  for (std::string bad : {"a@@b.org", "<unterminated@x.org", "a b@c.org", "x@", "\x01@x.org"}) {
    INFO(bad);
    auto r = ctl::build_submission("Subject: s\n\nb\n", opts({bad}));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ctl::kExDataErr);
  }
  auto bad_sender = opts({"x@y.org"});
  bad_sender.sender = "a@@b";
  CHECK(ctl::build_submission("S: s\n\nb\n", bad_sender).error().code == ctl::kExDataErr);
  auto small = opts({"x@y.org"});
  small.max_message_size = 100;
  auto big = ctl::build_submission("Subject: s\n\n" + std::string(200, 'x') + "\n", small);
  REQUIRE_FALSE(big.ok());
  CHECK(big.error().message.find("max_message_size") != std::string::npos);
}

// Where LF-only and CR-splitting readers of a header disagree (tests/support/hostile_headers.h):
// `sendmail -t` must take its recipients from the header fields the encoder sends and the drop
// parser reads, no more (a Bcc: the encoder sends as text) and no fewer.
TEST_CASE("-t reads a header with stray CRs as the daemon will send it") {
  for (const auto& c : spoold::test::hostile_headers()) {
    INFO(c.name);
    std::vector<std::string> names;
    for (const auto& f : ctl::header_fields(c.message)) names.push_back(f.name);
    CHECK(names == c.fields);
    auto o = opts({});
    o.extract = true;
    auto s = ctl::build_submission(c.message, o);
    REQUIRE(s.ok());
    CHECK(s->sender == "a@x.org");
    CHECK(s->recipients == c.rcpts);
    auto bare = spoold::spool::parse_drop(c.message);
    REQUIRE(bare.ok());
    CHECK(bare->recipients == s->recipients);
    auto info = spoold::spool::parse_drop(s->drop);
    REQUIRE(info.ok());
    CHECK(info->recipients == c.rcpts);
  }
}

TEST_CASE("-t: unfolded values have a space for each lone CR and no CR before the line end") {
  auto f = ctl::header_fields("To: a@b.c,\r\r\n d@e.f\rX: 1\r\n\r\r\nBcc: g@h.i\n");
  REQUIRE(f.size() == 1);
  CHECK(f[0].name == "to");
  CHECK(f[0].value == " a@b.c, d@e.f X: 1");
}
