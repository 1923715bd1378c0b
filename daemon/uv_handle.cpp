// daemon/uv_handle.cpp — see uv_handle.h.
#include "daemon/uv_handle.h"

namespace spoold::daemon {

Timer::Timer(uv_loop_t* loop) : box_(std::make_unique<Box>().release()) {  // freed in the close callback
  uv_timer_init(loop, &box_->handle);
  box_->handle.data = box_;
}

Timer::~Timer() {
  box_->fn = nullptr;
  uv_timer_stop(&box_->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&box_->handle),
           [](uv_handle_t* h) { std::unique_ptr<Box> owned(static_cast<Box*>(h->data)); });
}

void Timer::start(uint64_t ms, uint64_t repeat_ms, std::function<void()> fn) {
  box_->fn = std::move(fn);
  uv_timer_start(
      &box_->handle,
      [](uv_timer_t* t) {
        auto* box = static_cast<Box*>(t->data);
        if (box->fn) {
          auto fn = box->fn;  // the callback may restart or destroy the timer
          fn();
        }
      },
      ms, repeat_ms);
}

void Timer::stop() {
  uv_timer_stop(&box_->handle);
}

bool Timer::active() const {
  return uv_is_active(reinterpret_cast<const uv_handle_t*>(&box_->handle)) != 0;
}

void Timer::unref() {
  uv_unref(reinterpret_cast<uv_handle_t*>(&box_->handle));
}

SignalWatch::SignalWatch(uv_loop_t* loop, int signum, std::function<void(int)> fn)
    : box_(std::make_unique<Box>().release()) {  // freed in the close callback
  box_->fn = std::move(fn);
  uv_signal_init(loop, &box_->handle);
  box_->handle.data = box_;
  uv_signal_start(
      &box_->handle,
      [](uv_signal_t* h, int sig) {
        auto* box = static_cast<Box*>(h->data);
        if (box->fn) {
          auto fn = box->fn;  // the callback may destroy this watcher
          fn(sig);
        }
      },
      signum);
}

SignalWatch::~SignalWatch() {
  box_->fn = nullptr;
  uv_signal_stop(&box_->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&box_->handle),
           [](uv_handle_t* h) { std::unique_ptr<Box> owned(static_cast<Box*>(h->data)); });
}

namespace {
struct Work {
  uv_work_t req;
  std::function<void()> work, done;
};
}  // namespace

void run_in_pool(uv_loop_t* loop, std::function<void()> work, std::function<void()> done) {
  auto w = std::make_unique<Work>();
  w->work = std::move(work);
  w->done = std::move(done);
  w->req.data = w.get();
  int rc = uv_queue_work(
      loop, &w->req, [](uv_work_t* r) { static_cast<Work*>(r->data)->work(); },
      [](uv_work_t* r, int) {
        std::unique_ptr<Work> owned(static_cast<Work*>(r->data));
        if (owned->done) owned->done();
      });
  if (rc == 0) (void)w.release();  // libuv owns it until the after-work callback
}

}  // namespace spoold::daemon
