// tests/common/uv_handle_test.cpp — the libuv handle idiom of common/uv_handle.h and
// common/uv_stream.h on a real loop: callbacks run, an owner may die inside its own callback, a
// handle destroyed before the loop ran again is freed by its close callback (under ASan a leak or
// a late callback would fail), and each handle kind does its one job.
// Rule: every wait is bounded (Loop::run_until); every test ends with a loop that closes cleanly.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "common/uv_handle.h"
#include "common/uv_stream.h"
#include "tests/support/fixtures.h"

using namespace spoold;
using namespace std::chrono_literals;

namespace {

class Loop {
 public:
  Loop() { uv_loop_init(&loop_); }
  ~Loop() {
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until pred() holds or `timeout` passed; returns pred().
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
    uv::Timer guard(&loop_);
    bool expired = false;
    guard.start(static_cast<std::uint64_t>(timeout.count()), 0, [&] { expired = true; });
    while (!pred() && !expired) uv_run(&loop_, UV_RUN_ONCE);
    return pred();
  }
  // Runs what is left (close callbacks above all); true when the loop then closes: no handle and
  // no request is left, none leaked, none open.
  bool drain() {
    uv_run(&loop_, UV_RUN_DEFAULT);
    return uv_loop_close(&loop_) == 0 && uv_loop_init(&loop_) == 0;
  }
  int handles() {
    int n = 0;
    uv_walk(
        &loop_, [](uv_handle_t*, void* arg) { ++*static_cast<int*>(arg); }, &n);
    return n;
  }

 private:
  uv_loop_t loop_{};
};

struct SocketPair {
  int fds[2] = {-1, -1};
  SocketPair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0); }
};

}  // namespace

TEST_CASE("uv::Timer fires, repeats, and may restart itself with another callback", "[common][uv]") {
  Loop loop;
  uv::Timer timer(loop.get());
  int first = 0, second = 0;
  timer.start(1, 1, [&] {
    if (++first == 3) timer.start(1, 0, [&] { ++second; });  // replaces the running callback
  });
  CHECK(timer.active());
  REQUIRE(loop.run_until([&] { return second == 1; }));
  CHECK(first == 3);
  CHECK_FALSE(timer.active());
  timer.close();
  CHECK(loop.drain());
}

TEST_CASE("uv::Timer: an owner destroyed inside its own callback", "[common][uv]") {
  Loop loop;
  struct Owner {
    explicit Owner(uv_loop_t* l) : timer(l) {}
    uv::Timer timer;
    std::string name = std::string(100, 'x');  // heap memory ASan watches
  };
  auto owner = std::make_unique<Owner>(loop.get());
  int calls = 0;
  owner->timer.start(0, 1, [&] {  // repeating: only the close stops it
    ++calls;
    owner.reset();
  });
  uv_run(loop.get(), UV_RUN_DEFAULT);  // returns once the closed timer is freed
  CHECK(calls == 1);
  CHECK(loop.drain());
}

TEST_CASE("uv handles destroyed before the loop ran their close callbacks", "[common][uv]") {
  Loop loop;
  bool fired = false;
  {
    uv::Timer timer(loop.get());
    timer.start(0, 0, [&] { fired = true; });
    uv::Poll poll;  // empty handles close as nothing
    uv::Pipe pipe(loop.get());
    uv::FsEvent watch(loop.get());
    uv::Timer moved = std::move(timer);  // the block moves, the moved-from one is empty
  }
  CHECK(loop.handles() == 3);  // closing, their memory still held for libuv
  CHECK(uv_loop_alive(loop.get()));
  CHECK(loop.drain());
  CHECK_FALSE(fired);
}

TEST_CASE("uv::Signal is delivered by raise()", "[common][uv]") {
  Loop loop;
  int got = 0;
  std::unique_ptr<uv::Signal> watch;
  watch = std::make_unique<uv::Signal>(loop.get(), SIGUSR1, [&](int signum) {
    got = signum;
    watch.reset();  // destroyed inside its callback
  });
  REQUIRE(watch->error() == 0);
  REQUIRE(std::raise(SIGUSR1) == 0);
  REQUIRE(loop.run_until([&] { return got != 0; }));
  CHECK(got == SIGUSR1);
  CHECK(watch == nullptr);
  CHECK(loop.drain());
}

TEST_CASE("uv::FsEvent sees a file created in a directory", "[common][uv]") {
  Loop loop;
  test::TempDir dir;
  uv::FsEvent watch(loop.get());
  CHECK(watch.start(dir / "missing", [](std::string_view, int, int) {}) == UV_ENOENT);
  std::vector<std::string> names;
  REQUIRE(watch.start(dir.path(), [&](std::string_view name, int, int status) {
    if (status == 0) names.emplace_back(name);
  }) == 0);
  test::write_file(dir / "drop", "x");
  REQUIRE(loop.run_until([&] { return std::find(names.begin(), names.end(), "drop") != names.end(); }));
  watch.close();
  CHECK(loop.drain());
}

