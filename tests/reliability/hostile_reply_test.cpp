// tests/reliability/hostile_reply_test.cpp — replies of the wrong class, oversized replies, 5xx
// greetings, broken STARTTLS, tarpits and MX records pointing at local services, against the real
// spoold binary and a scripted server on loopback (hostile_smtp.py). Each case says what must
// happen: never "sent" on a reply that does not mean it, deferred (not bounced, not lost) where the
// failure is the server's, a bounded number of connections (no reconnect storm), the next MX or a
// plaintext session where one would work, and healthy mail unaffected by slow servers.
// Rule: every server is a real socket on loopback; every wait is bounded; connections are counted
// in the server's own event log (these servers get no port probe: each "connect" is the daemon's).
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <sstream>
#include <thread>

#include "tests/dns/dns_fixture.h"
#include "tests/reliability/rel_util.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// rel::HostileServer on host:port (port 0: a free one) without the port probe, so its log holds the
// daemon's connections and nothing else, and read by session.
class Server {
 public:
  struct Session {
    double connect = -1, end = -1;  // unix seconds; end -1 while still open
  };

  Server(const TempDir& dir, const std::string& mode, const std::string& host = "127.0.0.2", int port = 0,
         const std::vector<std::string>& extra = {})
      : server_(dir, mode, extra, host, port, false) {}

  int port() const { return server_.port(); }
  std::string log() const { return server_.log(); }
  size_t count(const std::string& event) const { return server_.count(event); }
  size_t connects() const { return count("connect"); }

  // Every session by number ("connect #N" ... "end #N").
  std::map<int, Session> sessions() const {
    std::map<int, Session> out;
    std::istringstream in(log());
    for (std::string line; std::getline(in, line);) {
      std::istringstream f(line);
      double t;
      std::string ev, num;
      if (!(f >> t >> ev >> num) || num.size() < 2 || num[0] != '#') continue;
      int n = std::atoi(num.c_str() + 1);
      if (ev == "connect") out[n].connect = t;
      if (ev == "end") out[n].end = t;
    }
    return out;
  }

 private:
  rel::HostileServer server_;
};

// The head of a text, for INFO (a reconnect storm makes logs of megabytes).
std::string head(const std::string& s, size_t n = 6000) {
  return s.size() <= n ? s : s.substr(0, n) + fmt::format("\n... ({} bytes more)", s.size() - n);
}

