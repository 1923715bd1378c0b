// tests/listener/listener_test.cpp — the SMTP listener against real clients (Python's smtplib,
// swaks, curl, Postfix's smtp-source, raw sockets) on loopback, with the real spoold binary and
// a real sink behind it. Each case names the promise of DESIGN "Receiving" it checks.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "control/json.h"
#include "tests/daemon/harness.h"
#include "tests/dns/dns_fixture.h"
#include "tests/listener/clients.h"

using namespace spoold::test;
using namespace std::chrono_literals;
using spoold::control::Json;

using spoold::test::listener::client_script;
using spoold::test::listener::ctl_binary;
using spoold::test::listener::hex;
using spoold::test::listener::json_lines;
using spoold::test::listener::ListenEnv;
using spoold::test::listener::queue_id;
using spoold::test::listener::Run;
using spoold::test::listener::run;
using spoold::test::listener::status;

TEST_CASE("a message sent with smtplib is stored, logged with client= and delivered", "[listener]") {
  ListenEnv le;
  le.start();
  auto res = le.send({"--to", "someone@example.test"});
  REQUIRE(res.size() == 1);
  INFO(res[0].dump());
  CHECK(res[0]["ok"].as_bool());
  std::string id = queue_id(res[0]["reply"].as_string());
  REQUIRE(id.size() == 30);
  REQUIRE(le.env.sink().wait_count(1, 20s));
  auto m = le.env.sink().messages().at(0);
  CHECK(m.meta["from"].as_string() == "app@client.test");
  INFO(m.data);
  CHECK(m.data.find("Received: from client.test (localhost [127.0.0.1])") != std::string::npos);
  CHECK(m.data.find("by spoold.test (spoold) with ESMTP id " + id) != std::string::npos);
  CHECK(m.data.find("Subject: listener test 0") != std::string::npos);
  REQUIRE(wait_until(
      [&] { return le.env.log().find(id + ": to=<someone@example.test>") != std::string::npos; }, 10s));
  std::string log = le.env.log();
  CHECK(log.find(id + ": client=localhost[127.0.0.1]:") != std::string::npos);
  CHECK(log.find(id + ": from=<app@client.test>") != std::string::npos);
  CHECK(log.find("connect from localhost[127.0.0.1]") != std::string::npos);
  le.env.stop();
}

// The usage totals' `spooled` takes every way in: SMTP receipts and sendmail both arrive through
// incoming/ and its pickup, each message counted once with its recipients and size.
TEST_CASE("messages received over SMTP and from sendmail count as spooled", "[listener][usage]") {
  ListenEnv le;
  le.start();
  auto res = le.send({"--to", "a@example.test", "--to", "b@example.test", "--count", "2"});
  REQUIRE(res.size() == 2);
  std::string msg = "Subject: usage\n\nhello\n";
  auto r =
      run(le.env.dir(),
          {ctl_binary("sendmail"), "-C", le.env.config_path(), "-f", "app@client.test", "c@example.test"},
          30s, &msg);
  REQUIRE(r.status == 0);
  REQUIRE(le.env.sink().wait_count(3, 20s));
  spoold::control::Json st;
  auto spooled = [&](const char* field) { return st["usage"]["since_start"]["spooled"][field].as_int(); };
  bool counted = wait_until(
      [&] {
        st = status(le.env);
        return st["usage"]["since_start"]["sent"]["messages"].as_int() == 3;
      },
      10s);
  INFO(st.dump());
  CHECK(counted);
  CHECK(spooled("messages") == 3);
  CHECK(spooled("recipients") == 5);
  CHECK(spooled("bytes") >= static_cast<long long>(msg.size()));
  CHECK(st["usage"]["since_start"]["sent"]["recipients"].as_int() == 5);
  le.env.stop();
}

// Postfix's smtpd names a client by forward-confirmed reverse DNS: the PTR name counts only when
// it resolves back to the client's address. 127.0.0.1 is "localhost" without a query.
TEST_CASE("client names come from forward-confirmed reverse DNS", "[listener][dns]") {
  spoold::dns::test::Dnsmasq dns({"--host-record=client2.test,127.0.0.2",  // A and PTR
                                  "--ptr-record=3.0.0.127.in-addr.arpa,liar.test",
                                  "--host-record=liar.test,127.0.0.9"});
  ListenEnv le("    reverse_lookup: true\n",
               "dns:\n  servers: [\"" + dns.server() + "\"]\n  timeout: 500ms\n  tries: 2\n");
  le.start();
  for (const char* source : {"127.0.0.2", "127.0.0.3", "127.0.0.1"}) {
    auto res = le.send({"--source", source, "--to", std::string("x@example.test")});
    REQUIRE(res.size() == 1);
    CHECK(res[0]["ok"].as_bool());
  }
  REQUIRE(le.env.sink().wait_count(3, 20s));
  const std::string log = le.env.log();
  INFO(log);
  CHECK(log.find("connect from client2.test[127.0.0.2]") != std::string::npos);
  CHECK(log.find("client=client2.test[127.0.0.2]:") != std::string::npos);
  CHECK(log.find("client=localhost[127.0.0.3]:") != std::string::npos);  // not confirmed: the fallback
  CHECK(log.find("liar.test") == std::string::npos);
  CHECK(log.find("client=localhost[127.0.0.1]:") != std::string::npos);
  CHECK(dns.queries("2.0.0.127.in-addr.arpa", "PTR") >= 1);
  CHECK(dns.queries("liar.test", "A") >= 1);
  CHECK(dns.queries("1.0.0.127.in-addr.arpa", "PTR") == 0);
  bool received = false;
  for (const auto& m : le.env.sink().messages())
    received =
        received || m.data.find("Received: from client.test (client2.test [127.0.0.2])") != std::string::npos;
  CHECK(received);
  le.env.stop();
}

