// daemon/group_commit.h — received messages made durable together: the listener's sessions hand
// over synced temp files, one thread-pool job renames every file waiting into incoming/ and
// fsyncs that directory once for all of them (spool::Spool::publish).
// Rule: at most one publish job runs; what arrives meanwhile waits for it and goes in the next,
// larger batch, so concurrent sessions share the directory fsync instead of queueing one each.
// Each item's done() runs on the loop only once its outcome is durable (or failed).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "spool/spool.h"

namespace spoold::daemon {

class GroupCommit {
 public:
  using Done = std::function<void(Result<void>)>;
  GroupCommit(uv_loop_t* loop, const spool::Spool& spool) : loop_(loop), spool_(spool) {}
  ~GroupCommit();
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // `file` was synced; it becomes incoming/<id>. done(result) runs on the loop.
  void add(std::shared_ptr<spool::TempFile> file, std::string id, Done done);
  bool busy() const { return running_ || !pending_.empty(); }
  std::uint64_t batches() const { return batches_; }

 private:
  struct Item {
    std::shared_ptr<spool::TempFile> file;
    std::string id;
    Done done;
  };
  void start();

  uv_loop_t* loop_;
  const spool::Spool& spool_;
  std::vector<Item> pending_;
  bool running_ = false;
  std::uint64_t batches_ = 0;
  // A job that finishes after this object is gone (the daemon tearing down) reaches nobody.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spoold::daemon
