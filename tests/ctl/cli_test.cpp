// tests/ctl/cli_test.cpp — the built spoolctl / sendmail / mailq / newaliases binaries run as child processes
// on a temporary spool with a temporary config: every command offline (no daemon), human and
// --json; sendmail with each flag, its exit codes, and the daemon's pickup of what it dropped;
// and the control-socket path against a stand-in daemon that answers one JSON line.
#include <catch2/catch.hpp>

#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include "control/json.h"
#include "control/ops.h"
#include "spool/spool.h"
#include "tests/support/fixtures.h"

using spoold::control::Json;
namespace spool = spoold::spool;
namespace test = spoold::test;
using namespace std::chrono_literals;

namespace {

struct Run {
  int status = -1;  // exit code, or -1 if it did not exit normally
  std::string out, err;
};

std::string user_name() {
  const passwd* pw = ::getpwuid(::getuid());
  return pw ? pw->pw_name : "";
}

struct Cli {
  test::TempDir tmp;
  std::string config = tmp / "spoold.yaml";
  std::string spool_dir = tmp / "spool";
  std::string socket = tmp / "control.sock";

  Cli() { write_config(spool_dir); }

  void write_config(const std::string& dir, const std::string& max_size = "10KB") {
    test::write_file(config,
                     "hostname: mail.test\nspool_dir: " + dir + "\ncontrol_socket: " + socket +
                         "\nqueue:\n  max_message_size: " + max_size +
                         "\n  tiers:\n    - { delay: 0, priority: 1 }\n    - { delay: 30m, priority: 3 }\n"
                         "    - { delay: 4h, priority: 9 }\n");
  }

  // Runs build/ctl/<prog> with `input` on stdin; bounded to 30 s.
  Run run(const std::string& prog, std::vector<std::string> args, const std::string& input = "",
          std::vector<std::string> env = {}) {
    static int n = 0;
    std::string in = tmp / ("stdin." + std::to_string(++n)), out = in + ".out", err = in + ".err";
    test::write_file(in, input);
    std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" < '" + in + "'",
                                     std::string(SPOOLD_BINARY_DIR) + "/ctl/" + prog};
    argv.insert(argv.end(), args.begin(), args.end());
    Run r;
    {
      test::Process p(argv, out, err, std::move(env));
      int st = p.wait(30s);
      r.status = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    r.out = test::read_file(out);
    r.err = test::read_file(err);
    return r;
  }

  Run ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config});
    return run("spoolctl", std::move(args));
  }

  Run sendmail(std::vector<std::string> args, const std::string& input) {
    args.insert(args.begin(), {"-C", config});
    return run("sendmail", std::move(args), input);
  }

  spool::Spool open_spool() {
    spool::Options o;
    o.dir = spool_dir;
    o.tier_delays = {0s, 1800s, 14400s};
    o.hostname = "mail.test";
    auto s = spool::Spool::open(o);
    REQUIRE(s.ok());
    return std::move(*s);
  }

  // What the daemon's pickup makes of everything sendmail dropped.
  struct Picked {
    spool::Entry entry;
    std::string message;
  };
  std::vector<Picked> pickup_all() {
    auto sp = open_spool();
    auto names = sp.list_incoming(100);
    REQUIRE(names.ok());
    std::vector<Picked> out;
    for (const auto& name : *names) {
      auto r = sp.pickup(name);
      REQUIRE(r.ok());
      INFO(r->reason);
      REQUIRE(r->outcome == spool::PickupOutcome::queued);
      auto ref = sp.find(r->id);
      REQUIRE((ref.ok() && ref->has_value()));
      auto e = sp.read(**ref);
      REQUIRE(e.ok());
      std::string body = test::read_file(sp.body_path(r->id));
      out.push_back({*e, body.substr(e->body_offset, e->body_size)});
    }
    return out;
  }

  Picked pickup_one() {
    auto all = pickup_all();
    REQUIRE(all.size() == 1);
    return all[0];
  }

  size_t incoming() { return test::list_dir(spool_dir + "/incoming").size(); }
};

std::vector<std::string> addresses(const spool::Entry& e) {
  std::vector<std::string> out;
  for (const auto& r : e.recipients) out.push_back(r.address);
  return out;
}

Json json_of(const Run& r) {
  auto j = Json::parse(r.out.substr(0, r.out.find('\n')));
  REQUIRE(j.ok());
  return *j;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

constexpr const char* kOffline = "daemon not running; reading the spool directly";
constexpr const char* kOfflineAct = "daemon not running; acting on the spool directly";

}  // namespace

// ---- sendmail -------------------------------------------------------------------------------

// ---- newaliases ---------------------------------------------------------------------------------

TEST_CASE_METHOD(Cli, "newaliases: a valid aliases file, and the config's aliases") {
  std::string aliases = tmp / "aliases";
  test::write_file(aliases, "# comment\npostmaster: root\nroot: admin@example.com,\n  ops@example.com\n");
  test::write_file(config,
                   test::read_file(config) + "aliases: { abuse: root }\naliases_file: " + aliases + "\n");
  auto r = run("newaliases", {"-C", config});
  CHECK(r.status == 0);
  CHECK(r.out == "3 aliases (2 from " + aliases + ", 1 from " + config + ")\n");
  CHECK(r.err.empty());
  auto same = run("sendmail", {"-C", config, "-bi"});  // sendmail -bi is newaliases
  CHECK(same.status == 0);
  CHECK(same.out == r.out);
  auto shadowed = Cli();
  test::write_file(shadowed.config, test::read_file(shadowed.config) + "aliases: { root: me@example.com }\n" +
                                        "aliases_file: " + aliases + "\n");
  auto w = shadowed.run("newaliases", {"--config", shadowed.config});
  CHECK(w.status == 0);
  CHECK(w.err == "newaliases: warning: " + aliases +
                     ":3:1: alias 'root' is also in the config's aliases, which win\n");
}