TEST_CASE("uv::Poll reports a readable socket", "[common][uv]") {
  Loop loop;
  SocketPair sp;
  UniqueFd a(sp.fds[0]), b(sp.fds[1]);
  uv::Poll poll(loop.get(), sp.fds[1]);
  REQUIRE(poll.error() == 0);
  int events = 0;
  REQUIRE(poll.start(UV_READABLE, [&](int status, int ev) {
    if (status == 0) events |= ev;
    poll.stop();
  }) == 0);
  REQUIRE(::write(sp.fds[0], "x", 1) == 1);
  REQUIRE(loop.run_until([&] { return events != 0; }));
  CHECK(events == UV_READABLE);
  poll.close();  // before the socket closes: a Poll never watches a closed fd
  CHECK(loop.drain());
  CHECK(uv::Poll(loop.get(), -1).error() != 0);
  CHECK(loop.drain());
}

TEST_CASE("uv::Pipe pair: write with completion, read, EOF", "[common][uv]") {
  Loop loop;
  SocketPair sp;
  uv::Pipe a(loop.get()), b(loop.get());
  REQUIRE(a.open(sp.fds[0]) == 0);  // the pipes own the fds now
  REQUIRE(b.open(sp.fds[1]) == 0);
  std::string got;
  bool eof = false;
  REQUIRE(b.read_start(4, [&](int status, std::string_view bytes) {  // a small buffer: many reads
    if (status == UV_EOF) eof = true;
    got += bytes;
  }) == 0);
  int write_status = 1;
  uv::Pieces back;
  REQUIRE(a.write({"hello ", "world"}, [&](int status, uv::Pieces written) {
    write_status = status;
    back = std::move(written);
    a.close();  // inside its own callback; the peer reads EOF
  }) == 0);
  REQUIRE(loop.run_until([&] { return eof; }));
  CHECK(got == "hello world");
  CHECK(write_status == 0);
  CHECK(back == uv::Pieces{"hello ", "world"});
  CHECK(a.write({"late"}) == UV_EBADF);  // closed: nothing to write on
  b.close();
  CHECK(loop.drain());
}

TEST_CASE("uv::Pipe: a reader destroyed in its read callback, a writer with writes pending", "[common][uv]") {
  Loop loop;
  SocketPair sp;
  auto reader = std::make_unique<uv::Pipe>(loop.get());
  auto writer = std::make_unique<uv::Pipe>(loop.get());
  REQUIRE(reader->open(sp.fds[1]) == 0);
  REQUIRE(writer->open(sp.fds[0]) == 0);
  int reads = 0;
  REQUIRE(reader->read_start(16, [&](int, std::string_view) {
    ++reads;
    reader.reset();  // more bytes wait: libuv must not read them into the freed owner
  }) == 0);
  REQUIRE(writer->write({std::string(1000, 'a')}) == 0);
  REQUIRE(loop.run_until([&] { return reader == nullptr; }));
  CHECK(reads == 1);

  // A peer that never reads: most of 8 MiB stays queued in the writer, then the writer goes. The
  // write is cancelled and its request freed at the close; its completion must not run.
  SocketPair quiet;
  UniqueFd peer(quiet.fds[1]);
  writer = std::make_unique<uv::Pipe>(loop.get());
  REQUIRE(writer->open(quiet.fds[0]) == 0);
  bool done_ran = false;
  REQUIRE(writer->write({std::string(8 << 20, 'b')}, [&](int, const uv::Pieces&) { done_ran = true; }) == 0);
  CHECK(writer->queued_bytes() > 0);
  writer.reset();
  CHECK(loop.drain());
  CHECK_FALSE(done_ran);
}

TEST_CASE("uv::Pipe listens on a unix socket and accepts", "[common][uv]") {
  Loop loop;
  test::TempDir dir;
  const std::string path = dir / "sock";
  uv::Pipe server(loop.get());
  REQUIRE(server.bind(path) == 0);
  std::vector<uv::Pipe> accepted;
  bool written = false;
  REQUIRE(server.listen(4, [&](int status) {
    if (status != 0) return;
    uv::Pipe c(loop.get());
    if (server.accept(c) != 0) return;
    c.write({"hi\n"}, [&](int st, const uv::Pieces&) { written = st == 0; });
    accepted.push_back(std::move(c));  // moved: the block, the pending write and all
  }) == 0);
  UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  path.copy(sa.sun_path, sizeof sa.sun_path - 1);
  REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(loop.run_until([&] { return written; }));
  CHECK(accepted.size() == 1);
  char buf[8] = {};
  CHECK(::read(client.get(), buf, sizeof buf) == 3);
  CHECK(std::string(buf) == "hi\n");
  accepted.clear();
  server.close();
  CHECK(loop.drain());
}

TEST_CASE("uv::run_in_pool runs work on the pool, then done on the loop", "[common][uv]") {
  Loop loop;
  auto loop_thread = std::this_thread::get_id();
  std::thread::id work_thread, done_thread;
  REQUIRE(uv::run_in_pool(
              loop.get(), [&] { work_thread = std::this_thread::get_id(); },
              [&] { done_thread = std::this_thread::get_id(); }) == 0);
  CHECK(loop.drain());
  CHECK(work_thread != loop_thread);
  CHECK(done_thread == loop_thread);
}
