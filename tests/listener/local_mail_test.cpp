// tests/listener/local_mail_test.cpp — mail to this host's own names, end to end: cron's
// `sendmail -i -FCronDaemon -odi root` reaches admin_address, aliases (config map and an
// /etc/aliases-style file) fan out, an unknown name bounces 5.1.1 at once without a connection.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/daemon/harness.h"
#include "tests/listener/clients.h"

using namespace spoold::test;
using namespace spoold::test::listener;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> all_rcpts(Sink& sink) {
  std::vector<std::string> out;
  for (const auto& m : sink.messages())
    for (const auto& r : m.meta["rcpts"].as_array()) out.push_back(r.as_string());
  std::sort(out.begin(), out.end());
  return out;
}

// What cron does with a job's output (cron(8) on Debian: sendmail -i -FCronDaemon -odi root).
Run cron_mail(const Env& env) {
  std::string msg =
      "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@spoold> /usr/local/bin/backup\n"
      "Content-Type: text/plain; charset=UTF-8\n\nbackup: 3 files\n";
  return run(env.dir(),
             {ctl_binary("sendmail"), "-C", env.config_path(), "-i", "-FCronDaemon", "-odi", "root"}, 30s,
             &msg);
}

}  // namespace

TEST_CASE("cron's mail to root reaches admin_address", "[local]") {
  Env env("admin_address: admin@example.test\n");
  env.start();
  Run r = cron_mail(env);
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(env.sink().wait_count(1, 20s));
  CHECK(all_rcpts(env.sink()) == std::vector<std::string>{"admin@example.test"});
  CHECK(env.sink().messages()[0].data.find("backup: 3 files") != std::string::npos);
  REQUIRE(wait_until([&] { return env.log().find("to=<admin@example.test>") != std::string::npos; }, 10s));
  CHECK(env.log().find("status=sent") != std::string::npos);
  env.stop();
}

TEST_CASE("aliases from the config and from an aliases file fan out; listener mail too", "[local]") {
  TempDir d;
  write_file(d / "aliases",
             "# /etc/aliases style\n"
             "postmaster: root\n"
             "webmaster: web1@example.test,\n"
             "   web2@example.test\n");
  ListenEnv le(
      "", "aliases: { root: [ops@example.test, dev@example.test] }\naliases_file: " + (d / "aliases") + "\n");
  le.start();
  auto res = le.send({"--to", "webmaster@localhost", "--to", "postmaster"});
  REQUIRE(res.size() == 1);
  INFO(res[0].dump());
  REQUIRE(res[0]["ok"].as_bool());
  REQUIRE(le.env.sink().wait_count(1, 20s));
  REQUIRE(wait_until([&] { return all_rcpts(le.env.sink()).size() == 4; }, 10s));
  CHECK(all_rcpts(le.env.sink()) == std::vector<std::string>{"dev@example.test", "ops@example.test",
                                                             "web1@example.test", "web2@example.test"});
  le.env.stop();
}

TEST_CASE("a local name without alias or admin_address: 550 at RCPT over SMTP, a 5.1.1 bounce from a drop",
          "[local]") {
  ListenEnv le;
  le.start();
  // Over SMTP it is refused at once: a later bounce would go to a sender anyone may forge.
  auto res = le.send({"--to", "nobody@spoold.test", "--to", "someone@example.test"});
  REQUIRE(res.size() == 1);
  INFO(res[0].dump());
  REQUIRE(res[0]["ok"].as_bool());
  CHECK(res[0]["refused"]["nobody@spoold.test"].as_array().at(0).as_int() == 550);
  CHECK(res[0]["refused"]["nobody@spoold.test"].as_array().at(1).as_string().rfind("5.1.1", 0) == 0);
  REQUIRE(le.env.sink().wait_count(1, 20s));
  // A drop (sendmail) to that name bounces at once, without a connection.
  std::string msg = "Subject: to nobody\n\nhello\n";
  Run r =
      run(le.env.dir(),
          {ctl_binary("sendmail"), "-C", le.env.config_path(), "-f", "app@client.test", "nobody@spoold.test"},
          30s, &msg);
  REQUIRE(r.status == 0);
  REQUIRE(le.env.sink().wait_count(2, 20s));
  std::string log = le.env.log();
  INFO(log);
  CHECK(log.find("to=<nobody@spoold.test>, relay=none") != std::string::npos);
  CHECK(log.find("dsn=5.1.1, status=bounced") != std::string::npos);
  bool dsn = false;
  for (const auto& m : le.env.sink().messages())
    dsn |= m.meta["rcpts"].as_array().at(0).as_string() == "app@client.test" &&
           m.data.find("Final-Recipient: rfc822; nobody@spoold.test") != std::string::npos;
  CHECK(dsn);
  le.env.stop();
}