TEST_CASE("a client outside relay_from gets 554 5.7.1 for every recipient but postmaster", "[listener]") {
  ListenEnv le("    relay_from: [\"127.0.0.1/32\"]\n", "aliases: { postmaster: [ops@example.test] }\n");
  le.start();
  auto res = le.send({"--source", "127.0.0.2", "--to", "a@example.test", "--to", "b@example.org"});
  REQUIRE(res.size() == 1);
  INFO(res[0].dump());
  CHECK_FALSE(res[0]["ok"].as_bool());
  CHECK(res[0]["code"].as_int() == 554);
  CHECK(res[0]["reply"].as_string().find("5.7.1") != std::string::npos);
  CHECK(res[0]["refused"]["b@example.org"].as_array().at(0).as_int() == 554);
  std::string log = le.env.log();
  INFO(log);
  CHECK(
      log.find(
          "NOQUEUE: reject: RCPT from localhost[127.0.0.2]: 554 5.7.1 <a@example.test>: Relay access denied; "
          "from=<app@client.test> to=<a@example.test> proto=ESMTP helo=<client.test>") != std::string::npos);
  // RFC 5321 §4.5.1: the local postmaster takes mail from anyone.
  auto pm = le.send({"--source", "127.0.0.2", "--to", "postmaster"});
  REQUIRE(pm.size() == 1);
  CHECK(pm[0]["ok"].as_bool());
  // The same client from inside relay_from may relay.
  auto ok = le.send({"--to", "a@example.test"});
  REQUIRE(ok.size() == 1);
  CHECK(ok[0]["ok"].as_bool());
  REQUIRE(le.env.sink().wait_count(2, 20s));
  bool saw_postmaster = false;
  for (const auto& m : le.env.sink().messages())
    for (const auto& r : m.meta["rcpts"].as_array())
      saw_postmaster |= r.as_string() == "ops@example.test";  // its alias
  CHECK(saw_postmaster);
  CHECK(le.env.sink().count() == 2);
  le.env.stop();
}

TEST_CASE("only CRLF.CRLF ends DATA: smuggled ends stay in the message", "[listener]") {
  ListenEnv le;
  le.start();
  const std::string head =
      "EHLO smuggler.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n";
  const std::string body =
      "Subject: smuggle\r\n\r\nline\n.\nMAIL FROM:<evil@client.test>\r\n"  // LF.LF
      "x\r.\rRCPT TO:<victim@example.test>\r\n"                            // CR.CR
      "y\n.\r\nDATA\r\n"                                                   // LF.CRLF
      "z\r\n.\nQUIT\r\n"                                                   // CRLF.LF
      "end\r\n.\r\n";
  Json r = le.raw({head, body, "QUIT\r\n"});
  std::string replies = r["replies"].as_string();
  INFO(replies);
  CHECK(replies.find("354") != std::string::npos);
  CHECK(replies.find("250 2.0.0 Ok: queued as") != std::string::npos);
  REQUIRE(le.env.sink().wait_count(1, 20s));
  std::this_thread::sleep_for(500ms);
  REQUIRE(le.env.sink().count() == 1);
  auto m = le.env.sink().messages().at(0);
  REQUIRE(m.meta["rcpts"].as_array().size() == 1);
  CHECK(m.meta["rcpts"].as_array()[0].as_string() == "x@example.test");
  // Every smuggled command arrived as message text; the bare LFs were made CRLF on the way.
  CHECK(m.data.find("MAIL FROM:<evil@client.test>") != std::string::npos);
  CHECK(m.data.find("RCPT TO:<victim@example.test>") != std::string::npos);
  CHECK(m.data.find("\r\nQUIT\r\n") != std::string::npos);
  CHECK(m.data.find("end") != std::string::npos);
  le.env.stop();
}

// Replies to pipelined commands are made only as the socket takes them (smtp/server.h
// kMaxOutput): a client that sends 3,000 EHLOs (~600 kB of replies; the hex of more would not fit an
// argument) before reading still gets every reply, and then its QUIT answered.
TEST_CASE("a client pipelining 3,000 EHLOs before reading gets every reply", "[listener][hostile]") {
  ListenEnv le;
  le.start();
  std::string cmds;
  for (int i = 0; i < 3000; ++i) cmds += "EHLO c" + std::to_string(i) + ".test\r\n";
  cmds += "QUIT\r\n";
  Json r = le.raw({cmds}, {"--wait", "10"});
  std::string replies = r["replies"].as_string();
  size_t n = 0;
  for (size_t pos = replies.find("250-PIPELINING\r\n"); pos != std::string::npos;
       pos = replies.find("250-PIPELINING\r\n", pos + 1))
    ++n;
  CHECK(n == 3000);
  CHECK(replies.ends_with("221 2.0.0 Bye\r\n"));  // the QUIT behind them, answered last
  le.env.stop();
}

