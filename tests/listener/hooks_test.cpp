// tests/listener/hooks_test.cpp — hooks.on_outcome against the real daemon: a shell script as the
// program, the aiosmtpd sink (temp* 451, perm* 550) as the next hop. What a run got is what the
// script appended to a file; what is left to run is what is in the spool's events/.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "control/json.h"
#include "daemon/event_file.h"
#include "tests/daemon/harness.h"
#include "tests/listener/clients.h"

using namespace spoold::test;
using namespace std::chrono_literals;
using spoold::control::Json;
using spoold::test::listener::json_lines;
namespace listener = spoold::test::listener;

namespace {

const char* kSlowRetries =
    "queue:\n  scan_interval: 200ms\n  lock_stale_after: 5s\n  tiers:\n"
    "    - { delay: 0, priority: 1 }\n    - { delay: 1h, priority: 1 }\n";

// The program: appends its stdin to $1 as one line; with $2, fails (exit 3, a word on stderr)
// until the file $2 exists; with $3, sleeps that long first (and starts a child that would
// outlive it, to show the whole group goes at the timeout).
std::string write_hook(const TempDir& dir) {
  const std::string path = dir / "hook.sh";
  write_file(
      path,
      "#!/bin/sh\n"
      "rec=$(cat)\n"
      "if [ -n \"$2\" ] && [ \"$2\" != - ] && [ ! -e \"$2\" ]; then echo \"not yet: no $2\" >&2; exit 3; fi\n"
      "echo $$ >> \"$1.pids\"\n"
      "if [ -n \"$3\" ]; then sleep \"$3\" & sleep \"$3\"; fi\n"
      "printf '%s %s\\n' \"$(date +%s.%N)\" \"$rec\" >> \"$1\"\n");
  ::chmod(path.c_str(), 0755);
  return path;
}

// The records the program got (each line: "<start time> <record>").
std::vector<Json> records(const std::string& file) {
  std::string text = read_file(file), out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    auto sp = line.find(' ');
    if (sp != std::string::npos) out += line.substr(sp + 1) + "\n";
    pos = nl + 1;
  }
  return json_lines(out);
}

std::string hooks_yaml(const std::string& exec, const std::string& more = "") {
  return "hooks:\n  on_outcome: { exec: \"" + exec + "\"" + more + " }\n";
}

}  // namespace

TEST_CASE("hooks.on_outcome: each selected outcome reaches the program once, classified", "[hooks]") {
  TempDir d;
  const std::string hook = write_hook(d), out = d / "out";
  Env env(std::string(kSlowRetries) +
          hooks_yaml(hook + " " + out, ", statuses: [sent, bounced], max_running: 2"));
  env.start();
  env.drop("a", envelope_message("s@example.test", {"ok@example.test"}, "a"));
  env.drop("b", envelope_message("s@example.test", {"perm1@example.test"}, "b"));
  env.drop("c", envelope_message("s@example.test", {"temp1@example.test"}, "c"));  // deferred: not selected
  // Three outcomes are selected: ok@, perm1@ and the DSN for perm1@ sent to s@.
  REQUIRE(wait_until([&] { return records(out).size() >= 3; }, 20s));
  REQUIRE(wait_until([&] { return env.entries("events").empty(); }, 10s));
  std::this_thread::sleep_for(300ms);
  auto r = records(out);
  INFO(read_file(out));
  REQUIRE(r.size() == 3);
  int sent = 0, bounced = 0;
  for (const auto& j : r) {
    CHECK(j["event"].as_string() == "delivery");
    CHECK_FALSE(j["id"].as_string().empty());
    CHECK(j["instance"].as_string() == "spoold.test");
    CHECK_FALSE(j["qid"].as_string().empty());
    if (j["status"].as_string() == "sent") {
      ++sent;
      CHECK((j["to"].as_string() == "ok@example.test" || j["to"].as_string() == "s@example.test"));
    } else {
      ++bounced;
      CHECK(j["status"].as_string() == "bounced");
      CHECK(j["to"].as_string() == "perm1@example.test");
      CHECK(j["dsn"].as_string() == "5.1.1");
      CHECK(j["bounce_type"].as_string() == "hard");
      CHECK(j["bounce_category"].as_string() == "mailbox_unknown");
      CHECK(j["reason"].as_string().find("550 5.1.1") != std::string::npos);
    }
  }
  CHECK(sent == 2);
  CHECK(bounced == 1);
  std::set<std::string> ids;
  for (const auto& j : r) ids.insert(j["id"].as_string());
  CHECK(ids.size() == 3);
  Json st = listener::status(env);
  CHECK(st["hooks"]["waiting"].as_int() == 0);
  CHECK(st["hooks"]["running"].as_int() == 0);
  CHECK(env.stop() == 0);  // a clean stop, hooks running or not
}

