// spool/fs_util.h — small POSIX helpers of the spool library (spool.h includes it for Scan;
// other libraries should not need it):
// errno → Error, an RAII directory stream, the file system's idea of "now", small-file reads.
// Rule: no helper here keeps state between calls; all of them are safe on any thread.
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace spoold::spool {

Error sys_error(std::string_view what, std::string_view path, int err = errno);

// An open directory read one name at a time, so a huge directory is never held in memory.
class DirReader {
 public:
  static Result<DirReader> open(const std::string& dir);
  ~DirReader();
  DirReader(DirReader&& o) noexcept : dir_(o.dir_) { o.dir_ = nullptr; }
  DirReader& operator=(DirReader&& o) noexcept;
  DirReader(const DirReader&) = delete;
  DirReader& operator=(const DirReader&) = delete;
  // The next name other than "." and ".."; nullopt at the end. Errors end the stream too.
  std::optional<std::string> next();

 private:
  explicit DirReader(DIR* d) : dir_(d) {}
  DIR* dir_ = nullptr;
};

// The file system's clock: the mtime of a file created for the purpose in `dir` (then removed).
// On NFS this is the server's clock, the one that also stamps lock files.
Result<int64_t> fs_now(const std::string& dir);

// Reads at most `limit` bytes; an error if the file is larger.
Result<std::string> read_small_file(const std::string& path, size_t limit);

bool path_exists(const std::string& path);

}  // namespace spoold::spool