TEST_CASE_METHOD(Cli, "newaliases: each bad line on stderr as file:line:col, exit 1") {
  std::string aliases = tmp / "aliases";
  test::write_file(aliases,
                   "postmaster: root\nwww: \"|/usr/bin/handler\"\nbad line\nroot: postmaster@localhost\n");
  test::write_file(config, test::read_file(config) + "aliases_file: " + aliases + "\n");
  auto r = run("newaliases", {"-C", config});
  CHECK(r.status == 1);
  CHECK(r.out.empty());
  CHECK(r.err == aliases +
                     ":2:6: '\"|/usr/bin/handler\"': delivery to a command is not supported (spoold only "
                     "forwards mail)\n" +
                     aliases + ":3:1: expected 'name: address, ...'\n");
  CHECK(run("sendmail", {"-C", config, "-bi"}).status == 1);
  // Mail is still taken: sendmail does not read the aliases file.
  auto s = sendmail({"you@example.com"}, "Subject: x\n\nhi\n");
  CHECK(s.status == 0);
  CHECK(s.err.empty());
  CHECK(pickup_all().size() == 1);
}

TEST_CASE_METHOD(Cli, "newaliases: a config that does not load, and usage errors") {
  test::write_file(config, test::read_file(config) + "aliases_file: " + (tmp / "missing") + "\n");
  auto r = run("newaliases", {"-C", config});
  CHECK(r.status == 1);
  CHECK(r.err == config + ":10:15: aliases_file: cannot read '" + (tmp / "missing") +
                     "': No such file or directory\n");
  auto bad = run("newaliases", {"--bogus"});
  CHECK(bad.status == 2);
  CHECK(contains(bad.err, "newaliases: unknown argument '--bogus'\nusage: newaliases"));
  auto help = run("newaliases", {"--help"});
  CHECK(help.status == 0);
  CHECK(contains(help.out, "usage: newaliases"));
}

TEST_CASE_METHOD(Cli, "sendmail drops a message that pickup queues for the named recipients") {
  auto r = sendmail({"bob@example.org", "carol@example.net"}, "Subject: hi\n\nhello\n");
  CHECK(r.status == 0);
  CHECK(r.err.empty());
  auto p = pickup_one();
  CHECK(p.entry.sender == user_name() + "@mail.test");
  CHECK(addresses(p.entry) == std::vector<std::string>{"bob@example.org", "carol@example.net"});
  CHECK(p.message == "From: " + user_name() + "@mail.test\nSubject: hi\n\nhello\n");
  CHECK(test::list_dir(spool_dir + "/tmp").empty());
}

TEST_CASE_METHOD(
    Cli, "sendmail -t: recipients from To, Cc and Bcc; Bcc stays in the drop for the daemon to strip") {
  auto r = sendmail({"-t", "-i"},
                    "From: Ann <ann@example.com>\nTo: bob@example.org\nCc: carol@example.net\n"
                    "Bcc: hidden@example.com\nSubject: t\n\nbody\n");
  CHECK(r.status == 0);
  auto p = pickup_one();
  CHECK(p.entry.sender == "ann@example.com");
  CHECK(addresses(p.entry) ==
        std::vector<std::string>{"bob@example.org", "carol@example.net", "hidden@example.com"});
  CHECK(p.entry.flags.has_bcc);
  CHECK(contains(p.message, "Bcc: hidden@example.com\n"));
}

TEST_CASE_METHOD(Cli, "sendmail -t adds command-line recipients and -f sets the envelope sender") {
  auto r = sendmail({"-t", "-f", "bounces@example.com", "extra@example.org"}, "To: bob@example.org\n\nx\n");
  CHECK(r.status == 0);
  auto p = pickup_one();
  CHECK(p.entry.sender == "bounces@example.com");
  CHECK(addresses(p.entry) == std::vector<std::string>{"extra@example.org", "bob@example.org"});
  CHECK(contains(p.message, "From: bounces@example.com\n"));
}

TEST_CASE_METHOD(Cli, "sendmail -f forms and -r") {
  CHECK(sendmail({"-fme@example.com", "a@example.org"}, "S: 1\n\nx\n").status == 0);
  CHECK(sendmail({"-r", "<>", "a@example.org"}, "From: x@example.com\n\nx\n").status == 0);
  auto all = pickup_all();
  REQUIRE(all.size() == 2);
  std::vector<std::string> senders = {all[0].entry.sender, all[1].entry.sender};
  std::sort(senders.begin(), senders.end());
  CHECK(senders == std::vector<std::string>{"", "me@example.com"});
}

TEST_CASE_METHOD(Cli, "sendmail -t reads CRLF input and folded headers") {
  auto r = sendmail(
      {"-t"},
      "From: a@example.com\r\nTo: b@example.org,\r\n  c@example.org\r\nSubject: crlf\r\n\r\nx\r\n.\r\n");
  CHECK(r.status == 0);
  auto p = pickup_one();
  CHECK(addresses(p.entry) == std::vector<std::string>{"b@example.org", "c@example.org"});
  CHECK(p.message ==
        "From: a@example.com\r\nTo: b@example.org,\r\n  c@example.org\r\nSubject: crlf\r\n\r\nx\r\n");
}

TEST_CASE_METHOD(Cli, "sendmail -F sets the display name of the From: it adds") {
  CHECK(sendmail({"-F", "Cron Daemon", "-f", "cron@example.com", "a@example.org"}, "Subject: s\n\nx\n")
            .status == 0);
  auto p = pickup_one();
  CHECK(p.message.rfind("From: Cron Daemon <cron@example.com>\nSubject: s\n", 0) == 0);
}

TEST_CASE_METHOD(Cli, "a line with only a dot ends the message, unless -i or -oi") {
  const std::string msg = "Subject: d\n\nline 1\n.\nline 3\n";
  CHECK(sendmail({"a@example.org"}, msg).status == 0);
  auto p = pickup_one();
  CHECK(contains(p.message, "line 1\n"));
  CHECK_FALSE(contains(p.message, "line 3"));
  for (const char* flag : {"-i", "-oi"}) {
    INFO(flag);
    CHECK(sendmail({flag, "a@example.org"}, msg).status == 0);
    auto q = pickup_one();
    CHECK(contains(q.message, "line 1\n.\nline 3\n"));
  }
}

