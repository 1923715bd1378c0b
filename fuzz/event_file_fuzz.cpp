// fuzz/event_file_fuzz.cpp — libFuzzer target for the files of <spool>/events/ (daemon/event_file.h),
// which a restart reads back: any bytes, as a crash, a disk error or an operator left them.
// Rule: no input may crash or read out of bounds; every good line's state byte is where its offset
// says (or it is an older daemon's bare record, line 0); indices rise and stay below the total;
// good + bad = total; a file built from the good records parses back to the same records.
// fuzz-sources: daemon/event_file.cpp control/json.cpp
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/event_file.h"

namespace ev = spoold::daemon::events;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  ev::Parsed p = ev::parse(bytes);
  if (p.lines.size() + p.bad != p.total) std::abort();
  std::vector<std::string> again;
  std::size_t last = 0;
  for (std::size_t i = 0; i < p.lines.size(); ++i) {
    const ev::Line& l = p.lines[i];
    if (l.index >= p.total || (i > 0 && l.index <= last)) std::abort();
    last = l.index;
    if (l.offset == ev::kNoOffset) {
      if (l.index != 0 || l.state != ev::kToRun) std::abort();
    } else if (l.offset >= bytes.size() || bytes[l.offset] != l.state) {
      std::abort();
    }
    if (l.record.empty() || l.record.back() != '\n') std::abort();
    again.push_back(l.record.substr(0, l.record.size() - 1));
  }
  ev::Built b = ev::build(again);
  ev::Parsed q = ev::parse(b.bytes);
  if (q.bad != 0 || q.lines.size() != again.size()) std::abort();
  for (std::size_t i = 0; i < again.size(); ++i)
    if (q.lines[i].record != p.lines[i].record || q.lines[i].offset != b.offsets[i] ||
        q.lines[i].state != ev::kToRun)
      std::abort();
  return 0;
}
