// daemon/incoming_message.h — one message a listener session is receiving: its drop file (the
// envelope lines, then the message) written into tmp/ on the thread pool, never on the loop.
// Rule: bytes are buffered on the loop and written by at most one pool job at a time, in pieces of
// at least kWriteAt bytes, so a 1 KiB message costs one job; finish() writes the rest and fsyncs
// the file, after which the file can be published (GroupCommit). Dropping the object (the
// message was aborted) unlinks the temp file once no job uses it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "spool/drop.h"
#include "spool/spool.h"

namespace spoold::daemon {

class IncomingMessage : public std::enable_shared_from_this<IncomingMessage> {
 public:
  static constexpr std::size_t kWriteAt = 256 * 1024;
  // Buffered beyond this while a write runs: the session stops reading (backlogged()).
  static constexpr std::size_t kMaxBuffered = 1024 * 1024;

  IncomingMessage(uv_loop_t* loop, const spool::Spool& spool, std::string id);
  IncomingMessage(const IncomingMessage&) = delete;
  IncomingMessage& operator=(const IncomingMessage&) = delete;

  const std::string& id() const { return id_; }
  void append(std::string_view bytes);
  bool backlogged() const { return buffer_.size() >= kMaxBuffered; }
  // Called on the loop when a write completed and backlogged() may have changed.
  void on_progress(std::function<void()> fn) { on_progress_ = std::move(fn); }
  // Writes what is left and fsyncs; done(result) on the loop. The file is then file(). The bytes
  // are also read by the pickup's own drop parser on the way: a message the pickup would refuse
  // (it would land in bad/ after its 250) has a refusal() instead, and is not to be published.
  void finish(std::function<void(Result<void>)> done);
  const std::string& refusal() const { return shared_->refusal; }
  std::shared_ptr<spool::TempFile> file() const { return shared_->file; }

 private:
  struct Shared {  // what pool jobs use; outlives this object while one runs
    std::shared_ptr<spool::TempFile> file;
    Result<void> status;
    spool::DropParser parser;
    std::string refusal;  // set by the last job: why the pickup would refuse this drop
  };
  void write_next();

  uv_loop_t* loop_;
  const spool::Spool& spool_;
  std::string id_;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::string buffer_;
  bool writing_ = false;
  bool finishing_ = false;
  std::function<void(Result<void>)> done_;
  std::function<void()> on_progress_;
};

}  // namespace spoold::daemon