TEST_CASE("max_sessions: the next client gets 421 at once and delivery goes on", "[listener]") {
  ListenEnv le("    max_sessions: 2\n    timeout: 30s\n");
  le.start();
  auto hold = [&] {
    return std::make_unique<Process>(
        std::vector<std::string>{system_python(), client_script(), "hold", "--port", std::to_string(le.port),
                                 "--seconds", "20"},
        le.env.dir() / "hold.out", "");
  };
  auto h1 = hold(), h2 = hold();
  REQUIRE(wait_until(
      [&] {
        Json st = status(le.env);
        return st["listeners"].as_array().size() == 1 &&
               st["listeners"].as_array()[0]["sessions"].as_int() == 2;
      },
      10s));
  Json r = le.raw({});
  INFO(r.dump());
  CHECK(r["replies"].as_string().rfind("421 4.7.0", 0) == 0);
  CHECK(r["closed"].as_bool());
  le.env.drop("d1", envelope_message("a@client.test", {"x@example.test"}, "while full"));
  CHECK(le.env.sink().wait_count(1, 10s));
  CHECK(le.env.log().find("too many sessions") != std::string::npos);
  le.env.stop();
}

TEST_CASE("max_sessions_per_client: one client outside relay_from cannot take every session",
          "[listener][hostile]") {
  ListenEnv le("    relay_from: [\"127.0.0.1/32\"]\n    max_sessions_per_client: 2\n    timeout: 30s\n");
  le.start();
  auto hold = [&](const char* source) {
    return std::make_unique<Process>(
        std::vector<std::string>{system_python(), client_script(), "hold", "--port", std::to_string(le.port),
                                 "--source", source, "--seconds", "20"},
        le.env.dir() / (std::string("hold-") + source + ".out"), "");
  };
  auto sessions = [&] {
    Json st = status(le.env);
    return st["listeners"].as_array().empty() ? -1 : st["listeners"].as_array()[0]["sessions"].as_int();
  };
  std::vector<std::unique_ptr<Process>> held;
  held.push_back(hold("127.0.0.2"));
  held.push_back(hold("127.0.0.2"));
  REQUIRE(wait_until([&] { return sessions() == 2; }, 10s));
  Json r = le.raw({}, {"--source", "127.0.0.2"});
  INFO(r.dump());
  CHECK(r["replies"].as_string().rfind("421 4.7.0", 0) == 0);
  CHECK(r["replies"].as_string().find("too many connections from 127.0.0.2") != std::string::npos);
  CHECK(r["closed"].as_bool());
  // Another client is served, and clients in relay_from are not counted.
  Json other = le.raw({"QUIT\r\n"}, {"--source", "127.0.0.3"});
  CHECK(other["replies"].as_string().rfind("220 ", 0) == 0);
  for (int i = 0; i < 3; ++i) held.push_back(hold("127.0.0.1"));
  CHECK(wait_until([&] { return sessions() == 5; }, 10s));
  Json st = status(le.env);
  CHECK(st["listeners"].as_array()[0]["refused_client"].as_int() == 1);
  CHECK(le.env.log().find("too many sessions from this client") != std::string::npos);
  // A session that ends gives its place back.
  held[0].reset();
  held[1].reset();
  REQUIRE(wait_until([&] { return sessions() == 3; }, 10s));
  Json again = le.raw({"QUIT\r\n"}, {"--source", "127.0.0.2"});
  CHECK(again["replies"].as_string().rfind("220 ", 0) == 0);
  le.env.stop();
}

TEST_CASE("min_data_rate: 8 KiB per almost-timeout in DATA is cut, a steady client is not",
          "[listener][hostile]") {
  ListenEnv le("    timeout: 2s\n    min_data_rate: 10000\n");
  le.start();
  auto drip = [&](const char* name, const char* every, const char* seconds) {
    return std::make_unique<Process>(
        std::vector<std::string>{system_python(), client_script(), "drip", "--port", std::to_string(le.port),
                                 "--bytes", "8200", "--every", every, "--seconds", seconds},
        le.env.dir() / name, "");
  };
  // 8200 octets every 1.5 s re-arms the 2 s timeout each time (5.5 kB/s): without a minimum
  // rate this session would last as long as the client liked.
  auto slow = drip("slow.out", "1.5", "14");
  auto fast = drip("fast.out", "0.3", "7");  // 27 kB/s
  CHECK(slow->wait(20s) != -1);
  CHECK(fast->wait(20s) != -1);
  auto s = json_lines(read_file(le.env.dir() / "slow.out"));
  auto f = json_lines(read_file(le.env.dir() / "fast.out"));
  REQUIRE(s.size() == 1);
  REQUIRE(f.size() == 1);
  INFO("slow: " << s[0].dump() << " fast: " << f[0].dump());
  CHECK(s[0]["closed_after"].as_double() > 3.0);
  CHECK(s[0]["closed_after"].as_double() < 10.0);
  CHECK(s[0]["last"].as_string().find("421 4.4.2") != std::string::npos);
  CHECK(f[0]["closed_after"].as_double() >= 6.5);
  CHECK(f[0]["last"].as_string().find("421") == std::string::npos);
  CHECK(le.env.log().find("slow DATA from localhost[127.0.0.1]") != std::string::npos);
  CHECK(status(le.env)["listeners"].as_array()[0]["slow_data"].as_int() == 1);
  le.env.stop();
}

