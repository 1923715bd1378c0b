// spool/atomic_write.cpp — see atomic_write.h. Every durable write in the spool goes through
// TempFile::commit(); crash points sit between its steps so tests can interrupt each one.
#include "spool/atomic_write.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_NOREPLACE
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "spool/crashpoint.h"

namespace spoold::spool {

namespace {

Error errno_error(std::string_view what, const std::string& path, int err = errno) {
  return make_error(fmt::format("{} {}: {}", what, path, std::strerror(err)), err);
}

std::string parent_dir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::string unique_suffix() {
  // A process-wide counter is the only shared state; atomic, so thread-pool callers need no lock.
  static std::atomic<unsigned long> counter{0};
  return fmt::format("{:x}.{:x}", static_cast<long>(::getpid()), counter.fetch_add(1));
}

Result<TempFile> TempFile::create(const std::string& dir) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    std::string path = fmt::format("{}/t.{}.tmp", dir, unique_suffix());
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) return TempFile(Fd(fd), std::move(path));
    if (errno != EEXIST) return errno_error("create", path);
  }
  return make_error("create temporary file in " + dir + ": too many collisions");
}

TempFile::TempFile(TempFile&& o) noexcept
    : fd_(std::move(o.fd_)), path_(std::move(o.path_)), committed_(o.committed_) {
  o.committed_ = true;  // the moved-from guard owns nothing
}

TempFile::~TempFile() {
  if (!committed_ && !path_.empty()) ::unlink(path_.c_str());
}

Result<void> TempFile::write(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write", path_);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<void> TempFile::commit(const std::string& target) {
  if (::fsync(fd_.get()) != 0) return errno_error("fsync", path_);
  crashpoint("atomic.after_fsync");
  fd_.reset();
  if (::rename(path_.c_str(), target.c_str()) != 0) return errno_error("rename to " + target, path_);
  committed_ = true;
  crashpoint("atomic.after_rename");
  return fsync_dir(parent_dir(target));
}

Result<void> TempFile::sync() {
  if (!fd_.valid()) return {};
  if (::fsync(fd_.get()) != 0) return errno_error("fsync", path_);
  fd_.reset();
  return {};
}

Result<void> TempFile::place(const std::string& target) {
  if (fd_.valid()) return make_error("place " + path_ + ": not synced");
  if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0)
    return errno_error("rename to " + target, path_);
  committed_ = true;
  return {};
}

Result<void> atomic_write(const std::string& tmp_dir, const std::string& target,
                          std::initializer_list<std::string_view> parts) {
  auto tmp = TempFile::create(tmp_dir);
  if (!tmp) return tmp.error();
  for (auto part : parts) {
    if (auto r = tmp->write(part); !r) return r;
  }
  return tmp->commit(target);
}

Result<void> fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("open directory", dir);
  if (::fsync(fd.get()) != 0) return errno_error("fsync directory", dir);
  return {};
}

Result<void> durable_rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return errno_error("rename to " + to, from);
  std::string a = parent_dir(from), b = parent_dir(to);
  if (auto r = fsync_dir(b); !r) return r;
  if (a != b) return fsync_dir(a);
  return {};
}

}  // namespace spoold::spool
