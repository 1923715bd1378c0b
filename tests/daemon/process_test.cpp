// tests/daemon/process_test.cpp — the daemon as a process: SIGTERM mid-run loses nothing, SIGHUP
// reloads (and a bad new file keeps the old config), the control socket answers.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "control/protocol.h"
#include "tests/daemon/harness.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {
std::set<std::string> subjects(const Sink& s) {
  std::set<std::string> out;
  for (const auto& m : s.messages()) {
    auto p = m.data.find("Subject: ");
    if (p != std::string::npos) out.insert(m.data.substr(p + 9, m.data.find('\r', p) - p - 9));
  }
  return out;
}
}  // namespace

TEST_CASE("SIGTERM in the middle of a run loses nothing", "[daemon][signals]") {
  Env env("delivery:\n  max_sessions_per_destination: 2\n");
  const int n = 300;
  for (int i = 0; i < n; ++i)
    env.drop("m" + std::to_string(i),
             envelope_message("a@example.com", {"b@example.net"}, "s" + std::to_string(i)));
  env.start();
  REQUIRE(env.sink().wait_count(30, 20s));
  CHECK(env.stop(SIGTERM) == 0);
  INFO(env.log());
  // What is left is still on disk and goes out on the next run.
  REQUIRE(env.run_once() == 0);
  CHECK(subjects(env.sink()).size() == static_cast<size_t>(n));
  CHECK(env.sink().count() == static_cast<size_t>(n));  // a graceful stop repeats nothing
  CHECK(env.entries("queue/0").empty());
  CHECK(env.entries("queue/1").empty());
}

TEST_CASE("SIGHUP reloads the routes; a broken file keeps the old config", "[daemon][signals]") {
  Env env;
  Sink other(env.dir() / "other");
  env.start();
  env.drop("m1", envelope_message("a@example.com", {"b@example.net"}, "before"));
  REQUIRE(env.sink().wait_count(1, 10s));
  std::string good = read_file(env.config_path());
  std::string port = std::to_string(env.sink().port());
  auto pos = good.find("127.0.0.1:" + port);
  REQUIRE(pos != std::string::npos);
  good.replace(pos + 10, port.size(), std::to_string(other.port()));
  write_file(env.config_path(), good);
  env.signal(SIGHUP);
  REQUIRE(wait_until([&] { return env.log().find("reloaded configuration") != std::string::npos; }, 10s));
  env.drop("m2", envelope_message("a@example.com", {"b@example.net"}, "after"));
  CHECK(other.wait_count(1, 10s));
  write_file(env.config_path(), good + "bogus_key: 1\n");
  env.signal(SIGHUP);
  REQUIRE(
      wait_until([&] { return env.log().find("keeping the old configuration") != std::string::npos; }, 10s));
  CHECK(env.log().find("bogus_key: unknown key") != std::string::npos);
  env.drop("m3", envelope_message("a@example.com", {"b@example.net"}, "still"));
  CHECK(other.wait_count(2, 10s));
  CHECK(env.sink().count() == 1);
  CHECK(env.stop(SIGTERM) == 0);
}

TEST_CASE("the control socket answers status and flush", "[daemon][control]") {
  // Tier 1 waits 60 s, so only the flush can make the deferred message due during the test.
  Env env(
      "queue:\n  scan_interval: 200ms\n  tiers:\n    - { delay: 0 }\n    - { delay: 60s }\n    - { delay: 2m "
      "}\n");
  env.drop("m", envelope_message("a@example.com", {"temp-1@example.net"}, "deferred"));
  REQUIRE(env.run_once() == 0);
  REQUIRE(env.entries("queue/1").size() == 1);
  env.start();
  auto st = spoold::control::call(env.control_socket(), spoold::control::Json().set("cmd", "status"));
  REQUIRE(st.ok());
  INFO(st->dump());
  CHECK((*st)["ok"].as_bool());
  CHECK((*st)["daemon"]["running"].as_bool());
  CHECK((*st)["daemon"]["pid"].as_int() == env.daemon_pid());
  CHECK((*st)["tiers"].as_array().size() == 3);
  CHECK((*st)["tiers"].as_array()[1]["messages"].as_int() == 1);
  CHECK((*st)["counters"]["picked_up"].is_int());
  auto fl = spoold::control::call(env.control_socket(), spoold::control::Json().set("cmd", "flush"));
  REQUIRE(fl.ok());
  CHECK((*fl)["ok"].as_bool());
  // Flushed: attempted again at once (the sink defers it again), not after the tier delay.
  CHECK(wait_until(
      [&] {
        std::string log = env.log();
        size_t n = 0;
        for (auto p = log.find("status=deferred"); p != std::string::npos;
             p = log.find("status=deferred", p + 1))
          ++n;
        return n >= 2;
      },
      5s));
  CHECK(env.stop(SIGTERM) == 0);
}

