// dns/uv_handle.h — RAII owner of one libuv handle (internal to dns/).
// Rule: the handle's memory is freed only in its close callback, never before; an owner that
// goes away closes its handle, so no callback can reach a freed owner afterwards.
#pragma once

#include <uv.h>

#include <memory>

namespace spoold::dns::detail {

template <class T>
class UvHandle {
 public:
  UvHandle() : h_(std::make_unique<T>()) {}
  ~UvHandle() { close(); }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  T* get() const { return h_.get(); }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(h_.get()); }

  // Call after a successful uv_*_init: from then on only uv_close may free the memory.
  void set_initialized() { initialized_ = true; }

  // Closes (once); the memory is released by libuv's close callback.
  void close() {
    if (!h_) return;
    if (!initialized_) {
      h_.reset();
      return;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(h_.release()), &UvHandle::on_closed);
  }

 private:
  static void on_closed(uv_handle_t* h) { std::unique_ptr<T> owned(reinterpret_cast<T*>(h)); }

  std::unique_ptr<T> h_;
  bool initialized_ = false;
};

}  // namespace spoold::dns::detail
