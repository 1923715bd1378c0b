// daemon/pool_batch.h — small thread-pool jobs gathered during one loop iteration and run as at
// most `lanes` pool jobs, so a burst of finished deliveries costs a few thread hand-offs (and
// wake-ups) instead of one per message. Each item's done() still runs on the loop, in order.
#pragma once

#include <uv.h>

#include <functional>
#include <vector>

#include "daemon/uv_handle.h"

namespace spoold::daemon {

class PoolBatch {
 public:
  explicit PoolBatch(uv_loop_t* loop, size_t lanes = 4);
  void add(std::function<void()> work, std::function<void()> done);

 private:
  struct Item {
    std::function<void()> work, done;
  };
  void flush();

  uv_loop_t* loop_;
  size_t lanes_;
  std::vector<Item> pending_;
  Timer timer_;
};

}  // namespace spoold::daemon