TEST_CASE("a silent client and a trickling client are cut at the timeout", "[listener]") {
  ListenEnv le("    timeout: 2s\n");
  le.start();
  auto start = std::chrono::steady_clock::now();
  std::vector<std::string> base{system_python(),         client_script(), "hold", "--port",
                                std::to_string(le.port), "--seconds",     "15"};
  Process silent(base, le.env.dir() / "silent.out", "");
  auto trickle_argv = base;
  trickle_argv.push_back("--trickle");
  Process trickle(trickle_argv, le.env.dir() / "trickle.out", "");
  // Mail keeps flowing meanwhile.
  le.env.drop("d1", envelope_message("a@client.test", {"x@example.test"}, "during the stall"));
  CHECK(le.env.sink().wait_count(1, 5s));
  CHECK(silent.wait(12s) != -1);
  CHECK(trickle.wait(12s) != -1);
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(took < 10s);
  for (const char* f : {"silent.out", "trickle.out"}) {
    auto j = json_lines(read_file(le.env.dir() / f));
    REQUIRE(j.size() == 1);
    INFO(f << ": " << j[0].dump());
    CHECK(j[0]["closed_after"].as_double() >= 1.5);
    CHECK(j[0]["closed_after"].as_double() < 8.0);
    CHECK(j[0]["last"].as_string().find("421 4.4.2") != std::string::npos);
  }
  INFO(le.env.log());
  CHECK(le.env.log().find("timeout after connected from localhost[127.0.0.1]") != std::string::npos);
  le.env.stop();
}

namespace {

// The spool on an ext4 file system of its own (a loop device), which freeze() stops as a disk
// that stalls would: every write into it blocks until thaw(). Needs root, mount(2) and a loop
// device; ok is false otherwise.
struct FreezableSpool {
  std::string at;
  bool ok = false;
  bool frozen = false;
  int fd = -1;
  FreezableSpool(const TempDir& dir, const std::string& spool) : at(spool) {
    const std::string img = dir / "spool.img";
    ::mkdir(spool.c_str(), 0700);
    const std::string cmd = "truncate -s 64M " + img + " && mkfs.ext4 -q -F " + img +
                            " >/dev/null 2>&1 && mount -o loop " + img + " " + spool + " 2>/dev/null";
    ok = std::system(cmd.c_str()) == 0;
    if (ok) fd = ::open(spool.c_str(), O_RDONLY | O_DIRECTORY);
    ok = ok && fd >= 0;
  }
  bool freeze() { return frozen = ::ioctl(fd, FIFREEZE, 0) == 0; }
  void thaw() {
    if (frozen) ::ioctl(fd, FITHAW, 0);
    frozen = false;
  }
  ~FreezableSpool() {
    thaw();
    if (fd >= 0) ::close(fd);
    if (ok) ::umount2(at.c_str(), MNT_DETACH);
  }
};

}  // namespace

// A disk that stalls while a client is in DATA: the session stops reading once 1 MiB waits for
// the write, and that pause is spoold's, not the client's. With a 2 s timeout and a minimum rate
// the client would miss during a 5 s freeze, it still gets its 250 once the disk is back.
TEST_CASE("a disk stall during DATA counts against neither the timeout nor min_data_rate",
          "[listener][hostile][disk]") {
  ListenEnv le("    timeout: 2s\n    min_data_rate: 1000000\n");
  FreezableSpool fs(le.env.dir(), le.env.spool());
  if (!fs.ok) {
    WARN("SKIPPED: cannot mount an ext4 loop device for the spool; the disk-stall test needs one");
    return;
  }
  le.start();
  // One message first, so the daemon's start-up writes are done before the freeze.
  REQUIRE(le.send({"--from", "a@client.test", "--to", "x@example.test"})[0]["ok"].as_bool());
  REQUIRE(le.env.sink().wait_count(1, 10s));
  REQUIRE(fs.freeze());
  Process client({system_python(), client_script(), "send", "--port", std::to_string(le.port), "--from",
                  "big@client.test", "--to", "x@example.test", "--body-bytes", "3000000"},
                 le.env.dir() / "big.out", le.env.dir() / "big.err");
  std::this_thread::sleep_for(5s);
  CHECK(client.running());  // still waiting behind the stalled disk
  fs.thaw();
  int st = client.wait(30s);
  INFO(le.env.log());
  REQUIRE(st == 0);
  auto res = json_lines(read_file(le.env.dir() / "big.out"));
  REQUIRE(res.size() == 1);
  INFO(res[0].dump());
  CHECK(res[0]["ok"].as_bool());
  CHECK(le.env.sink().wait_count(2, 20s));
  CHECK(le.env.log().find("slow DATA") == std::string::npos);
  CHECK(le.env.log().find("timeout after") == std::string::npos);
  le.env.stop();
}