TEST_CASE_METHOD(Cli, "legacy sendmail options are accepted with a warning") {
  auto r = sendmail({"-odq", "-oem", "-v", "-U", "-B8BITMIME", "-N", "never", "-R", "hdrs", "-V", "e1", "-L",
                     "tag", "--", "a@example.org"},
                    "Subject: l\n\nx\n");
  CHECK(r.status == 0);
  CHECK_FALSE(contains(r.err, "-odq"));  // understood: the default mode
  CHECK(contains(r.err, "sendmail: ignoring option -oem\n"));
  CHECK(contains(r.err, "sendmail: ignoring option -B 8BITMIME\n"));
  CHECK(contains(r.err, "sendmail: ignoring option -L tag\n"));
  CHECK(addresses(pickup_one().entry) == std::vector<std::string>{"a@example.org"});
}

TEST_CASE_METHOD(Cli, "spoolctl send is sendmail") {
  auto r = run("spoolctl", {"--config", config, "send", "-f", "s@example.com", "a@example.org"},
               "Subject: x\n\ny\n");
  CHECK(r.status == 0);
  CHECK(pickup_one().entry.sender == "s@example.com");
}

TEST_CASE_METHOD(Cli, "sendmail exits 75 when the spool cannot be written, and leaves nothing behind") {
  SECTION("spool_dir below a regular file") {
    test::write_file(tmp / "plainfile", "x");
    write_config(tmp / "plainfile/spool");
    auto r = sendmail({"a@example.org"}, "S: x\n\ny\n");
    CHECK(r.status == 75);
    CHECK(contains(r.err, "sendmail: "));
  }
  SECTION("incoming/ is not a directory") {
    open_spool();
    REQUIRE(::rmdir((spool_dir + "/incoming").c_str()) == 0);
    test::write_file(spool_dir + "/incoming", "");
    auto r = sendmail({"a@example.org"}, "S: x\n\ny\n");
    CHECK(r.status == 75);
    CHECK(contains(r.err, "cannot write to the spool"));
    CHECK(test::list_dir(spool_dir + "/tmp").empty());
  }
}

TEST_CASE_METHOD(Cli, "sendmail usage, data and config errors have their sysexits and write nothing") {
  struct Case {
    std::vector<std::string> args;
    std::string input;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{}, "S: x\n\ny\n", 64, "no recipients"},
      {{"-bs", "a@example.org"}, "", 64, "-bs takes no recipients"},
      {{"-bd"}, "", 64, "-bd is not supported"},
      {{"-f"}, "", 64, "needs a value"},
      {{"a@@example.org"}, "S: x\n\ny\n", 65, "bad recipient address"},
      {{"-f", "x@@y", "a@example.org"}, "S: x\n\ny\n", 65, "bad sender address"},
      {{"-t"}, "Subject: nobody\n\ny\n", 65, "no recipients"},
      {{"-t"}, "To: bad@@address\n\ny\n", 65, "To:"},
      {{"a@example.org"}, "S: x\n\n" + std::string(20000, 'x') + "\n", 65, "max_message_size"},
  };
  for (const auto& c : cases) {
    INFO(c.says);
    auto r = sendmail(c.args, c.input);
    CHECK(r.status == c.status);
    CHECK(contains(r.err, c.says));
  }
  auto r = run("sendmail", {"-C", tmp / "missing.yaml", "a@example.org"}, "S: x\n\ny\n");
  CHECK(r.status == 78);
  CHECK(incoming() == 0);
}

// ---- sendmail -bs -------------------------------------------------------------------------------

namespace {

// The Received: field -bs writes, up to its date: the caller's login and uid, no client address.
std::string bs_received(const std::string& helo, const std::string& proto, const std::string& id,
                        const std::string& rcpt) {
  return "Received: from " + helo + " (" + user_name() +
         "@localhost)\r\n\tby mail.test (spoold, from userid " + std::to_string(::getuid()) + ") with " +
         proto + " id " + id + "\r\n\tfor <" + rcpt + ">; ";
}

// The message of a drop after its Received: field (the first line that does not continue it).
std::string after_received(const std::string& message) {
  size_t pos = message.find("\r\n");
  while (pos != std::string::npos && pos + 2 < message.size() &&
         (message[pos + 2] == '\t' || message[pos + 2] == ' '))
    pos = message.find("\r\n", pos + 2);
  return pos == std::string::npos ? "" : message.substr(pos + 2);
}

std::vector<std::string> reply_lines(const std::string& out) {
  std::vector<std::string> lines;
  for (size_t start = 0, end; (end = out.find("\r\n", start)) != std::string::npos; start = end + 2)
    lines.push_back(out.substr(start, end - start));
  return lines;
}

}  // namespace