// spoold's delivery log lines for one recipient.
std::vector<std::string> rcpt_lines(const std::string& log, const std::string& rcpt) {
  std::vector<std::string> out;
  std::istringstream in(log);
  std::string needle = "to=<" + rcpt + ">,";
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

size_t count_with(const std::vector<std::string>& lines, const std::string& needle) {
  return static_cast<size_t>(std::count_if(
      lines.begin(), lines.end(), [&](const std::string& l) { return l.find(needle) != std::string::npos; }));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// An attempt that made no connection, said so: relay=none and a "not tried" reason.
bool not_tried(const std::string& line) {
  return line.find("relay=none") != std::string::npos && lower(line).find("not tried") != std::string::npos;
}

// Watches a running daemon for `window` seconds: the log lines of `rcpt` (one per attempt) and the
// servers' connection counts. Each time an attempt ends (a new line), the counts are taken at
// once: the next attempt is due seconds later (a tier delay, or a postponement of >= 1 s), so
// those counts belong to exactly the attempts logged so far.
struct Watched {
  std::vector<std::string> lines;      // at the last snapshot
  std::vector<size_t> connects;        // per server, at the last snapshot
  std::vector<size_t> final_connects;  // per server, at the end of the window
  size_t final_lines = 0;
};

Watched watch(const Env& env, const std::string& rcpt, const std::vector<const Server*>& servers,
              double window) {
  Watched w;
  w.connects.assign(servers.size(), 0);
  auto t0 = Clock::now();
  while (since(t0) < window) {
    auto lines = rcpt_lines(env.log(), rcpt);
    if (lines.size() > w.lines.size()) {
      for (size_t i = 0; i < servers.size(); ++i) w.connects[i] = servers[i]->connects();
      w.lines = std::move(lines);
    }
    if (std::any_of(servers.begin(), servers.end(), [](const Server* s) { return s->connects() > 200; }))
      break;  // a reconnect storm: no need to watch it any longer
    std::this_thread::sleep_for(50ms);
  }
  for (const Server* s : servers) w.final_connects.push_back(s->connects());
  w.final_lines = rcpt_lines(env.log(), rcpt).size();
  return w;
}

// Entries waiting in any tier after the first.
size_t retrying(const Env& env) {
  size_t n = 0;
  for (int t = 1; t < 8; ++t) n += env.entries("queue/" + std::to_string(t)).size();
  return n;
}

std::string tiers(const std::vector<std::string>& delays) {
  std::string y = "queue:\n  scan_interval: 200ms\n  lock_stale_after: 5s\n  tiers:\n";
  for (const auto& d : delays) y += "    - { delay: " + d + ", priority: 1 }\n";
  return y;
}

// Short per-command timeouts (all `t`), so a failing case ends within seconds.
std::string delivery(const std::string& t = "2s", const std::string& extra = "") {
  return "delivery:\n  idle_timeout: 1s\n  tls: opportunistic\n" + extra + "  timeouts: { connect: " + t +
         ", greeting: " + t + ", ehlo: " + t + ", mail: " + t + ", rcpt: " + t + ", data: " + t +
         ", block: " + t + ", dot: " + t + " }\n";
}

// One attempt per --once run: the second tier is far away.
const std::string kOneAttempt = tiers({"0", "30s", "60s"});

void set_yaml(const Env& env, const std::string& from, const std::string& to) {
  std::string y = read_file(env.config_path());
  auto at = y.find(from);
  if (at == std::string::npos) throw std::runtime_error("no '" + from + "' in the config");
  y.replace(at, from.size(), to);
  write_file(env.config_path(), y);
}

// `n` tarpit servers (`mode`: "tarpit:S", every reply S seconds late), one routed domain each
// (pitK.test), and `per` due messages for each; the daemon must be running.
std::vector<std::unique_ptr<Server>> start_tarpits(const TempDir& tmp, Env& env, int n,
                                                   const std::string& mode) {
  std::vector<std::unique_ptr<Server>> pits;
  for (int i = 0; i < n; ++i) {
    pits.push_back(std::make_unique<Server>(tmp, mode));
    rel::route_domain(env, fmt::format("pit{}.test", i), pits.back()->port(), "127.0.0.2");
  }
  return pits;
}
void drop_tarpit_mail(Env& env, int n, int per) {
  for (int i = 0; i < n * per; ++i)
    env.drop(fmt::format("pit{}", i), rel::message(fmt::format("pit{}@tarpit.test", i), "sender@ok.test",
                                                   {fmt::format("u{}@pit{}.test", i, i % n)}));
}

// Drops `n` messages for the healthy sink; the seconds until it has them all, 1e9 if not in 40 s.
double deliver_healthy(Env& env, int n) {
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i)
    env.drop(fmt::format("good{}", i), rel::message(fmt::format("good{}@flow.test", i), "sender@ok.test",
                                                    {fmt::format("good{}@ok.test", i)}));
  bool all = env.sink().wait_count(static_cast<size_t>(n), 40s);
  double took = since(t0);
  return all ? took : 1e9;
}

}  // namespace

// (a) A reply whose class does not fit the command (a 2xx or 3xx greeting, a 334 to EHLO, a 3xx to
// MAIL or RCPT, a 3xx to the final dot) is a protocol error: the recipient is deferred, never
// logged sent, the message stays queued, and the server is not hammered with reconnections.
TEST_CASE("(a) wrong-class replies: deferred and never sent; few connections", "[hostile-reply]") {
  const char* modes[] = {"reply:GREETING:250 hello", "reply:GREETING:354 go", "reply:EHLO:334 x",
                         "reply:MAIL:350 x",         "reply:RCPT:354 go",     "reply:DOT:354 x",
                         "reply:DOT:399 x"};
  for (const char* mode : modes) {
    DYNAMIC_SECTION(mode) {
      TempDir tmp;
      Server server(tmp, mode);
      Env env(kOneAttempt + delivery());
      rel::route_domain(env, "bad.test", server.port(), "127.0.0.2");
      env.drop("m", rel::message("wrong@reply.test", "sender@ok.test", {"victim@bad.test"}));
      auto t0 = Clock::now();
      int st = env.run_once(8s);  // killed after 8 s
      double took = since(t0);
      size_t connects = server.connects();
      std::string log = env.log();
      auto lines = rcpt_lines(log, "victim@bad.test");
      INFO("mode " << mode << ": --once exit " << st << " after " << took << " s, " << connects
                   << " connections\nserver:\n"
                   << head(server.log(), 2000) << "\nspoold:\n"
                   << head(log));
      CHECK(st == 0);
      CHECK(took < 6);
      CHECK(connects >= 1);
      CHECK(connects <= 3);
      CHECK(count_with(lines, "status=sent") == 0);
      CHECK(count_with(lines, "status=deferred") >= 1);
      CHECK(retrying(env) == 1);  // still queued, for a later tier
      CHECK(env.entries("queue/0").empty());
      CHECK(env.entries("failed").empty());
    }
  }
}

