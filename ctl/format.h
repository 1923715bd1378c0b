// ctl/format.h — human output of spoolctl: aligned tables, ages like "3h12m", a mailq-style list.
// Rule: everything is rendered from the protocol JSON (docs/control-protocol.md), so the daemon's
// answer and the offline answer print the same way; a missing field prints as "-" or 0, never fails.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "control/json.h"

namespace spoold::ctl {

// The two most significant units: 0s, 45s, 12m3s, 3h12m, 2d4h (negative values print as 0s).
std::string format_age(int64_t seconds);

// Columns padded to their widest cell; columns listed in right_aligned are numbers.
class Table {
 public:
  explicit Table(std::vector<std::string> header, std::vector<size_t> right_aligned = {})
      : rows_{std::move(header)}, right_(std::move(right_aligned)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
  std::vector<size_t> right_;
};

std::string format_status(const control::Json& status, int64_t now);
// Like Postfix mailq: "-Queue ID- --Size-- ----Arrival Time---- -Sender/Recipient-------", a
// '!' after a held id, the pending recipients indented under the sender with their last reply;
// then the drops in incoming/ not picked up yet, by file name, "(incoming, not picked up yet, AGE old)".
std::string format_list(const control::Json& list, int64_t now);
std::string format_show(const control::Json& show, int64_t now);
// done[]/errors{} of hold/release/delete/bounce/requeue, or flushed/errors of flush.
std::string format_op(const control::Json& answer, std::string_view command);

}  // namespace spoold::ctl