TEST_CASE_METHOD(
    Cli, "sendmail -bs: Symfony Mailer's transport over pipes, 100 messages under their reported ids") {
  std::string out = tmp / "symfony.out", err = tmp / "symfony.err";
  {
    test::Process p(
        {test::system_python(), std::string(SPOOLD_SOURCE_DIR) + "/tests/ctl/symfony_sendmail_bs.py",
         std::string(SPOOLD_BINARY_DIR) + "/ctl/sendmail", config, "100"},
        out, err);
    int st = p.wait(90s);
    INFO(test::read_file(err));
    REQUIRE(st != -1);
    REQUIRE(WIFEXITED(st));
    REQUIRE(WEXITSTATUS(st) == 0);
  }
  CHECK(test::read_file(err).empty());
  auto result = Json::parse(test::read_file(out));
  REQUIRE(result.ok());
  const auto& messages = (*result)["messages"].as_array();
  REQUIRE(messages.size() == 100);
  auto names = test::list_dir(spool_dir + "/incoming");
  CHECK(names.size() == 100);
  CHECK(test::list_dir(spool_dir + "/tmp").empty());
  std::set<std::string> ids;
  for (const auto& m : messages) {
    const std::string& id = m["id"].as_string();
    INFO(id);
    ids.insert(id);
    CHECK(spool::id_time(id) > 0);  // a queue id of this spool, not a made-up name
    std::string drop = test::read_file(spool_dir + "/incoming/" + id);
    auto info = spool::parse_drop(drop);
    REQUIRE(info.ok());
    CHECK(info->format == spool::DropFormat::envelope_first);
    CHECK(info->sender == m["from"].as_string());
    REQUIRE(info->recipients.size() == 1);
    CHECK(info->recipients[0] == m["to"].as_array()[0].as_string());
    std::string message = drop.substr(info->body_offset);
    CHECK(message.starts_with(bs_received("[127.0.0.1]", "SMTP", id, info->recipients[0])));
    CHECK(after_received(message) == m["message"].as_string());  // dot-stuffing undone, CRLF kept
    CHECK_FALSE(info->missing_message_id);
  }
  CHECK(ids.size() == 100);
  // The daemon's pickup keeps each id: the one the client was told is the one in the log.
  auto sp = open_spool();
  for (const auto& id : ids) {
    auto r = sp.pickup(id);
    REQUIRE(r.ok());
    INFO(r->reason);
    CHECK(r->outcome == spool::PickupOutcome::queued);
    CHECK(r->id == id);
  }
}

TEST_CASE_METHOD(Cli, "sendmail -bs: EHLO, pipelining, RSET, several recipients, a UTF-8 one kept") {
  auto r =
      sendmail({"-bs"},
               "EHLO client.example\r\n"
               "MAIL FROM:<> SMTPUTF8\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<j\xc3\xbcrgen@example.org>\r\n"
               "RCPT TO:<Postmaster>\r\nDATA\r\nSubject: two\r\n\r\nhi\r\n.\r\n"
               "MAIL FROM:<a@example.com>\r\nRCPT TO:<c@example.org>\r\nRSET\r\nNOOP\r\nQUIT\r\n");
  CHECK(r.status == 0);
  CHECK(r.err.empty());
  auto lines = reply_lines(r.out);
  CHECK_FALSE(contains(r.out, "553"));
  CHECK(contains(r.out, "\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"));  // RSET, NOOP, QUIT
  REQUIRE(incoming() == 1);
  std::string id = test::list_dir(spool_dir + "/incoming")[0];
  CHECK(contains(r.out, "250 2.0.0 Ok: queued as " + id + "\r\n"));
  std::string drop = test::read_file(spool_dir + "/incoming/" + id);
  CHECK(
      drop.starts_with("MAIL FROM:<>\nRCPT TO:<bob@example.org>\nRCPT TO:<j\xc3\xbcrgen@example.org>\n"
                       "RCPT TO:<postmaster@mail.test>\n\n"
                       "Received: from client.example (" +
                       user_name() + "@localhost)\r\n\tby mail.test (spoold, from userid " +
                       std::to_string(::getuid()) + ") with UTF8SMTP id " + id + ";\r\n\t"));
  CHECK(drop.ends_with("\r\nSubject: two\r\n\r\nhi\r\n"));
}

TEST_CASE_METHOD(Cli, "sendmail -bs: DSN parameters go into the drop and the entry") {
  auto r = sendmail({"-bs"},
                    "EHLO client.example\r\n"
                    "MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B1\r\n"
                    "RCPT TO:<bob@example.org> NOTIFY=delay,success ORCPT=rfc822;Bob+40example.org\r\n"
                    "RCPT TO:<carol@example.org>\r\n"
                    "RCPT TO:<dan@example.org> NOTIFY=NEVER\r\n"
                    "DATA\r\nSubject: dsn\r\n\r\nhi\r\n.\r\nQUIT\r\n");
  CHECK(r.status == 0);
  CHECK(r.err.empty());
  CHECK(contains(r.out, "250 DSN\r\n"));
  REQUIRE(incoming() == 1);
  std::string id = test::list_dir(spool_dir + "/incoming")[0];
  std::string drop = test::read_file(spool_dir + "/incoming/" + id);
  CHECK(
      drop.starts_with("MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B1\n"
                       // canonical forms: NOTIFY keywords in order, xtext only where needed
                       "RCPT TO:<bob@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Bob@example.org\n"
                       "RCPT TO:<carol@example.org>\nRCPT TO:<dan@example.org> NOTIFY=NEVER\n\n"));
  auto p = pickup_one();
  CHECK(p.entry.dsn.ret == "HDRS");
  CHECK(p.entry.dsn.envid == "QQ+1");
  REQUIRE(p.entry.recipients.size() == 3);
  CHECK(p.entry.recipients[0].dsn.notify == "SUCCESS,DELAY");
  CHECK(p.entry.recipients[0].dsn.orcpt == "rfc822;Bob@example.org");
  CHECK(p.entry.recipients[1].dsn.empty());
  CHECK(p.entry.recipients[2].dsn.notify == "NEVER");

  // Malformed or repeated parameters are refused at the command, never stored half-understood.
  auto bad =
      sendmail({"-bs"},
               "EHLO c\r\nMAIL FROM:<a@example.com> RET=ALL\r\nMAIL FROM:<a@example.com> ENVID=a ENVID=b\r\n"
               "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org> NOTIFY=NEVER,SUCCESS\r\n"
               "RCPT TO:<b@example.org> ORCPT=rfc822;a+0Db\r\nQUIT\r\n");
  CHECK(bad.status == 0);
  auto lines = reply_lines(bad.out);
  INFO(bad.out);
  CHECK(std::count_if(lines.begin(), lines.end(),
                      [](const std::string& l) { return l.starts_with("501"); }) == 4);
}