// (b) A real server may ignore the 512-byte line limit in a rejection: the reply is still a 550
// 5.1.1 (the text can be cut), so the recipient bounces; it is not a malformed reply to retry.
TEST_CASE("(b) a 2000-byte 550 line to RCPT bounces with 5.1.1", "[hostile-reply]") {
  TempDir tmp;
  Server server(tmp, "long5xx:RCPT");
  Env env(kOneAttempt + delivery());
  rel::route_domain(env, "bad.test", server.port(), "127.0.0.2");
  env.drop("m", rel::message("long@reply.test", "sender@ok.test", {"victim@bad.test"}));
  int st = env.run_once(30s);
  std::string log = env.log();
  auto lines = rcpt_lines(log, "victim@bad.test");
  INFO("server:\n" << head(server.log(), 3000) << "\nspoold:\n" << head(log));
  CHECK(st == 0);
  CHECK(count_with(lines, "dsn=5.1.1, status=bounced") == 1);
  CHECK(count_with(lines, "status=deferred") == 0);
  CHECK(log.find("malformed") == std::string::npos);
  CHECK(env.entries("failed").size() == 1);
  CHECK(retrying(env) == 0);
  // The bounce went to the sender (routed to the sink) and names the 5.1.1.
  REQUIRE(env.sink().count() == 1);
  CHECK(env.sink().messages()[0].data.find("Status: 5.1.1") != std::string::npos);
}

// (c) A 5xx greeting is that server's refusal, not the domain's answer about the recipient: the
// next MX of the domain is tried and delivers; nothing bounces. And when the other MX failed only
// temporarily (a 421 greeting), the mail is deferred for it, not bounced on the 5xx.
TEST_CASE("(c) a 5xx greeting from one MX: another MX delivers or the mail waits", "[hostile-reply][mx]") {
  TempDir tmp;
  int port = free_port();
  Env env(kOneAttempt + delivery("2s", fmt::format("  port: {}\n", port)), false);
  Sink lab(env.dir() / "lab");
  spoold::dns::test::Dnsmasq dns(
      {"--mx-host=two.test,mx1.two.test,10", "--host-record=mx1.two.test,127.0.0.2",
       "--mx-host=two.test,mx2.two.test,20", "--host-record=mx2.two.test,127.0.0.3"});
  write_file(
      env.config_path(),
      read_file(env.config_path()) +
          fmt::format("dns:\n  servers: [\"{}\"]\n  timeout: 300ms\n  tries: 1\nroutes:\n"
                      "  - {{ match: [\"lab.test\"], hosts: [\"127.0.0.1:{}\"] }}\n"
                      "  - {{ match: [\"two.test\"], mx: true }}\n  - {{ match: [\"*\"], mx: true }}\n",
                      dns.server(), lab.port()));
  env.drop("m", rel::message("greet@reply.test", "alice@lab.test", {"u@two.test"}));
  SECTION("first MX 554 greeting; second MX good: delivered by the second") {
    Server mx1(tmp, "reply:GREETING:554 5.3.2 go away", "127.0.0.2", port);
    Sink mx2(env.dir() / "mx2", {}, "127.0.0.3", port);
    int st = env.run_once(30s);
    std::string log = env.log();
    auto lines = rcpt_lines(log, "u@two.test");
    INFO("mx1:\n" << head(mx1.log(), 2000) << "\nspoold:\n" << head(log));
    CHECK(st == 0);
    CHECK(mx1.connects() >= 1);  // the preferred MX was tried first
    CHECK(mx2.count() == 1);
    CHECK(count_with(lines, "relay=mx2.two.test[127.0.0.3]:") == 1);
    CHECK(count_with(lines, "status=sent") == 1);
    CHECK(count_with(lines, "status=bounced") == 0);
    CHECK(lab.count() == 0);  // no DSN
    CHECK(rel::leftovers(env.spool()).empty());
  }
  SECTION("first MX 421 greeting; second MX 554 greeting: deferred, not bounced") {
    Server mx1(tmp, "reply:GREETING:421 4.3.2 busy, try later", "127.0.0.2", port);
    Server mx2(tmp, "reply:GREETING:554 5.3.2 go away", "127.0.0.3", port);
    int st = env.run_once(30s);
    std::string log = env.log();
    auto lines = rcpt_lines(log, "u@two.test");
    INFO("mx1:\n"
         << head(mx1.log(), 2000) << "\nmx2:\n"
         << head(mx2.log(), 2000) << "\nspoold:\n"
         << head(log));
    CHECK(st == 0);
    CHECK(mx1.connects() >= 1);
    CHECK(mx2.connects() >= 1);
    CHECK(count_with(lines, "status=bounced") == 0);
    CHECK(count_with(lines, "status=deferred") == 1);
    CHECK(retrying(env) == 1);
    CHECK(env.entries("failed").empty());
    CHECK(lab.count() == 0);  // no DSN
  }
}