TEST_CASE("kill -9 right after each 250 loses nothing", "[listener][durability]") {
  ListenEnv le;
  // While the daemon runs, the next hop refuses connections: everything acknowledged stays queued.
  const std::string sink_route = "127.0.0.1:" + std::to_string(le.env.sink().port());
  const std::string yaml = read_file(le.env.config_path());
  std::string dead = yaml;
  dead.replace(dead.find(sink_route), sink_route.size(), "127.0.0.1:" + std::to_string(free_port()));
  write_file(le.env.config_path(), dead);
  le.start();
  auto res = le.send({"--to", "x@example.test", "--count", "20"});
  REQUIRE(res.size() == 20);
  std::vector<std::string> ids;
  for (auto& r : res) {
    REQUIRE(r["ok"].as_bool());
    ids.push_back(queue_id(r["reply"].as_string()));
  }
  le.env.stop(SIGKILL);
  size_t on_disk = le.env.entries("incoming").size();
  for (int t = 0; t < 3; ++t) on_disk += le.env.entries("queue/" + std::to_string(t)).size();
  for (const auto& n : list_dir(le.env.spool() + "/data"))  // claimed, envelope not written yet
    on_disk += n.size() > 4 && n.substr(n.size() - 4) == ".new";
  CHECK(on_disk == 20);
  write_file(le.env.config_path(), yaml);
  le.env.start();
  REQUIRE(le.env.sink().wait_count(20, 30s));
  std::string delivered;
  for (const auto& m : le.env.sink().messages()) delivered += m.data;
  for (const auto& id : ids) CHECK(delivered.find("id " + id) != std::string::npos);
  CHECK(le.env.sink().count() == 20);
  le.env.stop();
}

TEST_CASE("kill -9 during DATA stores nothing and leaves nothing behind", "[listener][durability]") {
  ListenEnv le;
  le.start();
  std::string head = "EHLO c.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n";
  Process client({system_python(), client_script(), "raw", "--port", std::to_string(le.port), "--send",
                  hex(head), "--fill", std::to_string(400 * 1024), "--wait", "3"},
                 le.env.dir() / "partial.out", "");
  REQUIRE(wait_until([&] { return !list_dir(le.env.spool() + "/tmp").empty(); }, 10s));  // the temp file
  le.env.stop(SIGKILL);
  CHECK(client.wait(10s) != -1);
  auto out = json_lines(read_file(le.env.dir() / "partial.out"));
  REQUIRE(out.size() == 1);
  CHECK(out[0]["replies"].as_string().find("queued as") == std::string::npos);
  le.env.start();
  le.env.drop("after", envelope_message("a@client.test", {"y@example.test"}, "after restart"));
  REQUIRE(le.env.sink().wait_count(1, 20s));
  std::this_thread::sleep_for(1s);
  CHECK(le.env.sink().count() == 1);
  CHECK(le.env.entries("incoming").empty());
  le.env.stop();
}

TEST_CASE("swaks with PIPELINING and curl smtp:// are accepted", "[listener]") {
  ListenEnv le;
  le.start();
  Run sw = run(le.env.dir(),
               {"swaks", "--server", "127.0.0.1:" + std::to_string(le.port), "--to", "someone@example.test",
                "--from", "app@client.test", "--pipeline", "--helo", "swaks.test", "--timeout", "20"});
  INFO(sw.out << sw.err);
  CHECK(sw.status == 0);
  CHECK(sw.out.find("queued as") != std::string::npos);
  write_file(le.env.dir() / "curl.eml",
             "From: <app@client.test>\r\nTo: <c@example.test>\r\nSubject: curl\r\n\r\nHi.\r\n");
  Run cu = run(le.env.dir(), {"curl", "-sS", "--max-time", "20",
                              "smtp://127.0.0.1:" + std::to_string(le.port), "--mail-from", "app@client.test",
                              "--mail-rcpt", "c@example.test", "--upload-file", le.env.dir() / "curl.eml"});
  INFO(cu.out << cu.err);
  CHECK(cu.status == 0);
  REQUIRE(le.env.sink().wait_count(2, 20s));
  le.env.stop();
}

TEST_CASE("smtp-source: 20 concurrent clients, 1000 messages, every one delivered once", "[listener][load]") {
  ListenEnv le("    max_sessions: 50\n");
  le.start();
  Run src = run(le.env.dir(),
                {"smtp-source", "-s", "20", "-m", "1000", "-l", "2048", "-f", "app@client.test", "-t",
                 "load@example.test", "127.0.0.1:" + std::to_string(le.port)},
                120s);
  INFO(src.out << src.err);
  REQUIRE(src.status == 0);
  REQUIRE(le.env.sink().wait_count(1000, 60s));
  std::this_thread::sleep_for(500ms);
  CHECK(le.env.sink().count() == 1000);
  Json st = status(le.env);
  INFO(st.dump());
  CHECK(st["listeners"].as_array().at(0)["messages"].as_int() == 1000);
  le.env.stop();
}

