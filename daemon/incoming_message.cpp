// daemon/incoming_message.cpp — see incoming_message.h.
#include "daemon/incoming_message.h"

#include <utility>

#include <fmt/format.h>

#include "common/uv_handle.h"

namespace spoold::daemon {

IncomingMessage::IncomingMessage(uv_loop_t* loop, const spool::Spool& spool, std::string id)
    : loop_(loop), spool_(spool), id_(std::move(id)) {}

void IncomingMessage::append(std::string_view bytes) {
  buffer_.append(bytes);
  if (!writing_ && buffer_.size() >= kWriteAt) write_next();
}

void IncomingMessage::finish(std::function<void(Result<void>)> done) {
  finishing_ = true;
  done_ = std::move(done);
  if (!writing_) write_next();
}

void IncomingMessage::write_next() {
  writing_ = true;
  const bool last = finishing_;
  auto bytes = std::make_shared<std::string>(std::move(buffer_));
  buffer_.clear();
  const spool::Spool* spool = &spool_;
  int rc = uv::run_in_pool(
      loop_,
      [shared = shared_, bytes, last, spool] {
        if (!shared->status.ok()) return;
        if (!shared->file) {
          auto f = spool->receive_file();
          if (!f) {
            shared->status = f.error();
            return;
          }
          shared->file = std::make_shared<spool::TempFile>(std::move(*f));
        }
        if (auto r = shared->file->write(*bytes); !r) shared->status = r;
        (void)shared->parser.feed(*bytes);  // an error is sticky: finish() reports it
        if (!last || !shared->status.ok()) return;
        auto info = shared->parser.finish();
        if (!info) {
          shared->refusal = info.error().message;
          return;
        }
        if (info->message_size() > spool->options().max_message_size) {
          shared->refusal = fmt::format("message of {} bytes exceeds {}", info->message_size(),
                                        spool->options().max_message_size);
          return;
        }
        shared->status = shared->file->sync();
      },
      [weak = weak_from_this(), last] {
        auto self = weak.lock();
        if (!self) return;
        self->writing_ = false;
        if (last) {
          auto done = std::move(self->done_);
          if (done) done(self->shared_->status);
          return;
        }
        if (self->finishing_ || self->buffer_.size() >= kWriteAt) self->write_next();
        if (self->on_progress_) self->on_progress_();
      });
  if (rc != 0) {
    writing_ = false;
    shared_->status = make_error(std::string("thread pool: ") + uv_strerror(rc));
    if (last && done_) {
      auto self = shared_from_this();  // done may drop the last other reference
      auto done = std::exchange(done_, nullptr);
      done(shared_->status);
    }
  }
}

}  // namespace spoold::daemon