// (d) connect_attempts: 1 and a next hop with two addresses that both fail before the session is
// ready: each attempt contacts each address once, then defers. Over several due attempts the
// connections per address equal the attempts that say they connected (an attempt that skips a
// recently failed address must say relay=none, "not tried"); never a reconnect loop.
TEST_CASE("(d) connect_attempts 1: each address once per attempt; then deferred", "[hostile-reply][mx]") {
  for (bool refusing : {false, true}) {
    DYNAMIC_SECTION(
        (refusing ? "one address silent; the other refuses connections" : "both addresses silent")) {
      TempDir tmp;
      int port = free_port();
      // 127.0.0.2 never greets; 127.0.0.3 never greets either, or has nothing listening.
      std::vector<std::unique_ptr<Server>> servers;
      servers.push_back(std::make_unique<Server>(tmp, "silent", "127.0.0.2", port));
      if (!refusing) servers.push_back(std::make_unique<Server>(tmp, "silent", "127.0.0.3", port));
      Env env(tiers({"0", "2s", "4s", "6s", "60s"}) +
                  delivery("1s", fmt::format("  port: {}\n  connect_attempts: 1\n", port)),
              false);
      Sink lab(env.dir() / "lab");
      spoold::dns::test::Dnsmasq dns({"--mx-host=multi.test,mx.multi.test,10",
                                      "--host-record=mx.multi.test,127.0.0.2",
                                      "--host-record=mx.multi.test,127.0.0.3"});
      write_file(env.config_path(),
                 read_file(env.config_path()) +
                     fmt::format("dns:\n  servers: [\"{}\"]\n  timeout: 300ms\n  tries: 1\nroutes:\n"
                                 "  - {{ match: [\"lab.test\"], hosts: [\"127.0.0.1:{}\"] }}\n"
                                 "  - {{ match: [\"multi.test\"], mx: true }}\n",
                                 dns.server(), lab.port()));
      env.start();
      env.drop("m", rel::message("attempts@reply.test", "alice@lab.test", {"u@multi.test"}));
      std::vector<const Server*> watched;
      for (const auto& s : servers) watched.push_back(s.get());
      Watched w = watch(env, "u@multi.test", watched, 10);
      size_t skipped = static_cast<size_t>(std::count_if(w.lines.begin(), w.lines.end(), not_tried));
      int stopped = env.stop();
      std::string counts;
      for (size_t i = 0; i < servers.size(); ++i)
        counts += fmt::format("127.0.0.{}: {} connections then, {} after 10 s; ", i + 2, w.connects[i],
                              w.final_connects[i]);
      INFO(w.lines.size() << " attempts (" << skipped << " not tried; " << w.final_lines << " after 10 s); "
                          << counts << "\nspoold:\n"
                          << head(env.log()));
      REQUIRE(w.lines.size() >= 2);
      CHECK(count_with(w.lines, "status=deferred") == w.lines.size());
      for (size_t i = 0; i < servers.size(); ++i) {
        CHECK(w.connects[i] == w.lines.size() - skipped);
        CHECK(w.final_connects[i] <= w.connects[i] + 1);  // at most one attempt under way at the end
      }
      CHECK(stopped == 0);
      CHECK(retrying(env) + env.entries("queue/0").size() == 1);
      CHECK(env.entries("failed").empty());
    }
  }
}

