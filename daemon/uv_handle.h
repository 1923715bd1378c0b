// daemon/uv_handle.h — RAII for libuv handles: the handle's memory lives until uv_close calls back.
// Rule: an owner object may die at any time; the handle it held is closed and freed later by the
// loop, and its callbacks check `owner` (cleared on destruction) before touching anything.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>

namespace spoold::daemon {

// A uv_timer_t with a std::function callback. Destroying the Timer closes the handle.
class Timer {
 public:
  explicit Timer(uv_loop_t* loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  // Calls fn after `ms`, then every `repeat_ms` (0 = once). Replaces any previous schedule.
  void start(uint64_t ms, uint64_t repeat_ms, std::function<void()> fn);
  void stop();
  bool active() const;
  void unref();  // does not keep the loop alive

 private:
  struct Box {
    uv_timer_t handle;
    std::function<void()> fn;
  };
  Box* box_;  // owned by libuv from uv_close until the close callback frees it
};

// A uv_signal_t with a std::function callback. Destroying it (even inside fn) closes the handle.
class SignalWatch {
 public:
  SignalWatch(uv_loop_t* loop, int signum, std::function<void(int)> fn);
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

 private:
  struct Box {
    uv_signal_t handle;
    std::function<void(int)> fn;
  };
  Box* box_;  // owned by libuv from uv_close until the close callback frees it
};

// Runs fn on the libuv thread pool, then done on the loop thread. The work item is freed after done.
void run_in_pool(uv_loop_t* loop, std::function<void()> work, std::function<void()> done);

}  // namespace spoold::daemon
