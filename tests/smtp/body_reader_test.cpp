// tests/smtp/body_reader_test.cpp — the DATA body is read in chunks of at most 64 KiB, from the
// entry's offset, and the end is reported together with the last bytes (so the final dot can join
// them in one write) without ever cutting a message short.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "smtp/body_reader.h"
#include "tests/support/fixtures.h"

using namespace spoold::smtp;
using namespace spoold::test;

namespace {

constexpr std::size_t kChunk = BodyReader::kChunk;

struct File {
  TempDir dir;
  int fd = -1;
  explicit File(const std::string& content) {
    write_file(dir / "entry", content);
    fd = ::open((dir / "entry").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
  }
  ~File() { ::close(fd); }
};

std::string pattern(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<char>('a' + i % 26);
  return s;
}

}  // namespace

TEST_CASE("a body shorter than two chunks: the second piece carries the end", "[body_reader]") {
  std::string envelope = "MAIL FROM:<a@b>\nRCPT TO:<c@d>\n\n";
  std::string message = pattern(100 * 1024);
  File f(envelope + message);
  BodyReader r;
  r.start(BodySource{f.fd, envelope.size(), ""});
  ::close(f.fd);  // the reader has its own copy
  f.fd = -1;
  auto p1 = r.next();
  REQUIRE(p1);
  CHECK(p1->bytes.size() == kChunk);
  CHECK(!p1->last);
  std::string got(p1->bytes);
  auto p2 = r.next();
  REQUIRE(p2);
  CHECK(p2->bytes.size() == message.size() - kChunk);
  CHECK(p2->last);  // not an empty third piece: the dot can follow these bytes at once
  got += p2->bytes;
  CHECK(got == message);
}

TEST_CASE("a body of exactly one chunk, an empty body, and rewinding for the next transaction",
          "[body_reader]") {
  File f("ENV\n\n" + pattern(kChunk));
  BodyReader r;
  r.start(BodySource{f.fd, 5, ""});
  auto p1 = r.next();
  REQUIRE(p1);
  CHECK(p1->bytes.size() == kChunk);
  CHECK(!p1->last);  // a full read says nothing about the end
  auto p2 = r.next();
  REQUIRE(p2);
  CHECK(p2->bytes.empty());
  CHECK(p2->last);
  r.rewind();  // a further SMTP transaction (envelope_limit, 452) sends the same body again
  auto again = r.next();
  REQUIRE(again);
  CHECK(again->bytes == p1->bytes);

  File empty("ENV\n\n");
  r.start(BodySource{empty.fd, 5, ""});
  auto e = r.next();
  REQUIRE(e);
  CHECK(e->bytes.empty());
  CHECK(e->last);
}

TEST_CASE("an in-memory body is sliced the same way", "[body_reader]") {
  std::string data = pattern(2 * kChunk + 10);
  BodyReader r;
  r.start(BodySource{-1, 0, data});
  std::string got;
  int pieces = 0;
  for (;;) {
    auto p = r.next();
    REQUIRE(p);
    ++pieces;
    got += p->bytes;
    if (p->last) break;
    REQUIRE(pieces < 10);
  }
  CHECK(pieces == 3);
  CHECK(got == data);
  r.start(BodySource{-1, 0, ""});
  auto e = r.next();
  REQUIRE(e);
  CHECK(e->bytes.empty());
  CHECK(e->last);
}

TEST_CASE("the chunk buffer is allocated once and serves every message", "[body_reader]") {
  File a("x" + pattern(1000)), b(pattern(70 * 1024));
  BodyReader r;
  r.start(BodySource{a.fd, 1, ""});
  auto p = r.next();
  REQUIRE(p);
  const char* buffer = p->bytes.data();
  r.stop();
  r.start(BodySource{b.fd, 0, ""});
  auto q = r.next();
  REQUIRE(q);
  CHECK(q->bytes.data() == buffer);
}

TEST_CASE("an unreadable body is an error, not an empty message", "[body_reader]") {
  BodyReader r;
  r.start(BodySource{987654, 0, ""});  // no such descriptor: the dup fails
  auto p = r.next();
  REQUIRE(!p);
  CHECK(p.error().message.find("reading the message failed") == 0);

  TempDir d;
  ::mkdir((d / "dir").c_str(), 0700);
  int dirfd = ::open((d / "dir").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dirfd >= 0);
  r.start(BodySource{dirfd, 0, ""});  // pread on a directory: EISDIR
  ::close(dirfd);
  auto q = r.next();
  REQUIRE(!q);
  CHECK(q.error().message.find("reading the message failed") == 0);
}
