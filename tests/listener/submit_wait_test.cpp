// tests/listener/submit_wait_test.cpp — the submission modes that wait (sendmail -odi / -odb,
// spoolctl send --mode) and `spoolctl watch`, against the real daemon and aiosmtpd sink (whose
// recipients steer its replies: temp* 451, perm* 550) and a server that never answers the dot.
#include <sys/socket.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "control/json.h"
#include "control/protocol.h"
#include "tests/daemon/harness.h"
#include "tests/listener/clients.h"

using namespace spoold::test;
using namespace std::chrono_literals;
using spoold::control::Json;
using spoold::test::listener::ctl_binary;
using spoold::test::listener::json_lines;
using spoold::test::listener::Run;
using spoold::test::listener::run;
namespace listener = spoold::test::listener;

namespace {

// Deferred mail waits an hour: nothing is retried while a test looks at it.
const char* kSlowRetries =
    "queue:\n  scan_interval: 200ms\n  lock_stale_after: 5s\n  tiers:\n"
    "    - { delay: 0, priority: 1 }\n    - { delay: 1h, priority: 1 }\n";

Run sendmail(const Env& env, std::vector<std::string> args, std::chrono::milliseconds limit = 60s) {
  std::string msg = "Subject: waiting\n\nbody\n";
  std::vector<std::string> argv{ctl_binary("sendmail"), "-C", env.config_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(env.dir(), argv, limit, &msg);
}

size_t queued(const Env& env) {
  return env.entries("queue/0").size() + env.entries("queue/1").size() + env.entries("incoming").size();
}

}  // namespace

TEST_CASE("sendmail -odi: 0 once sent; 69 with the server's reply when refused", "[submit]") {
  Env env(kSlowRetries);
  env.start();
  Run ok = sendmail(env, {"-odi", "a@example.test"});
  INFO(ok.err);
  CHECK(ok.status == 0);
  CHECK(ok.err.empty());
  CHECK(env.sink().count() == 1);  // sent before sendmail returned

  Run refused = sendmail(env, {"-odi", "-f", "sender@example.test", "a2@example.test", "perm1@example.test"});
  INFO(refused.err);
  CHECK(refused.status == 69);
  CHECK(refused.err.find("sendmail: failed: <perm1@example.test>: 550 5.1.1") != std::string::npos);
  CHECK(refused.err.find("a2@example.test") == std::string::npos);  // it was sent
  // The sender still gets its DSN (docs/spoolctl.md says why): the third message at the sink.
  REQUIRE(env.sink().wait_count(3, 20s));
  CHECK(env.log().find("sender notification queued (non-delivery)") != std::string::npos);
  env.stop();
}

TEST_CASE("sendmail -odi withdraws a deferred message (75); -odb leaves it queued (0)", "[submit]") {
  Env env(kSlowRetries);
  env.start();
  Run i = sendmail(env, {"-odi", "temp1@example.test"});
  INFO(i.err);
  CHECK(i.status == 75);
  CHECK(i.err.find("sendmail: withdrawn: deferred: <temp1@example.test>: 451 4.3.0") != std::string::npos);
  CHECK(queued(env) == 0);

  Run b = sendmail(env, {"-odb", "temp2@example.test"});
  INFO(b.err);
  CHECK(b.status == 0);
  CHECK(b.err.find("sendmail: queued: deferred: <temp2@example.test>: 451 4.3.0") != std::string::npos);
  CHECK(env.entries("queue/1").size() == 1);

  // spoolctl send (which speaks as sendmail) exits 1 for a refused recipient.
  const std::string msg = "Subject: x\n\ny\n";
  Run s = run(env.dir(),
              {ctl_binary("spoolctl"), "--config", env.config_path(), "send", "--mode", "background",
               "--timeout", "30s", "perm2@example.test"},
              60s, &msg);
  INFO(s.err);
  CHECK(s.status == 1);
  CHECK(s.err.find("sendmail: failed: <perm2@example.test>: 550 5.1.1") != std::string::npos);
  env.stop();
}

// The server takes the message and never answers the dot: at the caller's timeout the attempt is
// still running, so the message may have been delivered — it must not be withdrawn.
TEST_CASE("spoolctl send --mode interactive: a timeout during an attempt never withdraws", "[submit]") {
  Env env(kSlowRetries);
  int port = free_port();
  Process stall({system_python(), std::string(SPOOLD_SOURCE_DIR) + "/tests/reliability/hostile_smtp.py",
                 "--port", std::to_string(port), "--mode", "stall:DOT", "--log", env.dir() / "stall.events",
                 "--ready", env.dir() / "stall.ready", "--host", "127.0.0.1"},
                env.dir() / "stall.out", env.dir() / "stall.err");
  REQUIRE(wait_for_port("127.0.0.1", port, 10s));
  std::string cfg = read_file(env.config_path());
  cfg.replace(
      cfg.find("routes:\n"), 8,
      "routes:\n  - { match: [\"stall.test\"], hosts: [\"127.0.0.1:" + std::to_string(port) + "\"] }\n");
  write_file(env.config_path(), cfg);
  env.start();
  std::string msg = "Subject: x\n\ny\n";
  Run r = run(env.dir(),
              {ctl_binary("spoolctl"), "--config", env.config_path(), "send", "--mode", "interactive",
               "--timeout", "3s", "x@stall.test"},
              60s, &msg);
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.err.find("sendmail: queued, not withdrawn: possibly delivered (an attempt is running") !=
        std::string::npos);
  // The attempt ends at the dot timeout as a possible duplicate; the message is still there.
  REQUIRE(wait_until([&] { return env.entries("queue/1").size() == 1; }, 20s));
  env.stop();
}

