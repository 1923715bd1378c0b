// smtp/body_reader.h — the stored message for DATA, read in bounded chunks on the loop thread.
// Rule: memory is one chunk, allocated once per reader (a session keeps one reader for all its
// transactions); the end of the message is reported together with its last bytes whenever a read
// shows it (a short read, confirmed by a 1-byte probe), so the transport can send the final dot in
// the same write as the last chunk instead of a lone 3-byte write one loop round later.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace spoold::smtp {

// Where the stored message is: `fd` from `offset` to its end. While sending, it is read with pread
// in 64 KiB chunks on the loop thread (a local file, one chunk per completed write); the scan that
// fills an unset Transaction::body_info reads the whole file on the libuv thread pool instead.
// The session dup()s fd, so the caller may close its own copy at once. With fd < 0, `data` holds
// the message instead.
struct BodySource {
  int fd = -1;
  std::uint64_t offset = 0;
  std::string data;
};

class BodyReader {
 public:
  static constexpr std::size_t kChunk = 64 * 1024;

  // Starts on a new message; dup()s source.fd (a failed dup shows as an error from next()).
  void start(BodySource source);
  // Back to the start of the message: each SMTP transaction of one submit() sends it again.
  void rewind() { pos_ = source_.offset; }
  // Forgets the message (closes the dup, drops in-memory data); the chunk buffer stays for reuse.
  void stop();
  // The dup()ed descriptor of the message, -1 for an in-memory body.
  int fd() const { return fd_.get(); }
  std::uint64_t offset() const { return source_.offset; }

  struct Piece {
    std::string_view bytes;  // at most kChunk; valid until the next call
    bool last = false;       // nothing follows: the message ends after `bytes`
  };
  // The next piece of the message. An error (the file cannot be read) ends the message.
  Result<Piece> next();

 private:
  BodySource source_;
  UniqueFd fd_;
  int dup_errno_ = 0;
  std::uint64_t pos_ = 0;
  std::unique_ptr<char[]> buf_;
};

}  // namespace spoold::smtp
