// daemon/event_file.h — the bytes of one file of <spool>/events/ (spool-format.md "Events"): the
// hooks.on_outcome records of one batch of outcomes, one line each — a state byte, a space, the
// record as one line of JSON, '\n'. The state is '-' (to run), '+' (a run exited 0) or 'x'
// (withdrawn: its outcome could not be written). A record's state changes by a one-byte write at
// its line's start: no fsync, and no new block on a full disk. A file of an older daemon is one
// bare JSON record, to run.
// Rule: parse() takes untrusted bytes: every line is a record or counted as bad, nothing else;
// a line's index (its "#<n>" in the record's id) is its position in the file, bad lines included.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace spoold::daemon::events {

constexpr char kToRun = '-';
constexpr char kRan = '+';
constexpr char kWithdrawn = 'x';
constexpr std::size_t kNoOffset = static_cast<std::size_t>(-1);  // a bare record: no state byte

struct Built {
  std::string bytes;
  std::vector<std::size_t> offsets;  // of each record's state byte
};
// records: each one line of JSON without its '\n'; all to run.
Built build(const std::vector<std::string>& records);

struct Line {
  std::size_t index = 0;
  std::size_t offset = kNoOffset;  // of its state byte
  char state = kToRun;
  std::string record;  // the JSON, '\n' ended: what the program gets on stdin
};
struct Parsed {
  std::vector<Line> lines;  // the good ones, in file order
  std::size_t total = 0;    // lines, good and bad (a last one without '\n' is bad)
  std::size_t bad = 0;
};
Parsed parse(std::string_view bytes);

}  // namespace spoold::daemon::events
