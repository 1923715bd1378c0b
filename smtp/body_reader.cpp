// smtp/body_reader.cpp — see body_reader.h. A regular file returns fewer bytes than asked only at
// its end; a 1-byte probe confirms that (and a file that turns out longer is simply read on), so
// the "last" flag never cuts a message short.
#include "smtp/body_reader.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace spoold::smtp {

void BodyReader::start(BodySource source) {
  source_ = std::move(source);
  pos_ = source_.offset;
  fd_.reset();
  dup_errno_ = 0;
  if (source_.fd < 0) return;
  fd_ = UniqueFd(::fcntl(source_.fd, F_DUPFD_CLOEXEC, 0));
  if (fd_.get() < 0) dup_errno_ = errno;
  if (!buf_) buf_ = std::make_unique_for_overwrite<char[]>(kChunk);
}

void BodyReader::stop() {
  source_ = BodySource{};
  fd_.reset();
  dup_errno_ = 0;
  pos_ = 0;
}

Result<BodyReader::Piece> BodyReader::next() {
  if (source_.fd < 0) {
    std::string_view rest =
        std::string_view(source_.data).substr(std::min<std::size_t>(pos_, source_.data.size()));
    rest = rest.substr(0, kChunk);
    pos_ += rest.size();
    return Piece{rest, pos_ >= source_.data.size()};
  }
  auto failed = [](int err) {
    return make_error(fmt::format("reading the message failed: {}", std::strerror(err)), err);
  };
  if (fd_.get() < 0) return failed(dup_errno_ ? dup_errno_ : EBADF);
  ssize_t n;
  do n = ::pread(fd_.get(), buf_.get(), kChunk, static_cast<off_t>(pos_));
  while (n < 0 && errno == EINTR);
  if (n < 0) return failed(errno);
  pos_ += static_cast<std::uint64_t>(n);
  Piece piece{std::string_view(buf_.get(), static_cast<std::size_t>(n)), n == 0};
  if (n > 0 && static_cast<std::size_t>(n) < kChunk) {
    char probe;
    ssize_t p;
    do p = ::pread(fd_.get(), &probe, 1, static_cast<off_t>(pos_));
    while (p < 0 && errno == EINTR);
    piece.last = p == 0;  // p == 1: the file goes on (read on next time); p < 0: next() reports it
  }
  return piece;
}

}  // namespace spoold::smtp
