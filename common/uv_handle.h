// common/uv_handle.h — the one way spoold owns a libuv handle, and the handles built on it
// (Timer, Signal, FsEvent, Poll; streams in common/uv_stream.h), plus run_in_pool.
// Rule: a handle and everything its callbacks use live in one heap block that only the handle's
// uv_close callback frees, never anyone before it: libuv may touch a handle until then, so the
// owner never holds the handle's memory itself. The owner holds a Handle; destroying it (also
// from inside one of the handle's own callbacks) closes the handle and clears the callbacks stored
// in the block, so none can reach the owner afterwards. A handle whose uv_*_init failed was never
// known to the loop and is freed at once. Everything here runs on the loop thread, except the
// work of run_in_pool.
#pragma once

#include <signal.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace spoold::uv {

// One callback kept in a handle's block. While it runs it may replace or clear itself, or destroy
// its owner (which clears it): so it runs from a local it was moved to, and goes back into the
// slot afterwards only if nothing set the slot meanwhile. The slot itself stays valid for the
// whole call: the block it lives in is freed by the close callback, which libuv never runs from
// inside another callback.
template <class... Args>
class Callback {
 public:
  using Fn = std::function<void(Args...)>;

  void set(Fn fn) {
    fn_ = std::move(fn);
    ++generation_;
  }
  void reset() { set(nullptr); }
  explicit operator bool() const { return static_cast<bool>(fn_); }

  void operator()(Args... args) {
    if (!fn_) return;
    Fn fn = std::exchange(fn_, nullptr);
    const std::uint64_t generation = generation_;
    fn(args...);
    if (generation == generation_) fn_ = std::move(fn);
  }

 private:
  Fn fn_;
  std::uint64_t generation_ = 0;
};

// The state kept beside a handle that needs none.
struct NoState {
  void reset() {}
};

// Owns one libuv handle of type T (uv_timer_t, uv_pipe_t, ...) and its State. State::reset() runs
// when the owner closes the handle: it drops every callback to the owner. `data` of the handle
// belongs to Handle (it points at the block); never set it.
template <class T, class State = NoState>
class Handle {
 public:
  Handle() = default;  // empty: no handle
  ~Handle() { close(); }
  Handle(Handle&& o) noexcept = default;
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      close();
      block_ = std::move(o.block_);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  // init(T*) is the uv_*_init call. Returns its result; on failure the handle stays empty.
  template <class Init>
  int init(Init&& init) {
    close();
    auto block = std::make_unique<Block>();
    if (int rc = std::forward<Init>(init)(&block->raw); rc != 0) return rc;
    block->raw.data = block.get();
    block_ = std::move(block);
    return 0;
  }

  // Closes the handle (once; an empty Handle does nothing). No callback of it reaches the owner
  // from here on; its memory goes when libuv calls back the close.
  void close() noexcept {
    if (!block_) return;
    Block* block = block_.release();  // the close callback owns it now
    block->state.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&block->raw), &Handle::on_closed);
  }

  explicit operator bool() const { return block_ != nullptr; }
  T* get() const { return block_ ? &block_->raw : nullptr; }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(get()); }
  State* state() const { return block_ ? &block_->state : nullptr; }
  bool active() const { return block_ && uv_is_active(handle()) != 0; }
  void unref() const {
    if (block_) uv_unref(handle());
  }

  // The State beside the handle a libuv callback was given (any handle type of this block).
  template <class H>
  static State& state_of(H* h) {
    return static_cast<Block*>(h->data)->state;
  }

 private:
  struct Block {
    T raw{};
    State state;
  };
  static void on_closed(uv_handle_t* h) { std::unique_ptr<Block> owned(static_cast<Block*>(h->data)); }

  std::unique_ptr<Block> block_;
};

// A uv_timer_t with a std::function callback, which may restart, stop or destroy the Timer.
class Timer {
 public:
  Timer() = default;  // empty: start() does nothing
  explicit Timer(uv_loop_t* loop) {
    (void)h_.init([loop](uv_timer_t* t) { return uv_timer_init(loop, t); });  // cannot fail
  }
  // Calls fn after `ms`, then every `repeat_ms` (0 = once). Replaces any previous schedule.
  void start(std::uint64_t ms, std::uint64_t repeat_ms, std::function<void()> fn) {
    if (!h_) return;
    h_.state()->fn.set(std::move(fn));
    uv_timer_start(
        h_.get(), [](uv_timer_t* t) { H::state_of(t).fn(); }, ms, repeat_ms);
  }
  void stop() {
    if (h_) uv_timer_stop(h_.get());
  }
  bool active() const { return h_.active(); }
  void unref() { h_.unref(); }  // does not keep the loop alive
  void close() { h_.close(); }
  explicit operator bool() const { return static_cast<bool>(h_); }

 private:
  struct State {
    Callback<> fn;
    void reset() { fn.reset(); }
  };
  using H = Handle<uv_timer_t, State>;
  H h_;
};

// A uv_signal_t watching one signal from construction on; fn gets the signal number.
class Signal {
 public:
  Signal() = default;
  Signal(uv_loop_t* loop, int signum, std::function<void(int)> fn) {
    error_ = h_.init([loop](uv_signal_t* s) { return uv_signal_init(loop, s); });
    if (error_ != 0) return;
    h_.state()->fn.set(std::move(fn));
    error_ = uv_signal_start(
        h_.get(), [](uv_signal_t* s, int sig) { H::state_of(s).fn(sig); }, signum);
    if (error_ != 0) h_.close();
  }
  int error() const { return error_; }  // 0 while watching, else the libuv error
  void close() { h_.close(); }
  explicit operator bool() const { return static_cast<bool>(h_); }

