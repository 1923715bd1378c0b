// tests/reliability/reload_test.cpp — SIGHUP while busy: 100 reloads during a 5,000-message drain,
// with routes added, removed and reordered and relay groups renamed between them. Every
// configuration sends each domain to one of two real sinks, so wherever a message goes it is
// accepted: the daemon must not crash, lose a message or deliver one twice, and leave nothing
// behind. (Busy destinations used to keep a route index into the configuration they were made
// with while reading the new one, and every old configuration was kept alive for good.)
#include <signal.h>

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <thread>

#include "tests/reliability/rel_util.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

// The four shapes the configuration takes in turn; a and b are the two sinks' ports.
std::string routes(int k, int a, int b) {
  switch (k % 4) {
    case 0:
      return fmt::format("routes:\n  - {{ match: [\"*\"], hosts: [\"127.0.0.1:{}\"] }}\n", a);
    case 1:
      return fmt::format(
          "relays:\n  g1:\n    servers: [ {{ host: 127.0.0.2, port: {}, tls: none }} ]\n"
          "routes:\n  - {{ match: [\"b.test\"], hosts: [\"127.0.0.1:{}\"] }}\n  - {{ match: [\"*\"], relay: "
          "g1 }}\n",
          b, a);
    case 2:  // the group renamed, a second server, the route for b.test gone
      return fmt::format(
          "relays:\n  g2:\n    strategy: round_robin\n    servers:\n"
          "      - {{ host: 127.0.0.2, port: {}, tls: none, max_messages_per_robin: 7 }}\n"
          "      - {{ host: 127.0.0.1, port: {}, tls: none }}\n"
          "routes:\n  - {{ match: [\"*\"], relay: g2 }}\n",
          b, a);
    default:  // reordered: a.test first, to the other sink
      return fmt::format(
          "routes:\n  - {{ match: [\"a.test\"], hosts: [\"127.0.0.2:{}\"] }}\n"
          "  - {{ match: [\"c.test\", \"*\"], hosts: [\"127.0.0.1:{}\"] }}\n",
          b, a);
  }
}

// Replaces the routes (and relays) of the config atomically, as an operator's editor would.
void write_config(const Env& env, const std::string& base, int k, int a, int b) {
  std::string tmp = env.config_path() + ".new";
  write_file(tmp, base + routes(k, a, b));
  REQUIRE(std::rename(tmp.c_str(), env.config_path().c_str()) == 0);
}

}  // namespace

TEST_CASE("100 reloads during a 5,000-message drain: nothing lost, nothing twice, no crash",
          "[reload][reliability]") {
  Env env(
      "delivery:\n  idle_timeout: 1s\n  max_sessions: 8\n  max_sessions_per_destination: 4\n"
      "  timeouts: { connect: 5s, greeting: 10s, ehlo: 10s, mail: 10s, rcpt: 10s, data: 10s, dot: 10s }\n"
      "routes:\n");
  Sink other(env.dir() / "other", {}, "127.0.0.2");
  const int a = env.sink().port(), b = other.port();
  std::string base = read_file(env.config_path());
  base.erase(base.rfind("routes:\n"));
  write_config(env, base, 0, a, b);

  constexpr int kMessages = 5000;
  const char* domains[] = {"a.test", "b.test", "c.test"};
  for (int i = 0; i < kMessages; ++i)
    env.drop(fmt::format("m{}", i), rel::message(fmt::format("m{}@reload.test", i), "sender@r.test",
                                                 {fmt::format("u{}@{}", i % 7, domains[i % 3])}));
  env.start();
  auto delivered = [&] { return env.sink().count() + other.count(); };
  int reloads = 0, during = 0;
  for (int k = 1; k <= 100; ++k) {
    write_config(env, base, k, a, b);
    env.signal(SIGHUP);
    ++reloads;
    if (delivered() < static_cast<size_t>(kMessages)) ++during;
    std::this_thread::sleep_for(15ms);
  }
  bool done = wait_until([&] { return delivered() >= static_cast<size_t>(kMessages); }, 180s);
  std::string log = env.log();
  INFO(log.substr(log.size() > 6000 ? log.size() - 6000 : 0));
  REQUIRE(done);
  CHECK(reloads == 100);
  CHECK(during >= 50);  // most reloads came while the drain was running
  // Each message exactly once, over both sinks together.
  auto counts = rel::message_id_counts(env.sink());
  for (const auto& [mid, n] : rel::message_id_counts(other)) counts[mid] += n;
  CHECK(counts.size() == static_cast<size_t>(kMessages));
  int twice = 0;
  for (const auto& [mid, n] : counts) twice += n > 1;
  CHECK(twice == 0);
  CHECK(env.sink().count() > 0);
  CHECK(other.count() > 0);
  CHECK(log.find("reload: keeping the old configuration") == std::string::npos);
  CHECK(env.stop() == 0);
  auto left = rel::leftovers(env.spool());
  INFO("leftovers: " << rel::join(left));
  CHECK(left.empty());
}