TEST_CASE_METHOD(Cli, "sendmail -bs: end of input, a lost message, a full stdout and a bad config") {
  // EOF between transactions: what was accepted is kept, exit 0.
  auto eof = sendmail({"-bs"},
                      "HELO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                      "S: 1\r\n\r\n1\r\n.\r\n");
  CHECK(eof.status == 0);
  CHECK(eof.err.empty());
  CHECK(incoming() == 1);
  // EOF within DATA: the message is lost (the client was never told 250), nothing is left behind.
  auto lost = sendmail({"-bs"},
                       "HELO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                       "S: 2\r\n\r\nunfinished\r\n");
  CHECK(lost.status == 75);
  CHECK(incoming() == 1);
  CHECK(test::list_dir(spool_dir + "/tmp").empty());
  // A message too big for max_message_size (10KB here) is refused and not stored.
  auto big = sendmail({"-bs"},
                      "HELO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                      "S: 3\r\n\r\n" +
                          std::string(12000, 'x') + "\r\n.\r\nQUIT\r\n");
  CHECK(big.status == 0);
  CHECK(contains(big.out, "\r\n552 "));
  CHECK(incoming() == 1);
  CHECK(test::list_dir(spool_dir + "/tmp").empty());
  // Replies nobody can take: a write error, exit 74 (EX_IOERR), not 0.
  {
    std::string in = tmp / "bs.in";
    test::write_file(in, "HELO x\r\nQUIT\r\n");
    test::Process p({"/bin/sh", "-c", "exec \"$0\" -bs -C \"$1\" < \"$2\"",
                     std::string(SPOOLD_BINARY_DIR) + "/ctl/sendmail", config, in},
                    "/dev/full", tmp / "bs.err");
    int st = p.wait(30s);
    REQUIRE(st != -1);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 74);
  }
  // A config that does not load: 421 on stdout (the client learns it), the reason on stderr.
  auto bad = run("sendmail", {"-bs", "-C", tmp / "missing.yaml"}, "HELO x\r\n");
  CHECK(bad.status == 78);
  CHECK(bad.out.starts_with("421 4.3.0 "));
  CHECK(contains(bad.err, "missing.yaml"));
}

// ---- spoolctl and mailq offline -------------------------------------------------------------

struct Queue : Cli {
  spool::Spool sp = open_spool();
  int64_t now = std::time(nullptr);
  std::string a, b, c;

  Queue() {
    a = add({"bob@example.org"});
    b = add({"carol@example.net", "dave@example.net"});
    c = add({"erin@example.org"});
    defer(b, 1, 600);
    auto cl = claim(c);
    cl.entry.recipients[0].state = spool::RcptState::expired;
    cl.entry.recipients[0].last_reply = "451 4.4.1 no answer";
    REQUIRE(sp.fail(cl, "expired after the last tier", now).ok());
  }

  std::string add(std::vector<std::string> rcpts) {
    auto id =
        sp.enqueue({"alice@example.com", std::move(rcpts), "From: alice@example.com\nSubject: q\n\nbody\n"});
    REQUIRE(id.ok());
    return *id;
  }

  spool::Claimed claim(const std::string& id) {
    auto ref = sp.find(id);
    REQUIRE((ref.ok() && ref->has_value()));
    auto cl = sp.claim(**ref);
    REQUIRE((cl.ok() && cl->has_value()));
    return std::move(**cl);
  }

  void defer(const std::string& id, int tier, int64_t in) {
    auto cl = claim(id);
    for (auto& r : cl.entry.recipients) {
      r.attempts = 1;
      r.last_reply = "451 4.7.1 greylisted";
    }
    cl.entry.attempts = 1;
    cl.entry.last_attempt = now;
    REQUIRE(sp.reschedule(cl, tier, now + in).ok());
  }

  spool::EntryRef where(const std::string& id) {
    auto ref = sp.find(id);
    REQUIRE((ref.ok() && ref->has_value()));
    return **ref;
  }
};

TEST_CASE_METHOD(Queue, "status offline, human and --json") {
  auto h = ctl({"status"});
  CHECK(h.status == 0);
  CHECK(contains(h.err, kOffline));
  CHECK(contains(h.out, "spoold: not running"));
  CHECK(contains(h.out, "tier  delay  messages  oldest\n"));
  CHECK(contains(h.out, "\n   1    30m         1"));
  CHECK(contains(h.out, "held 0  failed 1"));
  auto j = ctl({"status", "--json"});
  CHECK(j.status == 0);
  Json s = json_of(j);
  CHECK_FALSE(s["daemon"]["running"].as_bool(true));
  REQUIRE(s["tiers"].as_array().size() == 3);
  CHECK(s["tiers"].as_array()[0]["messages"].as_int() == 1);
  CHECK(s["tiers"].as_array()[1]["messages"].as_int() == 1);
  CHECK(s["tiers"].as_array()[2]["delay_s"].as_int() == 14400);
  CHECK(s["failed"].as_int() == 1);
  CHECK(s["counters"]["picked_up"].as_int() == 0);
}

TEST_CASE_METHOD(Queue, "list and mailq offline, human and --json") {
  auto h = ctl({"list"});
  CHECK(h.status == 0);
  CHECK(contains(h.err, kOffline));
  CHECK(contains(h.out, "-Queue ID-"));
  CHECK(contains(h.out, a));
  CHECK(contains(h.out, b));
  CHECK_FALSE(contains(h.out, c));  // failed/ only with --place failed
  CHECK(contains(h.out, "(451 4.7.1 greylisted)\n"));
  CHECK(contains(h.out, "-- 1 Kbytes in 2 Requests."));

  auto j = json_of(ctl({"list", "--domain", "example.net", "--json"}));
  REQUIRE(j["messages"].as_array().size() == 1);
  CHECK(j["messages"].as_array()[0]["id"].as_string() == b);
  CHECK(j["messages"].as_array()[0]["tier"].as_int() == 1);
  CHECK(json_of(ctl({"list", "--tier", "0", "--json"}))["messages"].as_array()[0]["id"].as_string() == a);
  auto failed = json_of(ctl({"list", "--place", "failed", "--json"}));
  CHECK(failed["messages"].as_array()[0]["reason"].as_string() == "expired after the last tier");
  CHECK(ctl({"list", "--tier", "9"}).status == 1);

  auto mq = run("mailq", {"-C", config});
  CHECK(mq.status == 0);
  CHECK(mq.out == h.out);
  auto bp = run("sendmail", {"-C", config, "-bp"});
  CHECK(bp.status == 0);
  CHECK(bp.out == h.out);
  auto mqj = run("mailq", {"--config", config, "--json"});
  CHECK(json_of(mqj)["messages"].as_array().size() == 2);
}

TEST_CASE_METHOD(Queue, "list and mailq show drops in incoming/ not picked up yet") {
  REQUIRE(sendmail({"zoe@example.org"}, "Subject: fresh\n\nnot picked up\n").status == 0);
  REQUIRE(sendmail({"-bs"},
                   "HELO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                   "S: bs\r\n\r\nx\r\n.\r\nQUIT\r\n")
              .status == 0);
  auto names = test::list_dir(spool_dir + "/incoming");
  REQUIRE(names.size() == 2);
  std::sort(names.begin(), names.end());
  auto h = ctl({"list"});
  CHECK(h.status == 0);
  CHECK(contains(h.out, a));
  for (const auto& n : names) {
    INFO(n);
    CHECK(contains(h.out, n));
  }
  CHECK(contains(h.out, "(incoming, not picked up yet, "));
  CHECK(contains(h.out, "-- 1 Kbytes in 4 Requests."));
  // The age is printed in seconds, so two listings may differ by a tick.
  auto without_age = [](const std::string& s) {
    static const std::regex age("picked up yet, [0-9]+s old");
    return std::regex_replace(s, age, "picked up yet, Ns old");
  };
  CHECK(without_age(run("mailq", {"-C", config}).out) == without_age(h.out));

  auto j = json_of(ctl({"list", "--json"}));
  CHECK(j["messages"].as_array().size() == 2);
  const auto& in = j["incoming"].as_array();
  REQUIRE(in.size() == 2);
  std::vector<std::string> listed;
  for (const auto& d : in) {
    listed.push_back(d["name"].as_string());
    CHECK(d["state"].as_string() == "incoming");
    CHECK(d["size"].as_int() > 0);
    CHECK(d["mtime"].as_int() >= now - 5);
    CHECK(d["age_s"].as_int() >= 0);
    CHECK(d["age_s"].as_int() < 60);
  }
  std::sort(listed.begin(), listed.end());
  CHECK(listed == names);
  // Only the drops, or none when a tier, place or domain narrows the list (they have neither yet).
  auto only = json_of(ctl({"list", "--place", "incoming", "--json"}));
  CHECK(only["messages"].as_array().empty());
  CHECK(only["incoming"].as_array().size() == 2);
  CHECK(json_of(ctl({"list", "--tier", "0", "--json"}))["incoming"].as_array().empty());
  CHECK(json_of(ctl({"list", "--place", "hold", "--json"}))["incoming"].as_array().empty());
  CHECK(json_of(ctl({"list", "--domain", "example.org", "--json"}))["incoming"].as_array().empty());
  CHECK(ctl({"list", "--place", "incoming", "--tier", "0"}).status == 1);
  CHECK(ctl({"list", "--place", "nowhere"}).status == 2);
  // The limit covers both lists.
  auto lim = json_of(ctl({"list", "--limit", "3", "--json"}));
  CHECK(lim["messages"].as_array().size() + lim["incoming"].as_array().size() == 3);
  CHECK(lim["truncated"].as_bool());
  // Once picked up they are queue entries like the others.
  for (const auto& n : names) REQUIRE(sp.pickup(n).ok());
  auto after = json_of(ctl({"list", "--json"}));
  CHECK(after["incoming"].as_array().empty());
  CHECK(after["messages"].as_array().size() == 4);
  auto empty = Cli();
  REQUIRE(empty.sendmail({"x@example.org"}, "S: x\n\ny\n").status == 0);
  CHECK_FALSE(contains(empty.ctl({"list"}).out, "Mail queue is empty"));
}

TEST_CASE_METHOD(Queue, "show offline, human and --json") {
  auto h = ctl({"show", b});
  CHECK(h.status == 0);
  CHECK(contains(h.out, "queue, tier 1"));
  CHECK(contains(h.out, "<alice@example.com>"));
  CHECK(contains(h.out, "carol@example.net"));
  CHECK(contains(h.out, "451 4.7.1 greylisted"));
  CHECK(contains(h.out, "headers:\n  From: alice@example.com\n  Subject: q\n"));
  CHECK_FALSE(contains(h.out, "body"));
  auto j = json_of(ctl({"show", b, "--json"}));
  CHECK(j["message"]["id"].as_string() == b);
  CHECK(j["message"]["next_attempt"].as_int() == now + 600);
  auto missing = ctl({"show", "0000000000000000000000000000AA"});
  CHECK(missing.status == 1);
  CHECK(contains(missing.err, "no such message"));
}

TEST_CASE_METHOD(Queue, "flush offline makes deferred messages due now") {
  auto r = ctl({"flush"});
  CHECK(r.status == 0);
  CHECK(contains(r.err, kOfflineAct));
  CHECK(r.out == "flushed 1 message\n");
  CHECK(where(b).when <= std::time(nullptr));
  CHECK(where(b).tier == 1);
  auto j = json_of(ctl({"flush", "--tier", "1", "--json"}));
  CHECK(j["flushed"].as_int() == 0);
  auto ids = ctl({"flush", a, "0000000000000000000000000000AA"});
  CHECK(ids.status == 1);
  CHECK(contains(ids.err, "0000000000000000000000000000AA: no such message"));
}

TEST_CASE_METHOD(Queue, "sendmail -q flushes, -bi checks the aliases") {
  auto q = run("sendmail", {"-C", config, "-q"});
  CHECK(q.status == 0);
  CHECK(q.out == "flushed 1 message\n");
  CHECK(where(b).when <= std::time(nullptr));
  auto bi = run("sendmail", {"-C", config, "-bi"});
  CHECK(bi.status == 0);
  CHECK(bi.out == "0 aliases (from " + config + "; no aliases_file)\n");
}

TEST_CASE_METHOD(Queue, "hold, release, delete and requeue offline") {
  auto h = ctl({"hold", a});
  CHECK(h.status == 0);
  CHECK(h.out == a + ": hold\n");
  CHECK(where(a).place == spool::Place::hold);
  CHECK(contains(ctl({"list"}).out, a + "!"));

  auto again = json_of(ctl({"hold", a, "--json"}));
  CHECK(again["done"].as_array().empty());
  CHECK(again["errors"][a].as_string() == "already held");
  CHECK(ctl({"hold", a}).status == 1);

  CHECK(ctl({"release", a}).status == 0);
  CHECK(where(a).place == spool::Place::queue);

  auto rq = json_of(ctl({"requeue", c, "--json"}));
  CHECK(rq["done"].as_array()[0].as_string() == c);
  CHECK(where(c).place == spool::Place::queue);
  auto e = sp.read(where(c));
  REQUIRE(e.ok());
  CHECK(e->recipients[0].state == spool::RcptState::pending);

  auto d = ctl({"delete", a, b});
  CHECK(d.status == 0);
  CHECK(d.out == a + ": delete\n" + b + ": delete\n");
  CHECK_FALSE(sp.find(a)->has_value());
  CHECK_FALSE(sp.find(b)->has_value());
}

TEST_CASE_METHOD(Queue, "an entry locked by another process is reported in flight") {
  auto held = claim(a);
  auto r = ctl({"delete", a});
  CHECK(r.status == 1);
  CHECK(contains(r.err, a + ": in flight"));
  CHECK(sp.find(a)->has_value());
}

// The spool's `withdraw` (sendmail -odi after a deferral): only what nothing may have delivered.
TEST_CASE_METHOD(Queue, "withdraw removes a deferred message, never one that may have been delivered") {
  auto withdraw = [&](const std::string& id) {
    return spoold::control::answer_from_spool(
        sp, Json().set("cmd", "withdraw").set("ids", Json(Json::Array{id})), now);
  };
  // b: deferred (451 greylisted) — withdrawn.
  auto ok = withdraw(b);
  CHECK(ok["done"].as_array().size() == 1);
  CHECK_FALSE(sp.find(b)->has_value());
  // A recipient sent: refused.
  std::string two = add({"x@example.org", "y@example.org"});
  {
    auto cl = claim(two);
    cl.entry.recipients[0].state = spool::RcptState::sent;
    cl.entry.recipients[1].last_reply = "451 4.3.0 busy";
    REQUIRE(sp.reschedule(cl, 1, now + 600).ok());
  }
  CHECK(withdraw(two)["errors"][two].as_string() == "some recipients were sent");
  CHECK(sp.find(two)->has_value());
  // Deferred after the final dot: refused.
  std::string dot = add({"z@example.org"});
  {
    auto cl = claim(dot);
    cl.entry.recipients[0].last_reply = "timeout in state dot (after the final dot: possible duplicate)";
    REQUIRE(sp.reschedule(cl, 1, now + 600).ok());
  }
  CHECK(withdraw(dot)["errors"][dot].as_string() == "possibly delivered (deferred after the final dot)");
  CHECK(sp.find(dot)->has_value());
  // In failed/ (c): it has its outcome.
  CHECK(withdraw(c)["errors"][c].as_string().starts_with("in failed/"));
  // Locked by an attempt: in flight, untouched.
  {
    auto held = claim(a);
    CHECK(withdraw(a)["errors"][a].as_string().starts_with("in flight"));
  }
  CHECK(sp.find(a)->has_value());
}

TEST_CASE_METHOD(Queue, "bounce and reload need the daemon") {
  for (std::vector<std::string> args : {std::vector<std::string>{"bounce", a}, {"reload"}}) {
    auto r = ctl(args);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "needs the running daemon"));
  }
  CHECK(sp.find(a)->has_value());
}

