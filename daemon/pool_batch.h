// daemon/pool_batch.h — small thread-pool jobs gathered during one loop iteration and run as at
// most `lanes` pool jobs, so a burst of finished deliveries costs a few thread hand-offs (and
// wake-ups) instead of one per message. Each item's done() still runs on the loop, in order.
// Rule: at most `lanes` jobs run at once; what arrives meanwhile waits for one to finish and goes
// in the next, larger batch — instead of one more job per loop iteration queueing up in the pool
// ahead of the pickup scans. Several lanes matter: a removal mostly waits for the disk (an unlink
// on a `discard` mount trims the freed block synchronously), and four lanes overlap those waits
// (measured in CHANGELOG.md).
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

#include "common/uv_handle.h"

namespace spoold::daemon {

class PoolBatch {
 public:
  explicit PoolBatch(uv_loop_t* loop, size_t lanes = 4);
  ~PoolBatch();
  PoolBatch(const PoolBatch&) = delete;
  PoolBatch& operator=(const PoolBatch&) = delete;
  void add(std::function<void()> work, std::function<void()> done);

 private:
  struct Item {
    std::function<void()> work, done;
  };
  void flush();

  uv_loop_t* loop_;
  size_t lanes_;
  // Shared with the jobs on the pool: a job that finishes after the batch is gone (the daemon
  // tearing down) must not touch it.
  struct Running {
    size_t jobs = 0;
    bool batch_alive = true;
  };
  std::shared_ptr<Running> running_ = std::make_shared<Running>();
  std::vector<Item> pending_;
  uv::Timer timer_;
};

}  // namespace spoold::daemon