// (e) A retry that comes due really tries: it reconnects (the server's connection count grows with
// the attempts), or its log line says relay=none and "not tried". It never logs the server of an
// earlier attempt for an attempt that made no connection.
TEST_CASE("(e) a due retry is never a silent no-op", "[hostile-reply]") {
  TempDir tmp;
  Server server(tmp, "reset_in_data");
  Env env(tiers({"0", "2s", "4s", "6s", "60s"}) + delivery("2s", "  connect_attempts: 1\n"));
  rel::route_domain(env, "bad.test", server.port(), "127.0.0.2");
  env.start();
  env.drop("m", rel::message("retry@reply.test", "sender@ok.test", {"victim@bad.test"}));
  Watched w = watch(env, "victim@bad.test", {&server}, 10);
  int stopped = env.stop();
  std::string relay = fmt::format("relay=127.0.0.2[127.0.0.2]:{},", server.port());
  size_t named = count_with(w.lines, relay);
  size_t skipped = static_cast<size_t>(std::count_if(w.lines.begin(), w.lines.end(), not_tried));
  INFO(w.lines.size() << " attempts: " << named << " name the server, " << skipped << " not tried; "
                      << w.connects[0] << " connections then, " << w.final_connects[0]
                      << " after 10 s\nserver:\n"
                      << head(server.log(), 3000) << "\nspoold:\n"
                      << head(env.log()));
  REQUIRE(w.lines.size() >= 2);
  CHECK(count_with(w.lines, "status=deferred") == w.lines.size());
  CHECK(named + skipped == w.lines.size());  // each line: the server it talked to, or "not tried"
  CHECK(w.connects[0] == named);             // and every line naming the server made its connection
  CHECK(w.final_connects[0] <= w.connects[0] + 1);
  CHECK(stopped == 0);
  CHECK(retrying(env) + env.entries("queue/0").size() == 1);
}

// (f) STARTTLS offered, then no TLS at all: with opportunistic TLS the message goes in plaintext in
// the same attempt (a new connection without STARTTLS); with TLS required it waits, never in
// plaintext.
TEST_CASE("(f) a broken STARTTLS: plaintext fallback when opportunistic; deferred when required",
          "[hostile-reply][tls]") {
  TempDir tmp;
  Server server(tmp, "tls_broken");
  struct Run {
    std::unique_ptr<Env> env;
    int status = 0;
    std::vector<std::string> lines;
  };
  auto run = [&](const char* policy) {
    Run r;
    r.env = std::make_unique<Env>(kOneAttempt + delivery());
    set_yaml(*r.env, "tls: opportunistic", std::string("tls: ") + policy);
    rel::route_domain(*r.env, "bad.test", server.port(), "127.0.0.2");
    r.env->drop("m", rel::message("tls@reply.test", "sender@ok.test", {"victim@bad.test"}));
    r.status = r.env->run_once(30s);
    r.lines = rcpt_lines(r.env->log(), "victim@bad.test");
    return r;
  };
  SECTION("opportunistic") {
    Run r = run("opportunistic");
    Env& env = *r.env;
    auto& lines = r.lines;
    INFO("server:\n" << head(server.log(), 3000) << "\nspoold:\n" << head(env.log()));
    CHECK(r.status == 0);
    CHECK(server.count("tls_attempt") >= 1);
    CHECK(server.count("plain_accepted") == 1);
    CHECK(count_with(lines, "status=sent") == 1);
    CHECK(count_with(lines, "status=deferred") == 0);
    CHECK(retrying(env) == 0);
    CHECK(rel::leftovers(env.spool()).empty());
  }
  SECTION("required") {
    Run r = run("required");
    Env& env = *r.env;
    auto& lines = r.lines;
    INFO("server:\n" << head(server.log(), 3000) << "\nspoold:\n" << head(env.log()));
    CHECK(r.status == 0);
    CHECK(server.count("tls_attempt") >= 1);
    CHECK(server.count("accepted") == 0);
    CHECK(server.count("plain_accepted") == 0);
    CHECK(count_with(lines, "status=deferred") == 1);
    CHECK(count_with(lines, "status=sent") == 0);
    CHECK(retrying(env) == 1);
  }
}