TEST_CASE_METHOD(Cli, "spoolctl usage errors exit 2, failures exit 1") {
  for (std::vector<std::string> args : {std::vector<std::string>{},
                                        {"frob"},
                                        {"show"},
                                        {"hold"},
                                        {"list", "--tier", "x"},
                                        {"status", "--nope"}}) {
    auto r = run("spoolctl", args);
    CHECK(r.status == 2);
    CHECK(contains(r.err, "usage: spoolctl"));
  }
  CHECK(run("spoolctl", {"--help"}).status == 0);
  // Output that stdout did not take is an error, not a silent exit 0.
  std::string full = "exec " + std::string(SPOOLD_BINARY_DIR) + "/ctl/spoolctl --help >/dev/full 2>/dev/null";
  int st = std::system(full.c_str());
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 74);
  auto missing = run("spoolctl", {"--config", tmp / "missing.yaml", "status"});
  CHECK(missing.status == 1);
  auto no_spool = ctl({"status"});
  CHECK(no_spool.status == 1);
  CHECK(contains(no_spool.err, "does not exist"));
  auto env = run("spoolctl", {"status"}, "", {"SPOOLD_CONFIG=" + config});
  CHECK(contains(env.err, "does not exist"));  // found the config through $SPOOLD_CONFIG
}