TEST_CASE("without the daemon: -odi is not queued (75), -odb is queued and says so", "[submit]") {
  Env env(kSlowRetries);
  REQUIRE(env.run_once(30s) == 0);  // the spool exists
  Run i = sendmail(env, {"-odi", "a@example.test"});
  CHECK(i.status == 75);
  CHECK(i.err.find("not queued: spoold is not running") != std::string::npos);
  CHECK(env.entries("incoming").empty());
  Run b = sendmail(env, {"-odb", "a@example.test"});
  CHECK(b.status == 0);
  CHECK(b.err.find("queued as ") != std::string::npos);
  CHECK(b.err.find("spoold is not running") != std::string::npos);
  CHECK(env.entries("incoming").size() == 1);
}

TEST_CASE("spoolctl watch streams outcome records and ends when the daemon stops", "[submit]") {
  Env env(kSlowRetries);
  env.start();
  Process watch({ctl_binary("spoolctl"), "--config", env.config_path(), "watch", "--json"},
                env.dir() / "watch.out", env.dir() / "watch.err");
  Process text({ctl_binary("spoolctl"), "--config", env.config_path(), "watch"}, env.dir() / "watch.txt",
               env.dir() / "watch-text.err");
  // Records are not replayed: wait until both are subscribed.
  REQUIRE(wait_until([&] { return listener::status(env)["watchers"].as_int() == 2; }, 15s));
  REQUIRE(sendmail(env, {"a@example.test", "temp9@example.test"}).status == 0);
  auto records = [&] { return json_lines(read_file(env.dir() / "watch.out")); };
  REQUIRE(wait_until([&] { return records().size() >= 3; }, 15s));
  auto r = records();
  INFO(read_file(env.dir() / "watch.out"));
  std::string id = r[0]["qid"].as_string();
  CHECK_FALSE(id.empty());
  int sent = 0, deferred = 0, attempts = 0;
  for (const auto& j : r) {
    CHECK(j["qid"].as_string() == id);
    if (j["event"].as_string() == "delivery") {
      sent += j["status"].as_string() == "sent";
      deferred += j["status"].as_string() == "deferred";
      if (j["status"].as_string() == "deferred") {  // 451 4.3.0 mailbox busy
        CHECK(j["bounce_type"].as_string() == "soft");
        CHECK(j["bounce_category"].as_string() == "other");
      } else {
        CHECK(j["bounce_type"].is_null());
      }
      CHECK(j["tier"].as_int() == 0);
      CHECK(!j["dsn"].as_string().empty());
    } else if (j["event"].as_string() == "attempt") {
      ++attempts;
      CHECK(j["pending"].as_int() == 1);
    }
  }
  CHECK(sent == 1);
  CHECK(deferred == 1);
  CHECK(attempts == 1);
  REQUIRE(wait_until(
      [&] { return read_file(env.dir() / "watch.txt").find("attempt over") != std::string::npos; }, 5s));
  std::string t = read_file(env.dir() / "watch.txt");
  CHECK(t.find(id + ": to=<a@example.test>, relay=") != std::string::npos);
  CHECK(t.find("status=sent (") != std::string::npos);
  CHECK(env.stop() == 0);
  int st = watch.wait(10s);
  CHECK((st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0));
  // No daemon: watch says so and exits 1.
  Run none = run(env.dir(), {ctl_binary("spoolctl"), "--config", env.config_path(), "watch"}, 10s);
  CHECK(none.status == 1);
  CHECK(none.err.find("watch needs the running daemon") != std::string::npos);
}