// (g) Tarpits (servers that answer everything, each reply just inside the timeout) must not slow
// the delivery of other mail, and a tarpit session ends at max_connection_time plus the dot
// timeout at the latest.
TEST_CASE("(g) tarpits: healthy mail flows as fast as without them; sessions end on time",
          "[hostile-reply][tarpit]") {
  SECTION("300 healthy messages beside 5 tarpit domains") {
    constexpr int kHealthy = 300, kTarpits = 5, kPerTarpit = 4;
    // Every command timeout 4 s; the tarpits answer after 3 s (default session limits: 20 in all,
    // 4 per destination).
    auto measure = [&](bool with_tarpits, std::string& why) {
      TempDir tmp;
      Env env(tiers({"0", "30s", "60s"}) + delivery("4s"));
      auto pits = start_tarpits(tmp, env, with_tarpits ? kTarpits : 0, "tarpit:3");
      env.start();
      drop_tarpit_mail(env, static_cast<int>(pits.size()), kPerTarpit);
      // The tarpits hold their sessions before the healthy mail arrives.
      wait_until(
          [&] {
            return std::all_of(pits.begin(), pits.end(), [&](const auto& p) {
              return p->connects() >= static_cast<size_t>(kPerTarpit);
            });
          },
          5s);
      double took = deliver_healthy(env, kHealthy);
      size_t pit_connects = 0;
      for (const auto& p : pits) pit_connects += p->connects();
      why += fmt::format("{} tarpits: {} of {} healthy in {:.2f} s ({} tarpit connections)\n",
                         with_tarpits ? "with" : "without", env.sink().count(), kHealthy, took, pit_connects);
      env.stop(SIGKILL);
      return took;
    };
    std::string why;
    double without = measure(false, why);
    double with = measure(true, why);
    INFO(why);
    REQUIRE(without < 1e9);
    CHECK(with <= 1.2 * without + 2.0);
  }
  SECTION("a tarpit session is cut at max_connection_time + the dot timeout") {
    // Replies after 1 s, timeouts 2 s, max_connection_time 3 s: the session may last 3 s + 2 s (the
    // dot timeout), +1 s of slack; one message with 10 recipients would keep it busy for 16 s.
    TempDir tmp;
    Server server(tmp, "tarpit:1");
    Env env(kOneAttempt + delivery("2s", "  max_connection_time: 3s\n"));
    rel::route_domain(env, "pit.test", server.port(), "127.0.0.2");
    std::vector<std::string> rcpts;
    for (int i = 0; i < 10; ++i) rcpts.push_back(fmt::format("u{}@pit.test", i));
    env.start();
    env.drop("m", rel::message("long@tarpit.test", "sender@ok.test", rcpts));
    auto t0 = Clock::now();
    // Until the first session has ended (or clearly overran), and every recipient has a log line.
    while (since(t0) < 12) {
      auto s = server.sessions();
      bool ended = !s.empty() && s.begin()->second.end > 0;
      if (ended && rcpt_lines(env.log(), "u9@pit.test").size() >= 1) break;
      std::this_thread::sleep_for(50ms);
    }
    double now = rel::now_unix();
    auto sessions = server.sessions();
    std::string log = env.log();
    INFO("server:\n" << head(server.log(), 4000) << "\nspoold:\n" << head(log));
    REQUIRE(!sessions.empty());
    for (const auto& [n, s] : sessions) {
      double lasted = (s.end > 0 ? s.end : now) - s.connect;
      INFO("session #" << n << " lasted " << lasted << " s" << (s.end > 0 ? "" : " (still open)"));
      CHECK(lasted <= 3 + 2 + 1.0);
    }
    // Nothing lost: every recipient got an outcome (sent or deferred).
    size_t outcomes = 0;
    for (const auto& r : rcpts) outcomes += rcpt_lines(log, r).empty() ? 0 : 1;
    CHECK(outcomes == rcpts.size());
    env.stop(SIGKILL);
  }
}

