// daemon/pool_batch.cpp — see pool_batch.h.
#include "daemon/pool_batch.h"

#include <memory>

namespace spoold::daemon {

PoolBatch::PoolBatch(uv_loop_t* loop, size_t lanes) : loop_(loop), lanes_(lanes ? lanes : 1), timer_(loop) {}

PoolBatch::~PoolBatch() {
  running_->batch_alive = false;
}

void PoolBatch::add(std::function<void()> work, std::function<void()> done) {
  pending_.push_back({std::move(work), std::move(done)});
  if (!timer_.active()) timer_.start(0, 0, [this] { flush(); });  // next loop iteration
}

void PoolBatch::flush() {
  if (pending_.empty() || running_->jobs >= lanes_) return;  // a finishing job flushes again
  auto items = std::make_shared<std::vector<Item>>(std::move(pending_));
  pending_.clear();
  size_t lanes = std::min(lanes_ - running_->jobs, items->size());
  running_->jobs += lanes;
  for (size_t lane = 0; lane < lanes; ++lane) {
    uv::run_in_pool(
        loop_,
        [items, lane, lanes] {
          for (size_t i = lane; i < items->size(); i += lanes) (*items)[i].work();
        },
        [this, running = running_, items, lane, lanes] {
          --running->jobs;
          for (size_t i = lane; i < items->size(); i += lanes) (*items)[i].done();
          if (running->batch_alive) flush();
        });
  }
}

}  // namespace spoold::daemon
