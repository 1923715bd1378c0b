// daemon/event_file.cpp — see event_file.h.
#include "daemon/event_file.h"

#include "control/json.h"

namespace spoold::daemon::events {

namespace {

bool valid_record(std::string_view json) {
  if (json.empty() || json.front() != '{' || json.find('\n') != std::string_view::npos) return false;
  auto j = control::Json::parse(json);
  return j.ok() && j->is_object();
}

}  // namespace

Built build(const std::vector<std::string>& records) {
  Built b;
  for (const auto& r : records) {
    b.offsets.push_back(b.bytes.size());
    b.bytes += kToRun;
    b.bytes += ' ';
    b.bytes += r;
    b.bytes += '\n';
  }
  return b;
}

Parsed parse(std::string_view bytes) {
  Parsed p;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    const std::size_t nl = bytes.find('\n', pos);
    const std::size_t index = p.total++;
    if (nl == std::string_view::npos) {  // torn: never written so by a daemon (tmp/ and rename)
      ++p.bad;
      break;
    }
    std::string_view line = bytes.substr(pos, nl - pos);
    const std::size_t start = pos;
    pos = nl + 1;
    Line l;
    l.index = index;
    if (line.size() >= 2 && line[1] == ' ' &&
        (line[0] == kToRun || line[0] == kRan || line[0] == kWithdrawn) && valid_record(line.substr(2))) {
      l.offset = start;
      l.state = line[0];
      l.record = std::string(line.substr(2)) + "\n";
    } else if (index == 0 && valid_record(line)) {  // an older daemon's file: one bare record
      l.record = std::string(line) + "\n";
    } else {
      ++p.bad;
      continue;
    }
    p.lines.push_back(std::move(l));
  }
  return p;
}

}  // namespace spoold::daemon::events