// At-least-once: the event is on disk before the outcome, and stays until a run exits 0.
TEST_CASE("hooks.on_outcome: a failing program keeps its event through kill -9 and a restart", "[hooks]") {
  TempDir d;
  const std::string hook = write_hook(d), out = d / "out", flag = d / "flag";
  Env env(std::string(kSlowRetries) + hooks_yaml(hook + " " + out + " " + flag, ", statuses: [sent]"));
  env.start();
  env.drop("a", envelope_message("s@example.test", {"ok@example.test"}, "a"));
  REQUIRE(env.sink().wait_count(1, 20s));
  REQUIRE(wait_until([&] { return env.log().find("exit status 3: not yet: no") != std::string::npos; }, 20s));
  auto left = env.entries("events");
  REQUIRE(left.size() == 1);
  CHECK(env.log().find("hook on_outcome: event " + left[0] + "#0: exit status 3") != std::string::npos);
  CHECK(listener::status(env)["hooks"]["waiting"].as_int() == 1);  // waiting for its retry
  env.stop(SIGKILL);
  write_file(flag, "");
  env.start();
  REQUIRE(wait_until([&] { return records(out).size() == 1; }, 20s));
  CHECK(records(out)[0]["id"].as_string() == left[0] + "#0");
  CHECK(records(out)[0]["to"].as_string() == "ok@example.test");
  REQUIRE(wait_until([&] { return env.entries("events").empty(); }, 10s));
  CHECK(env.sink().count() == 1);  // the message itself was not sent again
  CHECK(env.stop() == 0);          // a clean stop, hooks running or not
}

TEST_CASE("hooks.on_outcome: a program that hangs is killed with its children; delivery goes on", "[hooks]") {
  TempDir d;
  const std::string hook = write_hook(d), out = d / "out";
  Env env(std::string(kSlowRetries) +
          hooks_yaml(hook + " " + out + " - 61.25", ", statuses: [sent], max_running: 1, timeout: 1s"));
  env.start();
  for (int i = 0; i < 5; ++i)
    env.drop("m" + std::to_string(i), envelope_message("s@example.test", {"ok@example.test"}, "m"));
  CHECK(env.sink().wait_count(5, 15s));  // one hung program at a time does not hold delivery
  REQUIRE(wait_until([&] { return env.log().find("timed out after 1000 ms") != std::string::npos; }, 15s));
  CHECK(records(out).empty());
  CHECK(env.stop() == 0);  // a clean stop, hooks running or not
  // Each run led a process group of its own (its pid): none of them is left, children included.
  std::string pids = read_file(out + ".pids");
  REQUIRE_FALSE(pids.empty());
  size_t pos = 0;
  while (pos < pids.size()) {
    size_t nl = pids.find('\n', pos);
    int pid = std::stoi(pids.substr(pos, nl - pos));
    pos = nl == std::string::npos ? pids.size() : nl + 1;
    INFO("process group " << pid);
    CHECK(wait_until([&] { return ::kill(-pid, 0) == -1 && errno == ESRCH; }, 5s));
  }
}