// (h) An MX that resolves to a loopback address (or is an IP literal) points at a service of this
// machine, not at the domain's mail server: refused unless a route names the domain explicitly.
TEST_CASE("(h) MX records pointing at local services", "[hostile-reply][mx]") {
  TempDir tmp;
  int port = free_port();
  Server local(tmp, "normal", "127.0.0.1", port);
  spoold::dns::test::Dnsmasq dns({"--mx-host=local.test,mx.local.test,10",
                                  "--host-record=mx.local.test,127.0.0.1", "--mx-host=lit.test,127.0.0.1,10",
                                  "--mx-host=brk.test,[127.0.0.1],10"});
  auto world = [&] {
    return std::make_unique<Env>(kOneAttempt + delivery("2s", fmt::format("  port: {}\n", port)), false);
  };
  Sink lab(tmp / "lab");
  auto configure = [&](Env& env, const std::string& explicit_route) {
    write_file(env.config_path(),
               read_file(env.config_path()) +
                   fmt::format("dns:\n  servers: [\"{}\"]\n  timeout: 300ms\n  tries: 1\n"
                               "routes:\n  - {{ match: [\"lab.test\"], hosts: [\"127.0.0.1:{}\"] }}\n"
                               "{}  - {{ match: [\"*\"], mx: true }}\n",
                               dns.server(), lab.port(), explicit_route));
  };
  struct Case {
    const char* what;
    const char* rcpt;
  };
  for (const Case& c : {Case{"MX host with address 127.0.0.1", "u@local.test"},
                        Case{"MX target is the IP literal 127.0.0.1.", "u@lit.test"},
                        Case{"MX target is [127.0.0.1]", "u@brk.test"}}) {
    DYNAMIC_SECTION("refused by the catch-all MX route: " << c.what) {
      auto env = world();
      configure(*env, "");
      size_t before = local.connects();
      env->drop("m", rel::message("local@reply.test", "alice@lab.test", {c.rcpt}));
      int st = env->run_once(30s);
      std::string log = env->log();
      auto lines = rcpt_lines(log, c.rcpt);
      INFO("server:\n" << head(local.log(), 2000) << "\nspoold:\n" << head(log));
      CHECK(st == 0);
      CHECK(local.connects() == before);  // not even a connection
      CHECK(local.count("accepted") == 0);
      REQUIRE(lines.size() == 1);
      CHECK(count_with(lines, "relay=none") == 1);
      CHECK(count_with(lines, "status=sent") == 0);
      CHECK((count_with(lines, "status=deferred") + count_with(lines, "status=bounced")) == 1);
    }
  }
  SECTION("delivered when a route names the domain") {
    auto env = world();
    configure(*env, "  - { match: [\"local.test\"], mx: true }\n");
    env->drop("m", rel::message("local@reply.test", "alice@lab.test", {"u@local.test"}));
    int st = env->run_once(30s);
    std::string log = env->log();
    auto lines = rcpt_lines(log, "u@local.test");
    INFO("server:\n" << head(local.log(), 2000) << "\nspoold:\n" << head(log));
    CHECK(st == 0);
    CHECK(local.count("accepted") == 1);
    CHECK(count_with(lines, "relay=mx.local.test[127.0.0.1]:") == 1);
    CHECK(count_with(lines, "status=sent") == 1);
  }
}