// A watch client that stops reading costs the daemon at most ControlStream::kMaxQueued: delivery
// goes on at its pace, records beyond that are dropped and counted, and the reader is told how
// many once it reads again.
TEST_CASE("spoolctl watch: a reader that stops reading never slows delivery and is told what it lost",
          "[submit]") {
  Env env(kSlowRetries);
  env.start();
  auto c = spoold::control::Connection::open(env.control_socket());
  REQUIRE(c);
  int small = 4096;  // whatever the machine's default, the daemon's 1 MiB is what fills up
  ::setsockopt(c->fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  REQUIRE(c->send(Json().set("cmd", "watch")));
  auto first = c->read(10s);
  REQUIRE(first);
  REQUIRE((*first)["ok"].as_bool());
  constexpr int kMessages = 300, kRcpts = 50;  // 51 records each, ~13 kB: ~4 MB in all
  std::vector<std::string> rcpts;
  for (int r = 0; r < kRcpts; ++r) rcpts.push_back("rcpt" + std::to_string(r) + "@example.test");
  for (int m = 0; m < kMessages; ++m)
    env.drop("d" + std::to_string(m), envelope_message("s@example.test", rcpts, "m" + std::to_string(m)));
  CHECK(env.sink().wait_count(kMessages, 60s));
  auto logged = [&] {  // every outcome published (they are logged just before)
    const std::string log = env.log();
    size_t n = 0;
    for (size_t p = log.find("status=sent"); p != std::string::npos; p = log.find("status=sent", p + 1)) ++n;
    return n == static_cast<size_t>(kMessages * kRcpts);
  };
  CHECK(wait_until(logged, 30s));
  // Reading again; one more message makes the daemon write, and say what was lost first.
  env.drop("last", envelope_message("s@example.test", {"last@example.test"}, "last"));
  std::int64_t records = 0, lost = 0;
  bool saw_last = false;
  for (int i = 0; i < 100'000 && !saw_last; ++i) {
    auto r = c->read(20s);
    if (!r) break;
    if ((*r)["event"].as_string() == "lost") {
      lost += (*r)["count"].as_int();
      continue;
    }
    ++records;
    saw_last = (*r)["to"].as_string() == "last@example.test";
  }
  CHECK(saw_last);
  CHECK(lost > 0);
  CHECK(records + lost == kMessages * (kRcpts + 1) + 1);
  env.stop();
}