TEST_CASE("AUTH PLAIN and LOGIN against users_file let a client outside relay_from relay",
          "[listener][auth]") {
  TempDir d;
  write_file(d / "users",
             "# spoold "
             "accounts\nmailer:$6$testsalt1234$x2ekVBLFKeAvd."
             "lfwgc43dVBt7yZOZhyiHrhMgkVhBSiGO52mRHtX3elweMUJo2YRy7yDabyvNG2QB0DkTFhw/\n");
  ListenEnv le("    relay_from: [\"127.0.0.1/32\"]\n    auth: { users_file: \"" + (d / "users") + "\" }\n");
  le.start();
  for (const char* mech : {"PLAIN", "LOGIN"}) {
    INFO(mech);
    auto res = le.send({"--source", "127.0.0.2", "--user", "mailer", "--password", "secret", "--mech", mech,
                        "--to", "far@example.test"});
    REQUIRE(res.size() == 2);
    CHECK(res[0]["auth"].as_bool());
    CHECK(res[1]["ok"].as_bool());
  }
  auto bad = le.send({"--source", "127.0.0.2", "--user", "mailer", "--password", "wrong", "--mech", "PLAIN",
                      "--to", "far@example.test"});
  REQUIRE(bad.size() == 2);
  CHECK_FALSE(bad[0]["auth"].as_bool());
  CHECK(bad[0]["code"].as_int() == 535);
  CHECK(bad[1]["code"].as_int() == 554);  // still no relay
  REQUIRE(le.env.sink().wait_count(2, 20s));
  std::string log = le.env.log();
  CHECK(log.find("sasl_username=mailer") != std::string::npos);
  CHECK(log.find("authentication failed for user 'mailer'") != std::string::npos);
  Json st = status(le.env);
  CHECK(st["listeners"].as_array().at(0)["auth_ok"].as_int() == 2);
  CHECK(st["listeners"].as_array().at(0)["auth_failed"].as_int() == 1);
  le.env.stop();
}

TEST_CASE("STARTTLS: the message goes over TLS and Received: says so; implicit TLS too", "[listener][tls]") {
  TempDir d;
  make_certificate(d.path());
  const std::string tls =
      "    tls: { cert_file: \"" + (d / "cert.pem") + "\", key_file: \"" + (d / "key.pem") + "\" }\n";
  {
    ListenEnv le(tls);
    le.start();
    auto res = le.send({"--starttls", "--cafile", d / "cert.pem", "--to", "t@example.test"});
    REQUIRE(res.size() == 1);
    INFO(res[0].dump());
    CHECK(res[0]["ok"].as_bool());
    // Plaintext pipelined behind STARTTLS is dropped, never run as a command (CVE-2011-0411).
    Json r = le.raw({"EHLO x.test\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n"});
    CHECK(r["replies"].as_string().find("220 2.0.0") != std::string::npos);
    CHECK(r["replies"].as_string().find("250 2.1.0") == std::string::npos);
    REQUIRE(le.env.sink().wait_count(1, 20s));
    auto m = le.env.sink().messages().at(0);
    CHECK(m.data.find("(using TLSv1.3 with cipher") != std::string::npos);
    CHECK(m.data.find("with ESMTPS id") != std::string::npos);
    REQUIRE(wait_until(
        [&] { return le.env.log().find("TLS connection established from") != std::string::npos; }, 5s));
    // A client that sends garbage instead of a ClientHello is dropped, and counted.
    Json g = le.raw({"EHLO x.test\r\nSTARTTLS\r\n", "this is no TLS record\r\n"});
    CHECK(g["closed"].as_bool());
    REQUIRE(wait_until(
        [&] { return status(le.env)["listeners"].as_array().at(0)["tls_failed"].as_int() >= 1; }, 10s));
    CHECK(status(le.env)["listeners"].as_array().at(0)["tls"].as_int() == 1);
    le.env.stop();
  }
  {
    ListenEnv le("    tls: { cert_file: \"" + (d / "cert.pem") + "\", key_file: \"" + (d / "key.pem") +
                 "\", implicit: true }\n");
    le.start();
    auto res = le.send({"--ssl", "--cafile", d / "cert.pem", "--to", "i@example.test"});
    REQUIRE(res.size() == 1);
    INFO(res[0].dump());
    CHECK(res[0]["ok"].as_bool());
    REQUIRE(le.env.sink().wait_count(1, 20s));
    CHECK(le.env.sink().messages().at(0).data.find("with ESMTPS id") != std::string::npos);
    le.env.stop();
  }
}

