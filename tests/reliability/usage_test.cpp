// tests/reliability/usage_test.cpp — the usage totals (spool/usage.h, daemon/usage.h) against the
// real spoold and a real sink: they carry over a clean stop and restart, survive a kill -9 once
// saved, add up over two instances on one spool (live and with spoolctl offline), a malformed file
// is moved to bad/ without stopping the daemon, and usage_log lines account for every count.
#include <signal.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <sstream>
#include <thread>

#include "control/protocol.h"
#include "spool/usage.h"
#include "tests/reliability/rel_util.h"

using namespace spoold::test;
using namespace std::chrono_literals;
using spoold::control::Json;

namespace {

std::string usage_config(const TempDir& dir) {
  return "usage_log: { file: " + (dir / "usage.log") + ", interval: 1s, save_interval: 1s }\n";
}

Json status(const std::string& socket) {
  auto st = spoold::control::call(socket, Json().set("cmd", "status"));
  if (!st.ok()) return Json();
  return *st;
}

// usage.<which>.<kind>.messages of a status answer (-1 without one).
long long count(const Json& st, const std::string& which, const std::string& kind,
                const std::string& field = "messages") {
  const Json& c = st["usage"][which][kind][field];
  return c.is_int() ? c.as_int() : -1;
}

bool wait_status(const std::string& socket, const std::function<bool(const Json&)>& pred, Json& last,
                 std::chrono::milliseconds timeout = 30s) {
  return wait_until(
      [&] {
        last = status(socket);
        return pred(last);
      },
      timeout);
}

std::optional<spoold::spool::UsageFile> usage_file(const Env& env, const std::string& instance) {
  auto f = spoold::spool::parse_usage_file(read_file(env.spool() + "/usage/" + instance));
  if (!f.ok()) return std::nullopt;
  return *f;
}

std::uint64_t saved_sent(const Env& env, const std::string& instance) {
  auto f = usage_file(env, instance);
  return f ? f->totals[spoold::spool::UsageKind::sent].messages : 0;
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

}  // namespace

TEST_CASE("usage totals carry over a clean restart; usage_log lines add up to them", "[usage]") {
  TempDir logs;
  Env env(usage_config(logs));
  env.start();
  std::string body = "Subject: usage\n\n" + std::string(1000, 'x') + "\n";
  env.drop("a", envelope_message("a@example.com", {"ok1@example.net", "ok2@example.net"}, "two", body));
  env.drop("b", envelope_message("a@example.com", {"ok3@example.net"}, "one"));
  env.drop("c", envelope_message("a@example.com", {"perm-1@example.net", "ok4@example.net"}, "bounce"));
  // Three messages and the bounce (to a@example.com, sent too).
  Json st;
  bool done = wait_status(
      env.control_socket(), [](const Json& s) { return count(s, "since_start", "sent") == 4; }, st);
  INFO(st.dump() << env.log());
  REQUIRE(done);
  CHECK(count(st, "since_start", "spooled") == 4);  // three pickups and the notification
  CHECK(count(st, "since_start", "spooled", "recipients") == 6);
  CHECK(count(st, "since_start", "sent", "recipients") == 5);  // ok1-4 and a@
  CHECK(count(st, "since_start", "bounced") == 1);
  CHECK(count(st, "since_start", "bounced", "recipients") == 1);
  CHECK(count(st, "since_start", "deferred") == 0);
  CHECK(count(st, "since_start", "sent", "bytes") > 1000);
  CHECK(st["usage"]["total"].dump() ==
        st["usage"]["since_start"].dump());  // a first start: nothing before it
  CHECK(st["usage"]["all_instances"].dump() == st["usage"]["total"].dump());
  CHECK(st["usage"]["instance"].as_string() == "spoold.test");
  CHECK(st["counters"]["sent"].as_int() == 5);  // the old per-recipient counters are still there
  const std::string before = st["usage"]["total"].dump();
  REQUIRE(env.stop() == 0);

  // The clean stop saved everything (the last save ran after the last count).
  auto saved = usage_file(env, "spoold.test");
  REQUIRE(saved);
  CHECK(saved->totals[spoold::spool::UsageKind::sent] ==
        spoold::spool::Tally{4, 5, saved->totals[spoold::spool::UsageKind::sent].bytes});
  CHECK(saved->totals[spoold::spool::UsageKind::spooled].messages == 4);
  CHECK(env.entries("bad").empty());

  env.start();
  st = status(env.control_socket());
  CHECK(st["usage"]["total"].dump() == before);
  CHECK(count(st, "since_start", "sent") == 0);
  env.drop("d", envelope_message("a@example.com", {"ok5@example.net"}, "after restart"));
  done = wait_status(
      env.control_socket(), [](const Json& s) { return count(s, "total", "sent") == 5; }, st);
  INFO(st.dump());
  CHECK(done);
  CHECK(count(st, "since_start", "sent") == 1);
  CHECK(st["usage"]["since"].as_int() == saved->since);  // the totals began at the first start
  REQUIRE(env.stop() == 0);

  // One line per interval (here 1 s, also the empty ones) and one for the end of each run: the
  // interval counts of all of them add up to the totals.
  std::istringstream lines(read_file(logs / "usage.log"));
  std::string line;
  long long sent = 0, spooled = 0, n = 0;
  std::string last;
  while (std::getline(lines, line)) {
    ++n;
    INFO(line);
    CHECK(line.find(" instance=spoold.test interval=") != std::string::npos);
    auto field = [&](const std::string& key) {
      auto at = line.find(" " + key + "=");
      REQUIRE(at != std::string::npos);
      return std::stoll(line.substr(at + key.size() + 2));
    };
    sent += field("sent");
    spooled += field("spooled");
    last = line;
  }
  CHECK(n >= 2);
  CHECK(sent == 5);
  CHECK(spooled == 5);
  CHECK(last.find(" total_sent=5/6/") != std::string::npos);
}

TEST_CASE("usage totals saved before a kill -9 survive it", "[usage]") {
  TempDir logs;
  Env env(usage_config(logs));
  env.start();
  env.drop("a", envelope_message("a@example.com", {"ok1@example.net"}, "one"));
  env.drop("b", envelope_message("a@example.com", {"ok2@example.net"}, "two"));
  REQUIRE(env.sink().wait_count(2, 30s));
  // save_interval is 1 s: the file has them soon.
  bool saved = wait_until([&] { return saved_sent(env, "spoold.test") == 2; }, 10s);
  INFO(env.log());
  REQUIRE(saved);
  CHECK(env.stop(SIGKILL) == 128 + SIGKILL);
  env.start();
  Json st = status(env.control_socket());
  INFO(st.dump());
  CHECK(count(st, "total", "sent") == 2);
  CHECK(count(st, "total", "spooled") == 2);
  CHECK(count(st, "since_start", "sent") == 0);
  REQUIRE(env.stop() == 0);
}

TEST_CASE("two instances on one spool: their own files, one combined total", "[usage][shared]") {
  TempDir logs;
  Env env(usage_config(logs));
  env.start();
  rel::Daemon other(env, "other", rel::instance_config(env, "other"));
  constexpr int kMessages = 20;
  for (int i = 0; i < kMessages; ++i)
    env.drop("m" + std::to_string(i), envelope_message("a@example.com", {"ok@example.net"}, "m"));
  REQUIRE(env.sink().wait_count(kMessages, 60s));
  // The other daemon's file is at most save_interval old.
  Json st;
  bool done = wait_status(
      env.control_socket(),
      [&](const Json& s) {
        return count(s, "all_instances", "sent") == kMessages &&
               s["usage"]["instances"].as_array().size() == 2;
      },
      st);
  INFO(st.dump() << env.log() << other.log());
  REQUIRE(done);
  REQUIRE(st["usage"]["instances"].as_array().size() == 2);
  long long mine = count(st, "total", "sent");
  Json theirs = status(env.dir() / "other.sock");
  CHECK(count(theirs, "all_instances", "sent") == kMessages);
  CHECK(mine + count(theirs, "total", "sent") == kMessages);
  CHECK(count(st, "all_instances", "spooled") == kMessages);
  CHECK(other.process().stop(SIGTERM, 30s) == 0);
  REQUIRE(env.stop() == 0);

  // spoolctl without a daemon reads the same files.
  std::string out = run_capture(std::string(SPOOLD_BINARY_DIR) + "/ctl/spoolctl --config " +
                                env.config_path() + " --json status 2>/dev/null");
  auto offline = Json::parse(out);
  INFO(out);
  REQUIRE(offline.ok());
  CHECK(count(*offline, "all_instances", "sent") == kMessages);
  CHECK(count(*offline, "total", "sent") == mine);
  CHECK((*offline)["usage"]["since_start"].is_null());
  std::string text = run_capture(std::string(SPOOLD_BINARY_DIR) + "/ctl/spoolctl --config " +
                                 env.config_path() + " status 2>&1");
  INFO(text);
  CHECK(text.find("total, all 2 instances") != std::string::npos);
}

TEST_CASE("a malformed usage file is moved to bad/ and the daemon starts from zero", "[usage]") {
  TempDir logs;
  Env env(usage_config(logs));
  REQUIRE(env.run_once() == 0);  // creates the spool
  write_file(env.spool() + "/usage/spoold.test", "spoold-usage 1\nsent many\n");
  env.start();
  Json st = status(env.control_socket());
  INFO(st.dump() << env.log());
  CHECK(count(st, "total", "sent") == 0);
  CHECK(st["usage"]["problems"].as_array().empty());  // it is no longer in usage/
  CHECK(env.log().find("usage totals start from zero") != std::string::npos);
  bool kept = false;
  for (const auto& name : list_dir(env.spool() + "/bad"))
    if (name.rfind("usage.spoold.test.", 0) == 0 && name.find(".reason") == std::string::npos)
      kept = read_file(env.spool() + "/bad/" + name) == "spoold-usage 1\nsent many\n";
  CHECK(kept);
  CHECK(st["bad"].as_int() == 1);
  env.drop("a", envelope_message("a@example.com", {"ok@example.net"}, "one"));
  bool done = wait_status(
      env.control_socket(), [](const Json& s) { return count(s, "total", "sent") == 1; }, st);
  CHECK(done);
  REQUIRE(env.stop() == 0);
  CHECK(saved_sent(env, "spoold.test") == 1);
}
