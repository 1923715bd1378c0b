// tests/reliability/hostile_drop_test.cpp — guarantee 5 for drop files: junk, oversize (sparse
// 1 GB), a header without end, CR/LF/NUL in addresses, symlinks, hard links, FIFOs and a file still
// being written (a dot-file) next to a good message. spoold --once must finish on time, deliver the
// good one, move every bad one to bad/ with a reason (or leave it alone when it is not a regular
// file it owns), and never crash or block.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "tests/reliability/rel_util.h"

using namespace spoold::test;
using namespace std::chrono_literals;

TEST_CASE("hostile drop files go to bad/ with a reason or are ignored; the daemon never blocks",
          "[hostile][drop]") {
  Env env(
      "queue:\n  scan_interval: 200ms\n  max_message_size: 1MB\n  tiers:\n    - { delay: 0, priority: 1 }\n");
  std::string in = env.spool() + "/incoming/";
  env.drop("good", rel::message("good@drop.test", "sender@r.test", {"rcpt@r.test"}));
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk += static_cast<char>((i * 7919) & 0xff);
  env.drop("junk", junk);
  env.drop("no-header-end",
           "MAIL FROM:<a@r.test>\nRCPT TO:<b@r.test>\n\nSubject: x\nX-A: " + std::string(200000, 'a'));
  env.drop("crlf-rcpt",
           std::string(
               "MAIL FROM:<a@r.test>\nRCPT TO:<b\r\nRCPT TO:<evil@r.test>@r.test>\n\nSubject: x\n\nbody\n"));
  env.drop("nul-rcpt",
           std::string("MAIL FROM:<a@r.test>\nRCPT TO:<b\0c@r.test>\n\nSubject: x\n\nbody\n", 59));
  env.drop("no-rcpt", "Subject: nobody\n\nbody\n");
  {  // sparse 1 GB file, well over max_message_size
    std::string tmp = env.spool() + "/tmp/sparse";
    int fd = ::open(tmp.c_str(), O_CREAT | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, "MAIL FROM:<a@r.test>\nRCPT TO:<b@r.test>\n\n", 41, 0) == 41);
    REQUIRE(::ftruncate(fd, 1ll << 30) == 0);
    ::close(fd);
    REQUIRE(::rename(tmp.c_str(), (in + "sparse").c_str()) == 0);
  }
  write_file(env.dir() / "outside", rel::message("outside@drop.test", "sender@r.test", {"rcpt@r.test"}));
  REQUIRE(::symlink((env.dir() / "outside").c_str(), (in + "symlink").c_str()) == 0);
  write_file(env.dir() / "linked", rel::message("linked@drop.test", "sender@r.test", {"rcpt@r.test"}));
  REQUIRE(::link((env.dir() / "linked").c_str(), (in + "hardlink").c_str()) == 0);
  REQUIRE(::mkfifo((in + "fifo").c_str(), 0600) == 0);
  write_file(in + ".being-written", "MAIL FROM:<a@r.test>\nRCPT");

  auto t0 = std::chrono::steady_clock::now();
  int st = env.run_once(60s);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(env.log() << "\nspool:\n" << rel::join(rel::spool_files(env.spool()), "\n"));
  REQUIRE(st == 0);  // no crash, no hang (the FIFO is never opened for a blocking read)
  CHECK(took < 30);
  auto counts = rel::message_id_counts(env.sink());
  CHECK(counts["good@drop.test"] == 1);
  CHECK(counts["outside@drop.test"] == 0);  // a symlink is never followed out of the spool
  // Every bad file is in bad/ with a reason; nothing junk-like stays in incoming/.
  for (const char* name : {"junk", "no-header-end", "crlf-rcpt", "nul-rcpt", "no-rcpt", "sparse"}) {
    INFO("drop file " << name);
    CHECK(::access((env.spool() + "/bad/" + name).c_str(), F_OK) == 0);
    CHECK(read_file(env.spool() + "/bad/" + name + ".reason").size() > 0);
  }
  // The unfinished dot-file is not touched.
  CHECK(read_file(in + ".being-written") == "MAIL FROM:<a@r.test>\nRCPT");
  // No recipient with CR, LF or NUL reached the wire.
  for (const auto& m : env.sink().messages())
    for (const auto& r : m.meta["rcpts"].as_array()) {
      std::string a = r.as_string();
      CHECK(a.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    }
  // Symlink, hard link and FIFO are refused (moved whole to bad/ with a reason), never followed or read.
  for (const char* name : {"symlink", "hardlink", "fifo"}) {
    INFO("special file " << name);
    CHECK(read_file(env.spool() + "/bad/" + name + ".reason").size() > 0);
  }
  CHECK(counts["linked@drop.test"] == 0);
  // The file a symlink pointed at is untouched.
  CHECK(read_file(env.dir() / "outside").find("outside@drop.test") != std::string::npos);
}

// 100,000 recipients: over the parser's caps (spool/drop.h DropLimits: 10,000 recipients, 256 KB
// for one unfolded address header) in either drop format, and one address repeated 40,000 times
// (de-duplicated in linear time: one recipient). The capped files go to bad/ saying why; nothing
// blocks the good message.
TEST_CASE("100,000 recipients go to bad/ with a reason; repeated addresses are one recipient",
          "[hostile][drop]") {
  Env env("queue:\n  scan_interval: 200ms\n  tiers:\n    - { delay: 0, priority: 1 }\n");
  env.drop("good", rel::message("good@many.test", "sender@r.test", {"rcpt@r.test"}));
  std::string envelope = "MAIL FROM:<a@r.test>\n";
  std::string to = "To: ";
  for (int i = 0; i < 100000; ++i) {
    envelope += fmt::format("RCPT TO:<u{}@r.test>\n", i);
    to += fmt::format("{}u{}@r.test", i ? ",\n " : "", i);
  }
  env.drop("envelope-100k", envelope + "\nSubject: many\n\nbody\n");
  env.drop("header-100k", "From: a@r.test\n" + to + "\nSubject: many\n\nbody\n");
  std::string repeated = "MAIL FROM:<a@r.test>\n";
  for (int i = 0; i < 40000; ++i) repeated += "RCPT TO:<rcpt@r.test>\n";
  env.drop("repeated", repeated + "\nMessage-ID: <repeated@many.test>\nSubject: one rcpt\n\nbody\n");

  auto t0 = std::chrono::steady_clock::now();
  int st = env.run_once(60s);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(env.log() << "\nspool:\n" << rel::join(rel::spool_files(env.spool()), "\n"));
  REQUIRE(st == 0);
  CHECK(took < 30);
  auto counts = rel::message_id_counts(env.sink());
  CHECK(counts["good@many.test"] == 1);
  CHECK(counts["repeated@many.test"] == 1);
  for (const auto& m : env.sink().messages())
    if (rel::message_id(m.data) == "repeated@many.test") CHECK(m.meta["rcpts"].as_array().size() == 1);
  CHECK(read_file(env.spool() + "/bad/envelope-100k.reason").find("more than 10000 recipients") !=
        std::string::npos);
  CHECK(read_file(env.spool() + "/bad/header-100k.reason").find("to: header longer than 262144 bytes") !=
        std::string::npos);
  CHECK(::access((env.spool() + "/bad/envelope-100k").c_str(), F_OK) == 0);
  CHECK(::access((env.spool() + "/bad/header-100k").c_str(), F_OK) == 0);
  CHECK(rel::leftovers(env.spool()).size() == 4);  // the two bad files and their reasons
}
