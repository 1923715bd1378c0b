// tests/reliability/full_disk_test.cpp — guarantee 5, full disk: the spool on a 2 MB tmpfs. Drop
// messages, fill the file system, run spoold, then free the space and run again: nothing lost or
// half-written, a clear log line naming the cause, full recovery. Needs mount(2) (root in a
// mount namespace that allows tmpfs); otherwise it says so and skips.
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <thread>

#include "tests/reliability/rel_util.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

struct Mount {
  std::string at;
  bool ok = false;
  explicit Mount(const std::string& dir) : at(dir) {
    ::mkdir(dir.c_str(), 0700);
    ok = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=2m,mode=0700") == 0;
  }
  ~Mount() {
    if (ok) ::umount2(at.c_str(), MNT_DETACH);
  }
};

// Fills the file system holding `path` with one file; returns the bytes written.
size_t fill(const std::string& path) {
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) return 0;
  std::string block(4096, 'F');
  size_t n = 0;
  while (::write(fd, block.data(), block.size()) > 0) n += block.size();
  ::fsync(fd);
  ::close(fd);
  return n;
}

}  // namespace

TEST_CASE("a full spool file system loses nothing and recovers when space returns", "[hostile][disk]") {
  Env env;
  Mount m(env.spool());
  if (!m.ok) {
    WARN("SKIPPED: cannot mount a tmpfs for the spool (" << std::strerror(errno)
                                                         << "); the full-disk test needs mount(2)");
    return;
  }
  constexpr int kMessages = 30;
  std::string body;
  for (int l = 0; l < 128; ++l) body += std::string(63, 'b') + "\n";  // 8 KB in SMTP-sized lines
  for (int i = 0; i < kMessages; ++i)
    env.drop("d" + std::to_string(i), rel::message("disk-" + std::to_string(i) + "@disk.test",
                                                   "sender@r.test", {"rcpt@r.test"}, body));
  std::string filler = env.spool() + "/filler";
  REQUIRE(fill(filler) > 0);

  // spoold may refuse to start on a full spool (it writes at start-up; exit 1 with the reason) or
  // start and defer; either way it must not crash, hang, or harm a drop file.
  int st = env.run_once(60s);
  INFO(env.log());
  CHECK((st == 0 || st == 1));
  // Every message is somewhere: delivered, still in incoming/, or queued.
  size_t delivered = env.sink().count();
  size_t waiting = env.entries("incoming").size();
  for (int t = 0; t < 3; ++t) waiting += env.entries("queue/" + std::to_string(t)).size();
  CHECK(delivered + waiting >= static_cast<size_t>(kMessages));
  CHECK(env.entries("bad").empty());  // a full disk never makes a good drop "bad"
  bool clear = env.log().find("No space left on device") != std::string::npos || delivered == kMessages;
  CHECK(clear);

  ::unlink(filler.c_str());
  for (int round = 0; round < 5 && env.sink().count() < static_cast<size_t>(kMessages); ++round) {
    std::this_thread::sleep_for(1s);
    REQUIRE(env.run_once(60s) == 0);
  }
  auto counts = rel::message_id_counts(env.sink());
  for (int i = 0; i < kMessages; ++i) {
    std::string mid = "disk-" + std::to_string(i) + "@disk.test";
    INFO(mid);
    CHECK(counts[mid] >= 1);
  }
  // No half-written message reached the sink: every body arrived whole.
  for (const auto& msg : env.sink().messages()) CHECK(msg.data.size() >= body.size());
  INFO("leftovers: " << rel::join(rel::leftovers(env.spool())));
  auto left = rel::leftovers(env.spool());
  left.erase(
      std::remove_if(left.begin(), left.end(), [](const std::string& f) { return f.rfind("tmp/", 0) == 0; }),
      left.end());
  CHECK(left.empty());
}