TEST_CASE("hooks.on_outcome: at most max_running programs at once", "[hooks]") {
  TempDir d;
  const std::string hook = d / "slow.sh", out = d / "out";
  write_file(hook,
             "#!/bin/sh\ncat >/dev/null\nprintf 'start %s\\n' \"$(date +%s.%N)\" >> \"$1\"\nsleep 1.5\n"
             "printf 'end %s\\n' \"$(date +%s.%N)\" >> \"$1\"\n");
  ::chmod(hook.c_str(), 0755);
  Env env(std::string(kSlowRetries) + hooks_yaml(hook + " " + out, ", statuses: [sent], max_running: 2"));
  env.start();
  for (int i = 0; i < 6; ++i)
    env.drop("m" + std::to_string(i), envelope_message("s@example.test", {"ok@example.test"}, "m"));
  auto ends = [&] {
    std::string t = read_file(out);
    size_t n = 0;
    for (size_t p = t.find("end "); p != std::string::npos; p = t.find("end ", p + 1)) ++n;
    return n;
  };
  REQUIRE(wait_until([&] { return ends() == 6; }, 60s));
  // Replay the starts and ends in time order: how many ran at once.
  std::vector<std::pair<double, int>> ev;
  std::string t = read_file(out);
  size_t pos = 0;
  while (pos < t.size()) {
    size_t nl = t.find('\n', pos);
    std::string line = t.substr(pos, nl - pos);
    pos = nl == std::string::npos ? t.size() : nl + 1;
    if (line.rfind("start ", 0) == 0) ev.emplace_back(std::stod(line.substr(6)), +1);
    if (line.rfind("end ", 0) == 0) ev.emplace_back(std::stod(line.substr(4)), -1);
  }
  std::sort(ev.begin(), ev.end());
  int now = 0, most = 0;
  for (const auto& [when, delta] : ev) most = std::max(most, now += delta);
  INFO(t);
  CHECK(most <= 2);
  CHECK(most == 2);
  CHECK(env.stop() == 0);  // a clean stop, hooks running or not
}

// The program vanishes after the config was loaded: runs cannot start, the events wait (said
// once), and run once it is back.
TEST_CASE("hooks.on_outcome: a program that cannot be started keeps its events until it can", "[hooks]") {
  TempDir d;
  const std::string hook = write_hook(d), out = d / "out", saved = d / "hook.saved";
  Env env(std::string(kSlowRetries) + hooks_yaml(hook + " " + out, ", statuses: [sent]"));
  env.start();
  REQUIRE(::rename(hook.c_str(), saved.c_str()) == 0);
  env.drop("a", envelope_message("s@example.test", {"ok@example.test"}, "a"));
  env.drop("b", envelope_message("s@example.test", {"ok2@example.test"}, "b"));
  REQUIRE(env.sink().wait_count(2, 20s));
  REQUIRE(wait_until(
      [&] { return env.log().find("hook on_outcome: cannot run " + hook) != std::string::npos; }, 10s));
  REQUIRE(wait_until([&] { return env.entries("events").size() == 2; }, 10s));
  const std::string log = env.log();
  CHECK(log.find("cannot run") == log.rfind("cannot run"));  // once, not per event
  REQUIRE(::rename(saved.c_str(), hook.c_str()) == 0);
  CHECK(wait_until([&] { return records(out).size() == 2; }, 30s));  // after the 10 s back-off
  CHECK(wait_until([&] { return env.entries("events").empty(); }, 10s));
  CHECK(env.stop() == 0);
}