// (i) A lock found lost mid-session (another process took the entry over) cuts that session before
// its final dot: the server never gets the message from us, the entry stays on disk for its new
// owner. Replies come 1 s late, so the session is still before DATA when the daemon's lock refresh
// (every lock_stale_after / 4, at least 1 s) notices.
TEST_CASE("(i) a lock lost mid-session cuts the session before its final dot", "[hostile-reply][lock]") {
  TempDir tmp;
  Server server(tmp, "tarpit:1");
  Env env(kOneAttempt + delivery("5s"));
  set_yaml(env, "lock_stale_after: 5s", "lock_stale_after: 4s");
  rel::route_domain(env, "pit.test", server.port(), "127.0.0.2");
  env.start();
  env.drop("m", rel::message("lost@lock.test", "sender@ok.test", {"u@pit.test"}));
  // The session is under way: EHLO answered, MAIL sent.
  REQUIRE(wait_until([&] { return server.log().find("recv MAIL") != std::string::npos; }, 15s));
  // Take the lock over as another daemon would after breaking it: a new file at the lock path.
  std::string lock;
  for (const auto& n : list_dir(env.spool() + "/data"))
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".lock") == 0) lock = env.spool() + "/data/" + n;
  REQUIRE(!lock.empty());
  REQUIRE(::unlink(lock.c_str()) == 0);
  write_file(lock, "other-host 4242 otherboot 1 tok\n");
  REQUIRE(wait_until([&] { return env.log().find("cut before its final dot") != std::string::npos; }, 10s));
  REQUIRE(wait_until([&] { return server.log().find("end #1") != std::string::npos; }, 10s));
  std::string events = server.log();
  INFO("server:\n" << events << "\nspoold:\n" << env.log());
  CHECK(events.find("recv DOT") == std::string::npos);
  CHECK(env.log().find("status=sent") == std::string::npos);
  CHECK(env.log().find("lock lost") != std::string::npos);
  CHECK(env.stop() == 0);
  // The message is still on disk, under the other owner's lock: in a queue, or (a fresh drop whose
  // first outcome was never written) as the claimed entry in data/.
  auto files = rel::spool_files(env.spool());
  INFO("spool: " << rel::join(files));
  CHECK(std::count_if(files.begin(), files.end(), [](const std::string& f) {
          return f.rfind("queue/", 0) == 0 || f.rfind("incoming/", 0) == 0 ||
                 (f.rfind("data/", 0) == 0 && f.size() > 4 && f.compare(f.size() - 4, 4, ".new") == 0);
        }) == 1);
  CHECK(env.log().find("left to the process that took its lock over") != std::string::npos);
  CHECK(read_file(lock) == "other-host 4242 otherboot 1 tok\n");
}

// (j) At most 4096 entries are in memory. Tarpit destinations with thousands of due messages each
// may hold only their share of that room (inflight_share.h): the rest waits on disk, and healthy
// mail arriving later is picked up and delivered as fast as without them. Nothing is lost: every
// tarpit message is still in the spool, once.
TEST_CASE("(j) in-flight share: 5 tarpit domains with 1,000 messages each beside 2,000 healthy",
          "[hostile-reply][tarpit][share]") {
  constexpr int kHealthy = 2000, kTarpits = 5, kPerTarpit = 1000;
  auto measure = [&](bool with_tarpits, std::string& why) {
    TempDir tmp;
    // Every reply of a tarpit 20 s late, timeouts 25 s: its sessions hold their messages throughout.
    Env env(tiers({"0", "30m", "60m"}) + delivery("25s"));
    auto pits = start_tarpits(tmp, env, with_tarpits ? kTarpits : 0, "tarpit:20");
    env.start();
    drop_tarpit_mail(env, static_cast<int>(pits.size()), kPerTarpit);
    if (with_tarpits) {
      // The tarpits hold their sessions, and the daemon has looked at every drop.
      wait_until(
          [&] {
            return std::all_of(pits.begin(), pits.end(), [&](const auto& p) { return p->connects() >= 1; });
          },
          10s);
      std::this_thread::sleep_for(2s);
    }
    double took = deliver_healthy(env, kHealthy);
    why += fmt::format("{} tarpits: {} of {} healthy in {:.2f} s\n", with_tarpits ? "with" : "without",
                       env.sink().count(), kHealthy, took);
    env.stop(SIGKILL);
    if (with_tarpits) {
      // Every tarpit message is on disk once: a drop in incoming/ (some were handed back there) or
      // a claimed one in data/ (its envelope not written yet: recover() returns it).
      size_t on_disk = 0;
      for (const std::string dir : {"incoming", "data"})
        for (const auto& n : list_dir(env.spool() + "/" + dir))
          if (n.find(".lock") == std::string::npos &&
              read_file(env.spool() + "/" + dir + "/" + n).find("@tarpit.test") != std::string::npos)
            ++on_disk;
      why += fmt::format("tarpit messages on disk: {}\n", on_disk);
      CHECK(on_disk == static_cast<size_t>(kTarpits * kPerTarpit));
    }
    return took;
  };
  // File creation on this disk slows down for a minute after many deletions (each run deletes
  // thousands of files), so single runs vary severalfold: the runs alternate, and the best of each
  // kind is compared, for at most four rounds.
  std::string why;
  double without = 1e9, with = 1e9;
  auto fast_enough = [&] { return without < 1e9 && with <= 1.2 * without + 0.5; };
  for (int round = 0; round < 4 && !fast_enough(); ++round) {
    without = std::min(without, measure(false, why));
    with = std::min(with, measure(true, why));
  }
  INFO(why);
  REQUIRE(without < 1e9);
  CHECK(fast_enough());
}
