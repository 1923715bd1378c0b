// daemon/guarded.h — a value shared between the loop thread and thread-pool jobs, reached only
// under its mutex. For state a pass on the pool reads while the loop goes on changing it (the ids
// in memory, the share memo): a copy per pass would cost more than the pass itself once thousands
// of entries are in memory.
#pragma once

#include <mutex>
#include <utility>

namespace spoold::daemon {

template <class T>
class Guarded {
 public:
  Guarded() = default;
  explicit Guarded(T v) : v_(std::move(v)) {}

  template <class F>
  decltype(auto) with(F&& f) {
    std::lock_guard<std::mutex> l(m_);
    return std::forward<F>(f)(v_);
  }
  template <class F>
  decltype(auto) with(F&& f) const {
    std::lock_guard<std::mutex> l(m_);
    return std::forward<F>(f)(std::as_const(v_));
  }

 private:
  mutable std::mutex m_;
  T v_;
};

}  // namespace spoold::daemon