 private:
  struct State {
    Callback<int> fn;
    void reset() { fn.reset(); }
  };
  using H = Handle<uv_signal_t, State>;
  H h_;
  int error_ = 0;
};

// A uv_fs_event_t (inotify) on one path. fn gets the name of the entry that changed ("" when
// libuv does not know it), the UV_RENAME / UV_CHANGE bits, and a status (< 0: an error).
class FsEvent {
 public:
  using Fn = std::function<void(std::string_view name, int events, int status)>;
  FsEvent() = default;
  explicit FsEvent(uv_loop_t* loop) {
    (void)h_.init([loop](uv_fs_event_t* e) { return uv_fs_event_init(loop, e); });  // cannot fail
  }
  // Returns 0 or the libuv error (a missing path: UV_ENOENT).
  int start(const std::string& path, Fn fn, unsigned flags = 0) {
    if (!h_) return UV_EINVAL;
    h_.state()->fn.set(std::move(fn));
    return uv_fs_event_start(
        h_.get(),
        [](uv_fs_event_t* e, const char* name, int events, int status) {
          H::state_of(e).fn(name ? std::string_view(name) : std::string_view(), events, status);
        },
        path.c_str(), flags);
  }
  void stop() {
    if (h_) uv_fs_event_stop(h_.get());
  }
  void close() { h_.close(); }
  explicit operator bool() const { return static_cast<bool>(h_); }

 private:
  struct State {
    Callback<std::string_view, int, int> fn;
    void reset() { fn.reset(); }
  };
  using H = Handle<uv_fs_event_t, State>;
  H h_;
};

// A uv_poll_t on a socket someone else owns (c-ares'). fn gets a status (< 0: an error) and the
// UV_READABLE / UV_WRITABLE bits. Destroying the Poll stops watching at once, so a socket closed
// right after (whose number the kernel may hand out again) is never watched by it.
class Poll {
 public:
  using Fn = std::function<void(int status, int events)>;
  Poll() = default;
  Poll(uv_loop_t* loop, int fd) {
    error_ = h_.init([loop, fd](uv_poll_t* p) { return uv_poll_init(loop, p, fd); });
  }
  int error() const { return error_; }  // of uv_poll_init; the Poll is empty then
  // Watches for `events` (replacing what was watched before) and calls fn.
  int start(int events, Fn fn) {
    if (!h_) return error_ != 0 ? error_ : UV_EINVAL;
    h_.state()->fn.set(std::move(fn));
    return uv_poll_start(h_.get(), events,
                         [](uv_poll_t* p, int status, int ev) { H::state_of(p).fn(status, ev); });
  }
  void stop() {
    if (h_) uv_poll_stop(h_.get());
  }
  void close() { h_.close(); }
  explicit operator bool() const { return static_cast<bool>(h_); }

 private:
  struct State {
    Callback<int, int> fn;
    void reset() { fn.reset(); }
  };
  using H = Handle<uv_poll_t, State>;
  H h_;
  int error_ = 0;
};

// A child process started with uv_spawn; fn(exit_status, term_signal) once it has exited. The
// owner keeps the Process until then: a process handle closed early leaves its child unreaped.
class Process {
 public:
  using Fn = std::function<void(std::int64_t exit_status, int term_signal)>;
  Process() = default;
  // Starts the child (options.exit_cb is set here). Returns 0, or the libuv error: the Process
  // is then empty. libuv initialises the handle whether or not the spawn works, so a failed one
  // is closed like any other.
  int spawn(uv_loop_t* loop, uv_process_options_t options, Fn fn) {
    int rc = 0;
    (void)h_.init([&](uv_process_t* p) {
      options.exit_cb = [](uv_process_t* proc, std::int64_t status, int sig) {
        H::state_of(proc).fn(status, sig);
      };
      rc = uv_spawn(loop, p, &options);
      return 0;
    });
    if (rc != 0) {
      h_.close();
      return rc;
    }
    h_.state()->fn.set(std::move(fn));
    return 0;
  }
  int pid() const { return h_ ? h_.get()->pid : 0; }
  // Signals the child's process group (spawned with UV_PROCESS_DETACHED: its own session). Never
  // with pid 0, which would be our own group.
  void kill_group(int sig) const {
    if (int p = pid(); p > 0) ::kill(-p, sig);
  }
  void close() { h_.close(); }
  explicit operator bool() const { return static_cast<bool>(h_); }

 private:
  struct State {
    Callback<std::int64_t, int> fn;
    void reset() { fn.reset(); }
  };
  using H = Handle<uv_process_t, State>;
  H h_;
};

// Runs work on the libuv thread pool, then done on the loop thread; the job is freed after done.
// A job cannot be called back once queued (libuv runs it to its end), so work and done hold what
// they use themselves: copies, shared state, or an owner pointer the owner clears when it goes.
// Returns uv_queue_work's result; on an error neither runs.
inline int run_in_pool(uv_loop_t* loop, std::function<void()> work, std::function<void()> done) {
  struct Job {
    uv_work_t req{};
    std::function<void()> work, done;
  };
  auto job = std::make_unique<Job>();
  job->work = std::move(work);
  job->done = std::move(done);
  job->req.data = job.get();
  int rc = uv_queue_work(
      loop, &job->req, [](uv_work_t* r) { static_cast<Job*>(r->data)->work(); },
      [](uv_work_t* r, int) {
        std::unique_ptr<Job> owned(static_cast<Job*>(r->data));
        if (owned->done) owned->done();
      });
  if (rc == 0) (void)job.release();  // libuv holds it until the after-work callback
  return rc;
}

}  // namespace spoold::uv