// A TLS handshake's key exchange runs on the loop thread delivery shares: a client outside
// relay_from gets tls.new_sessions_per_minute full handshakes (failed ones count too), then no
// STARTTLS (on an implicit-TLS listener: no connection) until its minute is over.
TEST_CASE("tls.new_sessions_per_minute: a client past it is not offered STARTTLS; relay_from is exempt",
          "[listener][tls][hostile]") {
  TempDir d;
  make_certificate(d.path());
  const std::string files = "cert_file: \"" + (d / "cert.pem") + "\", key_file: \"" + (d / "key.pem") + "\"";
  auto offers_starttls = [](ListenEnv& le, const char* source) {
    Json r = le.raw({"EHLO x.test\r\n", "QUIT\r\n"}, {"--source", source});
    return r["replies"].as_string().find("250-STARTTLS") != std::string::npos ||
           r["replies"].as_string().find("250 STARTTLS") != std::string::npos;
  };
  {
    ListenEnv le("    relay_from: [127.0.0.1/32]\n    tls: { " + files + ", new_sessions_per_minute: 2 }\n");
    le.start();
    CHECK(offers_starttls(le, "127.0.0.2"));
    // One handshake that completes (its recipient is refused: no relaying from there) and one
    // that fails: two of the two allowed.
    auto res = le.send(
        {"--source", "127.0.0.2", "--starttls", "--cafile", d / "cert.pem", "--to", "t@example.test"});
    REQUIRE(res.size() == 1);
    CHECK(res[0]["code"].as_int() == 554);
    Json g = le.raw({"EHLO x.test\r\nSTARTTLS\r\n", "this is no TLS record\r\n"}, {"--source", "127.0.0.2"});
    CHECK(g["closed"].as_bool());
    REQUIRE(wait_until(
        [&] { return status(le.env)["listeners"].as_array().at(0)["tls_failed"].as_int() == 1; }, 10s));
    CHECK_FALSE(offers_starttls(le, "127.0.0.2"));
    CHECK(offers_starttls(le, "127.0.0.1"));  // in relay_from: not limited
    CHECK(le.send({"--starttls", "--cafile", d / "cert.pem", "--to", "t@example.test"})[0]["ok"].as_bool());
    CHECK(le.send({"--starttls", "--cafile", d / "cert.pem", "--to", "t@example.test"})[0]["ok"].as_bool());
    Json st = status(le.env)["listeners"].as_array().at(0);
    CHECK(st["tls"].as_int() == 3);
    CHECK(st["tls_limited"].as_int() == 1);
    CHECK(le.env.log().find("localhost[127.0.0.2]: STARTTLS not offered: too many new TLS sessions from this "
                            "client (2 a minute)") != std::string::npos);
    le.env.stop();
  }
  {
    ListenEnv le("    relay_from: [127.0.0.1/32]\n    tls: { " + files +
                 ", implicit: true, new_sessions_per_minute: 1 }\n");
    le.start();
    auto res =
        le.send({"--source", "127.0.0.2", "--ssl", "--cafile", d / "cert.pem", "--to", "t@example.test"});
    REQUIRE(res.size() == 1);
    CHECK(res[0]["code"].as_int() == 554);
    Json r = le.raw({}, {"--source", "127.0.0.2", "--wait", "2"});
    CHECK(r["closed"].as_bool());
    CHECK(r["replies"].as_string().empty());
    CHECK(le.env.log().find("localhost[127.0.0.2]: refused: too many new TLS sessions") != std::string::npos);
    le.env.stop();
  }
}

TEST_CASE("what the pickup would refuse is refused at the dot, never acknowledged", "[listener]") {
  ListenEnv le;
  le.start();
  // A NUL in the header section: the drop parser refuses it, so the listener must not say 250.
  std::string head = "EHLO c.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n";
  Json r = le.raw({head, std::string("Subject: nul\0here\r\n\r\nbody\r\n.\r\n", 30), "QUIT\r\n"});
  std::string replies = r["replies"].as_string();
  INFO(replies);
  CHECK(replies.find("554 5.6.0") != std::string::npos);
  CHECK(replies.find("queued as") == std::string::npos);
  std::this_thread::sleep_for(500ms);
  CHECK(le.env.entries("bad").empty());
  CHECK(le.env.entries("incoming").empty());
  CHECK(le.env.log().find("NOQUEUE: reject: END-OF-MESSAGE") != std::string::npos);
  le.env.stop();
}