// The records of outcomes that finish together share one file of events/ (one fsync); each one
// that ran is marked in it. kill -9 while one of them runs: after the restart the rest run, the
// ones that ran do not run again, and the file goes once all have.
TEST_CASE("hooks.on_outcome: kill -9 part way through a file of events runs only what had not run",
          "[hooks]") {
  TempDir d;
  const std::string hook = d / "part.sh", out = d / "out", flag = d / "flag";
  // ok3's run hangs until the flag exists.
  write_file(hook,
             "#!/bin/sh\nrec=$(cat)\n"
             "case \"$rec\" in *'\"to\":\"ok3@'*) echo $$ >> \"$1.pids\"; [ -e \"$2\" ] || sleep 60;; esac\n"
             "printf '0 %s\\n' \"$rec\" >> \"$1\"\n");
  ::chmod(hook.c_str(), 0755);
  Env env(std::string(kSlowRetries) +
          hooks_yaml(hook + " " + out + " " + flag, ", statuses: [sent], max_running: 1"));
  env.start();
  std::vector<std::string> rcpts;
  for (int i = 1; i <= 5; ++i) rcpts.push_back("ok" + std::to_string(i) + "@example.test");
  env.drop("a", envelope_message("s@example.test", rcpts, "a"));
  REQUIRE(env.sink().wait_count(1, 20s));
  REQUIRE(wait_until([&] { return records(out).size() == 2 && !read_file(out + ".pids").empty(); }, 20s));
  auto left = env.entries("events");
  REQUIRE(left.size() == 1);  // one outcome, five records, one file
  const std::string file = env.spool() + "/events/" + left[0];
  auto parsed = spoold::daemon::events::parse(read_file(file));
  REQUIRE(parsed.lines.size() == 5);
  CHECK(parsed.bad == 0);
  int ran = 0;
  for (const auto& l : parsed.lines) ran += l.state == spoold::daemon::events::kRan ? 1 : 0;
  CHECK(ran == 2);
  env.stop(SIGKILL);
  const int hung = std::stoi(read_file(out + ".pids"));
  ::kill(-hung, SIGKILL);  // its own session: the daemon's death does not take it
  write_file(flag, "");
  env.start();
  REQUIRE(wait_until([&] { return records(out).size() >= 5; }, 20s));
  REQUIRE(wait_until([&] { return env.entries("events").empty(); }, 10s));
  std::this_thread::sleep_for(300ms);
  auto r = records(out);
  INFO(read_file(out));
  REQUIRE(r.size() == 5);  // ok1 and ok2 once each: marked ran, not run again
  std::set<std::string> ids, tos;
  for (const auto& j : r) {
    ids.insert(j["id"].as_string());
    tos.insert(j["to"].as_string());
  }
  CHECK(tos == std::set<std::string>(rcpts.begin(), rcpts.end()));
  std::set<std::string> want;
  for (int i = 0; i < 5; ++i) want.insert(left[0] + "#" + std::to_string(i));
  CHECK(ids == want);
  CHECK(env.sink().count() == 1);
  CHECK(env.stop() == 0);
}

// A hook's work is not time critical, delivery's is: programs run at nice 19 in the SCHED_IDLE
// class, each a session leader.
TEST_CASE("hooks.on_outcome: programs run at nice 19, SCHED_IDLE, in a session of their own", "[hooks]") {
  TempDir d;
  const std::string hook = d / "nice.sh", out = d / "out";
  // nice, pid, session id, scheduling policy (field 41 of stat; SCHED_IDLE is 5).
  write_file(hook,
             "#!/bin/sh\ncat >/dev/null\n"
             "printf '%s %s %s %s\\n' \"$(nice)\" \"$$\" \"$(ps -o sid= -p $$ | tr -d ' ')\" "
             "\"$(cut -d' ' -f41 /proc/$$/stat)\" >> \"$1\"\n");
  ::chmod(hook.c_str(), 0755);
  Env env(std::string(kSlowRetries) + hooks_yaml(hook + " " + out, ", statuses: [sent]"));
  env.start();
  env.drop("a", envelope_message("s@example.test", {"ok@example.test"}, "a"));
  REQUIRE(wait_until([&] { return read_file(out).find('\n') != std::string::npos; }, 20s));
  std::string line = read_file(out);
  INFO(line);
  std::vector<std::string> w;
  for (size_t pos = 0; pos < line.size() && line[pos] != '\n';) {
    size_t end = line.find_first_of(" \n", pos);
    w.push_back(line.substr(pos, end - pos));
    pos = end + (line[end] == ' ' ? 1 : 0);
  }
  REQUIRE(w.size() == 4);
  CHECK(w[0] == "19");
  CHECK(w[1] == w[2]);  // its own session
  CHECK(w[3] == "5");   // SCHED_IDLE
  // The daemon itself keeps its priority.
  std::string stat = read_file("/proc/" + std::to_string(env.daemon_pid()) + "/stat");
  std::vector<std::string> fields;
  size_t pos = stat.rfind(')') + 2;
  while (pos < stat.size()) {
    size_t sp = stat.find(' ', pos);
    if (sp == std::string::npos) sp = stat.size();
    fields.push_back(stat.substr(pos, sp - pos));
    pos = sp + 1;
  }
  REQUIRE(fields.size() > 16);
  CHECK(fields[16] == "0");  // field 19 of stat, counted from the state (field 3)
  CHECK(env.stop() == 0);
}