// ---- the control socket ---------------------------------------------------------------------

// A stand-in for spoold's control socket: answers each connection with the next canned line and
// records the requests. Bounded: gives up after 20 s.
class FakeDaemon {
 public:
  FakeDaemon(const std::string& path, std::vector<std::string> answers) : answers_(std::move(answers)) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDaemon() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> g(mu_);
    return requests_;
  }

 private:
  void serve() {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    for (size_t i = 0; i < answers_.size() && !stop_ && std::chrono::steady_clock::now() < deadline;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string line;
      char buf[4096];
      while (line.find('\n') == std::string::npos) {
        pollfd q{c, POLLIN, 0};
        if (::poll(&q, 1, 5000) <= 0) break;
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        line.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard<std::mutex> g(mu_);
        requests_.push_back(line.substr(0, line.find('\n')));
      }
      std::string answer = answers_[i++] + "\n";
      (void)!::write(c, answer.data(), answer.size());
      ::close(c);
    }
  }

  int fd_ = -1;
  std::vector<std::string> answers_;
  std::vector<std::string> requests_;
  std::mutex mu_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST_CASE_METHOD(Cli, "with a daemon listening, spoolctl asks it and prints its answer the same way") {
  FakeDaemon d(
      socket,
      {R"({"ok":true,"daemon":{"running":true,"pid":4242,"uptime_s":61},"tiers":[{"tier":0,"delay_s":0,"messages":7,"oldest_s":30}],"incoming":0,"failed":0,"bad":0,"held":0,"in_flight":2,"counters":{"picked_up":1,"sent":5,"deferred":0,"bounced":0,"expired":0},"destinations":[]})",
       R"({"ok":true,"flushed":3,"errors":{}})", R"({"ok":true,"done":["X1"],"errors":{"X2":"in flight"}})",
       R"({"ok":false,"error":"the daemon says no"})"});
  auto s = ctl({"status"});
  CHECK(s.status == 0);
  CHECK(s.err.empty());  // no "daemon not running" note
  CHECK(contains(s.out, "spoold: running, pid 4242, up 1m1s"));
  CHECK(contains(s.out, "sent 5"));
  auto f = ctl({"flush", "--domain", "example.org"});
  CHECK(f.out == "flushed 3 messages\n");
  auto b = ctl({"bounce", "X1", "X2"});
  CHECK(b.status == 1);
  CHECK(b.out == "X1: bounce\n");
  CHECK(contains(b.err, "X2: in flight"));
  auto e = ctl({"list", "--json"});
  CHECK(e.status == 1);
  CHECK(contains(e.err, "the daemon says no"));
  CHECK(json_of(e)["error"].as_string() == "the daemon says no");

  auto reqs = d.requests();
  REQUIRE(reqs.size() == 4);
  CHECK(Json::parse(reqs[0])->dump() == R"({"cmd":"status"})");
  CHECK(Json::parse(reqs[1])->dump() == R"({"cmd":"flush","domain":"example.org"})");
  CHECK(Json::parse(reqs[2])->dump() == R"({"cmd":"bounce","ids":["X1","X2"]})");
  CHECK(Json::parse(reqs[3])->dump() == R"({"cmd":"list"})");
}

