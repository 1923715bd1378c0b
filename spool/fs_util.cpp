// spool/fs_util.cpp — see fs_util.h.
#include "spool/fs_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "spool/atomic_write.h"

namespace spoold::spool {

Error sys_error(std::string_view what, std::string_view path, int err) {
  return make_error(fmt::format("{} {}: {}", what, path, std::strerror(err)), err);
}

Result<DirReader> DirReader::open(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return sys_error("opendir", dir);
  return DirReader(d);
}

DirReader::~DirReader() {
  if (dir_ != nullptr) ::closedir(dir_);
}

DirReader& DirReader::operator=(DirReader&& o) noexcept {
  if (this != &o) {
    if (dir_ != nullptr) ::closedir(dir_);
    dir_ = o.dir_;
    o.dir_ = nullptr;
  }
  return *this;
}

std::optional<std::string> DirReader::next() {
  if (dir_ == nullptr) return std::nullopt;
  for (;;) {
    errno = 0;
    dirent* ent = ::readdir(dir_);
    if (ent == nullptr) return std::nullopt;
    std::string_view name = ent->d_name;
    if (name == "." || name == "..") continue;
    return std::string(name);
  }
}

Result<int64_t> fs_now(const std::string& dir) {
  auto tmp = TempFile::create(dir);
  if (!tmp) return tmp.error();
  struct stat st {};
  if (::fstat(tmp->fd(), &st) != 0) return sys_error("fstat", tmp->path());
  return static_cast<int64_t>(st.st_mtim.tv_sec);
}

Result<std::string> read_small_file(const std::string& path, size_t limit) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return sys_error("open", path);
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > limit) return make_error(fmt::format("{}: larger than {} bytes", path, limit));
  }
  return out;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace spoold::spool