// An event file of an older daemon (one bare record, named as now) runs and goes.
TEST_CASE("hooks.on_outcome: an older daemon's event file still runs", "[hooks]") {
  TempDir d;
  const std::string hook = write_hook(d), out = d / "out";
  Env env(std::string(kSlowRetries) + hooks_yaml(hook + " " + out, ", statuses: [sent]"));
  const std::string name = "1765000000000-4242-000000000001.spoold_test";
  ::mkdir(env.spool().c_str(), 0700);
  ::mkdir((env.spool() + "/events").c_str(), 0700);
  write_file(env.spool() + "/events/" + name,
             "{\"event\":\"delivery\",\"id\":\"" + name +
                 "\",\"qid\":\"Q\",\"status\":\"sent\",\"to\":\"x@example.test\"}\n");
  env.start();
  REQUIRE(wait_until([&] { return records(out).size() == 1; }, 20s));
  CHECK(records(out)[0]["id"].as_string() == name);
  CHECK(wait_until([&] { return env.entries("events").empty(); }, 10s));
  CHECK(env.stop() == 0);
}

TEST_CASE("event files: build and parse", "[hooks]") {
  namespace ev = spoold::daemon::events;
  auto b = ev::build({"{\"a\":1}", "{\"b\":\"x y\"}"});
  CHECK(b.bytes == "- {\"a\":1}\n- {\"b\":\"x y\"}\n");
  REQUIRE(b.offsets.size() == 2);
  CHECK(b.offsets[1] == 10);
  std::string bytes = b.bytes;
  bytes[b.offsets[0]] = ev::kRan;
  auto p = ev::parse(bytes);
  REQUIRE(p.lines.size() == 2);
  CHECK(p.total == 2);
  CHECK(p.bad == 0);
  CHECK(p.lines[0].state == ev::kRan);
  CHECK(p.lines[1].state == ev::kToRun);
  CHECK(p.lines[1].index == 1);
  CHECK(p.lines[1].offset == 10);
  CHECK(p.lines[1].record == "{\"b\":\"x y\"}\n");
  // A bad line keeps its place (the indices after it do not move); a torn last line is bad.
  p = ev::parse("- {\"a\":1}\n? {\"a\":2}\n- not json\nx {\"c\":3}\n- {\"d\":");
  CHECK(p.total == 5);
  CHECK(p.bad == 3);
  REQUIRE(p.lines.size() == 2);
  CHECK(p.lines[1].index == 3);
  CHECK(p.lines[1].state == ev::kWithdrawn);
  // An older daemon's file: one bare record, to run, with no state byte to mark.
  p = ev::parse("{\"id\":\"n\"}\n");
  REQUIRE(p.lines.size() == 1);
  CHECK(p.lines[0].offset == ev::kNoOffset);
  CHECK(p.lines[0].state == ev::kToRun);
  CHECK(ev::parse("").total == 0);
}
