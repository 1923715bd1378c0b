// spool/usage.h — the usage totals of one instance, kept in <spool_dir>/usage/<name>: messages,
// recipients and bytes spooled, sent, deferred, bounced and expired since the totals began.
// Each daemon on a shared spool writes only its own file (named for its `instance`); spoolctl
// status reads every file there and adds them up. The format is docs/spool-format.md "Usage".
// Rule: the text functions are pure (table-tested); the file functions never fsync except through
// atomic_write(), which the daemon calls on its thread pool only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace spoold::spool {

inline constexpr int kUsageVersion = 1;  // the first line says "spoold-usage 1"

// What is counted; the order is the file's and the status answer's.
enum class UsageKind { spooled, sent, deferred, bounced, expired };
inline constexpr std::array<std::string_view, 5> kUsageKinds = {"spooled", "sent", "deferred", "bounced",
                                                                "expired"};
std::string_view to_string(UsageKind k);

struct Tally {
  std::uint64_t messages = 0, recipients = 0, bytes = 0;
  Tally& operator+=(const Tally& o);
  bool operator==(const Tally&) const = default;
};

struct Usage {
  std::array<Tally, kUsageKinds.size()> tally{};
  Tally& operator[](UsageKind k) { return tally[static_cast<size_t>(k)]; }
  const Tally& operator[](UsageKind k) const { return tally[static_cast<size_t>(k)]; }
  Usage& operator+=(const Usage& o);
  bool operator==(const Usage&) const = default;
};
// What `later` adds to `earlier` (each field of later is at least earlier's: totals only grow).
Usage usage_since(const Usage& later, const Usage& earlier);

struct UsageFile {
  std::string instance;
  std::int64_t since = 0;    // unix time the totals began (the first start that wrote them)
  std::int64_t updated = 0;  // unix time of this write
  Usage totals;
  bool operator==(const UsageFile&) const = default;
};

std::string format_usage_file(const UsageFile& f);
// Strict: a missing or unknown version line, a bad number, a repeated or missing line is an error
// naming the line. Lines of unknown keys are skipped, so a later version 1 may add some.
Result<UsageFile> parse_usage_file(std::string_view text);

// The file name of an instance in usage/: letters, digits, '.', '-' and '_' kept, anything else
// (and a leading '.') becomes '_'.
std::string usage_file_name(std::string_view instance);
std::string usage_path(const std::string& spool_dir, std::string_view instance);

// Every usage file of the spool, sorted by instance; unreadable ones are named in `problems`.
struct UsageDir {
  std::vector<UsageFile> files;
  std::vector<std::string> problems;
};
UsageDir read_usage_dir(const std::string& spool_dir);
// `files` with the one of live.instance replaced by (or joined by) `live`, sorted by instance: a
// running daemon's counts are newer than its last write.
std::vector<UsageFile> with_live(std::vector<UsageFile> files, const UsageFile& live);
Usage sum_usage(const std::vector<UsageFile>& files);

// Creates usage/ (0700) if missing.
Result<void> make_usage_dir(const std::string& spool_dir);
// Atomically replaces usage/<name> (tmp/ → fsync → rename → fsync usage/).
Result<void> write_usage_file(const std::string& spool_dir, const UsageFile& f);

// This instance's file at start. Missing: nullopt. Malformed (or another instance's): it is moved
// to bad/usage.<name>.<unix time> with a .reason beside it, `moved_to` names it, and the
// result is nullopt too; only an error that leaves the file in place is an error.
struct LoadedUsage {
  std::optional<UsageFile> file;
  std::string problem;   // why a file was moved aside ("" if none was)
  std::string moved_to;  // where
};
Result<LoadedUsage> load_usage_file(const std::string& spool_dir, const std::string& instance,
                                    std::int64_t now);

// One line of the usage_log file: "<ISO time> instance=<i> interval=<s>s" and, per kind,
// " <kind>=<messages>/<recipients>/<bytes>" for the interval, then " total_<kind>=…" likewise.
std::string format_usage_line(std::int64_t now, const std::string& instance, std::int64_t interval_s,
                              const Usage& interval, const Usage& totals);

}  // namespace spoold::spool
