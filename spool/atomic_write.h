// spool/atomic_write.h — the one way spoold writes a file: tmp → fsync → rename → fsync(dir).
// Rule: a reader sees either the old file or the complete new one, never a torn write, and once
// atomic_write() returns the new file survives a power cut. The TempFile guard unlinks the
// temporary file on every early return, so a failed write leaves nothing behind in tmp/.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace spoold::spool {

// An owned file descriptor, closed on destruction.
using Fd = spoold::UniqueFd;

// A uniquely named file in `dir`, created O_EXCL with mode 0600; unlinked on destruction unless
// commit() renamed it into place.
class TempFile {
 public:
  static Result<TempFile> create(const std::string& dir);
  ~TempFile();
  TempFile(TempFile&& o) noexcept;
  TempFile& operator=(TempFile&&) = delete;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  Result<void> write(std::string_view bytes);
  // fsync the file, rename it to `target`, fsync the target's directory.
  Result<void> commit(const std::string& target);
  // The steps of commit() for callers that share one directory fsync among several files
  // (group commit): sync() fsyncs and closes the file; place() renames it to `target`, failing
  // with EEXIST rather than replacing a file there. The caller fsyncs the directory.
  Result<void> sync();
  Result<void> place(const std::string& target);

 private:
  TempFile(Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  Fd fd_;
  std::string path_;
  bool committed_ = false;
};

// Writes the concatenation of `parts` to `target` atomically, using a temporary file in tmp_dir
// (which must be on the same file system as target).
Result<void> atomic_write(const std::string& tmp_dir, const std::string& target,
                          std::initializer_list<std::string_view> parts);

// fsync a directory so a rename/unlink/link inside it is durable.
Result<void> fsync_dir(const std::string& dir);

// rename(from, to) followed by fsync of both parent directories (once if they are the same).
Result<void> durable_rename(const std::string& from, const std::string& to);

// A unique name fragment for this process: "<pid hex>.<counter hex>" — safe to use in any file name.
std::string unique_suffix();

}  // namespace spoold::spool
