// daemon/group_commit.cpp — see group_commit.h.
#include "daemon/group_commit.h"

#include "common/uv_handle.h"

namespace spoold::daemon {

GroupCommit::~GroupCommit() {
  *alive_ = false;
}

void GroupCommit::add(std::shared_ptr<spool::TempFile> file, std::string id, Done done) {
  pending_.push_back(Item{std::move(file), std::move(id), std::move(done)});
  if (!running_) start();
}

void GroupCommit::start() {
  if (pending_.empty()) return;
  running_ = true;
  ++batches_;
  auto items = std::make_shared<std::vector<Item>>(std::move(pending_));
  pending_.clear();
  auto results = std::make_shared<std::vector<Result<void>>>();
  const spool::Spool* spool = &spool_;
  int rc = uv::run_in_pool(
      loop_,
      [items, results, spool] {
        std::vector<spool::Spool::Publication> batch;
        batch.reserve(items->size());
        for (auto& it : *items) batch.push_back({it.file.get(), it.id});
        *results = spool->publish(batch);
      },
      [this, items, results, alive = alive_] {
        if (!*alive) return;
        // running_ stays set while the callbacks run, so what they add waits for start() below.
        for (size_t i = 0; i < items->size(); ++i) (*items)[i].done((*results)[i]);
        running_ = false;
        start();
      });
  if (rc != 0) {
    running_ = false;
    for (auto& it : *items) it.done(make_error(std::string("thread pool: ") + uv_strerror(rc)));
  }
}

}  // namespace spoold::daemon