// A control client that connects and never sends its request must not hold a graceful stop.
TEST_CASE("a silent control client does not hold up SIGTERM", "[daemon][control][signals]") {
  Env env;
  env.start();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, env.control_socket().c_str(), sizeof sa.sun_path - 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  std::this_thread::sleep_for(200ms);  // accepted by the daemon's loop
  auto t0 = std::chrono::steady_clock::now();
  CHECK(env.stop(SIGTERM) == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  ::close(fd);
}

TEST_CASE("--check-config and --version", "[daemon][cli]") {
  Env env;
  {
    Process p({Env::spoold_binary(), "--check-config", "--config", env.config_path()}, env.dir() / "cc.out",
              env.dir() / "cc.err");
    CHECK(p.wait(10s) == 0);
    CHECK(read_file(env.dir() / "cc.out").find("configuration OK") != std::string::npos);
  }
  write_file(env.dir() / "bad.yaml", "delivery:\n  max_sesions: 3\n  port: 0\n");
  {
    Process p({Env::spoold_binary(), "--check-config", "--config", env.dir() / "bad.yaml"},
              env.dir() / "bad.out", env.dir() / "bad.err");
    int st = p.wait(10s);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 1);
    std::string err = read_file(env.dir() / "bad.err");
    CHECK(err.find(env.dir() /
                   "bad.yaml:2:3: delivery.max_sesions: unknown key (did you mean 'max_sessions'?)") !=
          std::string::npos);
    CHECK(err.find(":3:9: delivery.port: must be between 1 and 65535") != std::string::npos);
  }
  {
    Process p({Env::spoold_binary(), "--version"}, env.dir() / "v.out");
    CHECK(p.wait(10s) == 0);
    CHECK(read_file(env.dir() / "v.out").rfind("spoold ", 0) == 0);
  }
  {
    Process p({Env::spoold_binary(), "--bogus"}, "", env.dir() / "u.err");
    int st = p.wait(10s);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 2);
  }
}

TEST_CASE("systemd readiness: READY=1 once serving, STOPPING=1 on SIGTERM", "[daemon][systemd]") {
  Env env;
  std::string path = env.dir() / "notify.sock";
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  std::string got;
  auto drain = [&] {
    char buf[512];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n)).append("\n");
    }
    return got;
  };
  env.start({"NOTIFY_SOCKET=" + path});
  CHECK(wait_until([&] { return drain().find("READY=1") != std::string::npos; }, 10s));
  CHECK(env.stop(SIGTERM) == 0);
  drain();
  CHECK(got.find("STOPPING=1") != std::string::npos);
  ::close(fd);
}

TEST_CASE("logging.format json gives the same fields as JSON lines", "[daemon][log]") {
  Env env("logging: { format: json }\n");
  env.drop("m", envelope_message("alice@example.com", {"bob@example.net"}, "json"));
  REQUIRE(env.run_once() == 0);
  std::istringstream lines(env.log());
  bool pickup = false, sent = false;
  for (std::string line; std::getline(lines, line);) {
    auto j = spoold::control::Json::parse(line);
    REQUIRE(j.ok());  // every line is a JSON object
    if ((*j)["from"].as_string() == "alice@example.com" && (*j)["nrcpt"].as_int() == 1) pickup = true;
    if ((*j)["to"].as_string() == "bob@example.net" && (*j)["status"].as_string() == "sent" &&
        (*j)["dsn"].as_string() == "2.0.0" && (*j)["tier"].as_int() == 0 &&
        (*j)["relay"].as_string().find("127.0.0.1[127.0.0.1]:") == 0 && !(*j)["qid"].as_string().empty())
      sent = true;
  }
  CHECK(pickup);
  CHECK(sent);
}