TEST_CASE("DSN parameters from the client are kept in the entry of a deferred message", "[listener][dsn]") {
  // A route to a port nobody listens on: the message is deferred and its entry must say what the
  // client asked for (RFC 3461: RET, ENVID, NOTIFY, ORCPT), for the bounce writer and the next hop.
  int dead = free_port();
  ListenEnv le("", "routes:\n  - { match: [\"*\"], hosts: [\"127.0.0.1:" + std::to_string(dead) + "\"] }\n");
  le.start();
  auto res =
      le.send({"--to", "someone@example.test", "--mail-opt", "RET=HDRS", "--mail-opt", "ENVID=abc+2Bdef",
               "--rcpt-opt", "NOTIFY=FAILURE,DELAY", "--rcpt-opt", "ORCPT=rfc822;Someone+40example.test"});
  REQUIRE(res.size() == 1);
  INFO(res[0].dump());
  REQUIRE(res[0]["ok"].as_bool());
  std::string id = queue_id(res[0]["reply"].as_string());
  REQUIRE(wait_until(
      [&] { return le.env.log().find(id + ": to=<someone@example.test>") != std::string::npos; }, 20s));
  Run r = run(le.env.dir(),
              {listener::ctl_binary("spoolctl"), "--config", le.env.config_path(), "show", id, "--json"});
  INFO(r.out + r.err);
  REQUIRE(r.status == 0);
  auto j = Json::parse(r.out);
  REQUIRE(j.ok());
  const Json& m = (*j)["message"];
  CHECK(m["place"].as_string() == "queue");
  CHECK(m["ret"].as_string() == "HDRS");
  CHECK(m["envid"].as_string() == "abc+def");
  REQUIRE(m["recipients"].as_array().size() == 1);
  CHECK(m["recipients"].as_array()[0]["state"].as_string() == "pending");
  CHECK(m["recipients"].as_array()[0]["notify"].as_string() == "FAILURE,DELAY");
  CHECK(m["recipients"].as_array()[0]["orcpt"].as_string() == "rfc822;Someone@example.test");

  // A parameter the RFC forbids is refused at its command, and nothing is stored for it.
  auto bad = le.send({"--to", "other@example.test", "--rcpt-opt", "NOTIFY=NEVER,FAILURE"});
  REQUIRE(bad.size() == 1);
  CHECK(bad[0]["code"].as_int() == 501);
  le.env.stop();
}

TEST_CASE("SMTPUTF8: a UTF-8 address is stored and delivered; its domain goes out as an A-label",
          "[listener][smtputf8]") {
  const std::string juergen =
      "j\xc3\xbcrgen@b\xc3\xbc"
      "cher.example";  // jürgen@bücher.example
  const std::string ann =
      "ann@b\xc3\xbc"
      "cher.example";
  SECTION("the next hop offers SMTPUTF8") {
    ListenEnv le;
    le.start();
    auto res = le.send({"--to", juergen, "--from", "app@client.test", "--mail-opt", "SMTPUTF8"});
    REQUIRE(res.size() == 1);
    INFO(res[0].dump());
    REQUIRE(res[0]["ok"].as_bool());
    REQUIRE(le.env.sink().wait_count(1, 20s));
    auto m = le.env.sink().messages().at(0);
    INFO(m.meta.dump());
    REQUIRE(m.meta["rcpts"].as_array().size() == 1);
    CHECK(m.meta["rcpts"].as_array()[0].as_string() == "j\xc3\xbcrgen@xn--bcher-kva.example");
    bool utf8 = false;
    for (const auto& o : m.meta["mail_options"].as_array()) utf8 |= o.as_string() == "SMTPUTF8";
    CHECK(utf8);
    // The log keeps the address as the client gave it.
    std::string id = queue_id(res[0]["reply"].as_string());
    REQUIRE(wait_until([&] { return le.env.log().find(id + ": to=<" + juergen + ">") != std::string::npos; },
                       10s));
    le.env.stop();
  }
  SECTION("the next hop does not: an ASCII local part still goes, a UTF-8 one bounces 5.6.7") {
    ListenEnv le("", "", {"--no-smtputf8"});
    le.start();
    auto a = le.send({"--to", ann, "--mail-opt", "SMTPUTF8"});
    REQUIRE(a.size() == 1);
    REQUIRE(a[0]["ok"].as_bool());
    REQUIRE(le.env.sink().wait_count(1, 20s));
    auto m = le.env.sink().messages().at(0);
    INFO(m.meta.dump());
    CHECK(m.meta["rcpts"].as_array().at(0).as_string() == "ann@xn--bcher-kva.example");
    for (const auto& o : m.meta["mail_options"].as_array()) CHECK(o.as_string() != "SMTPUTF8");

    auto j = le.send({"--to", juergen, "--mail-opt", "SMTPUTF8"});
    REQUIRE(j.size() == 1);
    REQUIRE(j[0]["ok"].as_bool());
    std::string id = queue_id(j[0]["reply"].as_string());
    REQUIRE(wait_until([&] { return le.env.log().find(id + ": to=<" + juergen + ">") != std::string::npos; },
                       20s));
    std::string log = le.env.log();
    INFO(log);
    CHECK(log.find("dsn=5.6.7, status=bounced") != std::string::npos);
    // The bounce to app@client.test may reach the sink; the message itself never does.
    for (const auto& msg : le.env.sink().messages())
      for (const auto& r : msg.meta["rcpts"].as_array())
        CHECK(r.as_string().find("j\xc3\xbcrgen") == std::string::npos);
    le.env.stop();
  }
  SECTION("without SMTPUTF8 on MAIL a UTF-8 address is refused with 553 5.6.7") {
    ListenEnv le;
    le.start();
    Json r = le.raw({"EHLO c.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<" + juergen + ">\r\nQUIT\r\n"});
    INFO(r["replies"].as_string());
    CHECK(r["replies"].as_string().find("553 5.6.7") != std::string::npos);
    le.env.stop();
  }
}