#ifdef SPOOLD_TEST_DAEMON
// ---- against the real spoold ----------------------------------------------------------------

namespace {

// Runs `args` until it exits 0 (the entry may be in flight for a moment); bounded by `timeout`.
bool until_ok(Cli& cli, std::vector<std::string> args, std::chrono::milliseconds timeout = 10s) {
  return test::wait_until([&] { return cli.ctl(args).status == 0; }, timeout);
}

std::optional<Json> parsed(const Run& r) {
  auto j = Json::parse(r.out.substr(0, r.out.find('\n')));
  if (!j) return std::nullopt;
  return *j;
}

}  // namespace

TEST_CASE_METHOD(Cli, "with spoold running every command goes through its control socket", "[daemon]") {
  // Nothing listens on `port`: every delivery is refused and deferred, so entries stay put.
  int port = test::free_port();
  test::write_file(config, "hostname: mail.test\nspool_dir: " + spool_dir + "\ncontrol_socket: " + socket +
                               "\ndns: { servers: [\"127.0.0.1:" + std::to_string(test::free_port(true)) +
                               "\"] }\nroutes:\n  - { match: [\"*\"], hosts: [\"127.0.0.1:" +
                               std::to_string(port) + "\"] }\n");
  test::Process daemon({std::string(SPOOLD_BINARY_DIR) + "/daemon/spoold", "--config", config},
                       tmp / "spoold.out", tmp / "spoold.err");
  auto running = [&] {
    auto j = parsed(ctl({"status", "--json"}));
    return j && (*j)["daemon"]["running"].as_bool();
  };
  REQUIRE(test::wait_until(running, 15s));

  REQUIRE(sendmail({"bob@example.org"}, "Subject: via daemon\n\nx\n").status == 0);
  std::string id;
  auto deferred = [&] {
    auto j = parsed(ctl({"list", "--tier", "1", "--json"}));
    if (!j || (*j)["messages"].as_array().empty()) return false;
    const Json& m = (*j)["messages"].as_array()[0];
    id = m["id"].as_string();
    return !m["recipients"].as_array()[0]["last_reply"].as_string().empty();
  };
  REQUIRE(test::wait_until(deferred, 15s));

  auto status = ctl({"status"});
  CHECK(status.status == 0);
  CHECK(status.err.empty());
  CHECK(contains(status.out, "spoold: running, pid "));
  CHECK(contains(status.out, "picked_up 1"));
  auto list = ctl({"list"});
  CHECK(list.err.empty());
  CHECK(contains(list.out, id));
  auto show = parsed(ctl({"show", id, "--json"}));
  REQUIRE(show);
  CHECK(contains((*show)["message"]["headers"].as_string(), "Subject: via daemon"));
  CHECK(contains(run("mailq", {"-C", config}).out, id));

  REQUIRE(until_ok(*this, {"hold", id}));
  CHECK(parsed(ctl({"show", id, "--json"})).value()["message"]["held"].as_bool());
  REQUIRE(until_ok(*this, {"release", id}));
  REQUIRE(until_ok(*this, {"flush", "--json"}));  // exit 1 while the released entry is in flight
  REQUIRE(until_ok(*this, {"bounce", id}));
  auto failed = [&] {
    auto j = parsed(ctl({"list", "--place", "failed", "--json"}));
    return j && !(*j)["messages"].as_array().empty() &&
           (*j)["messages"].as_array()[0]["id"].as_string() == id;
  };
  REQUIRE(test::wait_until(failed, 15s));
  REQUIRE(until_ok(*this, {"requeue", id}));
  REQUIRE(until_ok(*this, {"delete", id}));
  CHECK(ctl({"show", id}).status == 1);
  CHECK(ctl({"reload"}).status == 0);
  int st = daemon.stop(SIGTERM, 10s);
  CHECK((st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0));
}
#endif
