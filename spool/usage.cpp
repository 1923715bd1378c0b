// spool/usage.cpp — the usage file's text, its directory, and the log line (see usage.h).
#include "spool/usage.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>

#include <fmt/format.h>

#include "spool/atomic_write.h"
#include "spool/fs_util.h"

namespace spoold::spool {

namespace {

constexpr std::string_view kUsageTag = "spoold-usage";
constexpr size_t kMaxUsageFile = 64 * 1024;  // a valid one is a few hundred bytes

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_i64(std::string_view s, std::int64_t& out) {
  if (s.empty() || s.front() == '-' || s.front() == '+') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::optional<UsageKind> kind_named(std::string_view name) {
  for (size_t i = 0; i < kUsageKinds.size(); ++i)
    if (kUsageKinds[i] == name) return static_cast<UsageKind>(i);
  return std::nullopt;
}

std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += (c < 0x20 || c == 0x7f) ? '_' : static_cast<char>(c);
  return out;
}

}  // namespace

std::string_view to_string(UsageKind k) {
  return kUsageKinds[static_cast<size_t>(k)];
}

Tally& Tally::operator+=(const Tally& o) {
  messages += o.messages;
  recipients += o.recipients;
  bytes += o.bytes;
  return *this;
}

Usage& Usage::operator+=(const Usage& o) {
  for (size_t i = 0; i < tally.size(); ++i) tally[i] += o.tally[i];
  return *this;
}

Usage usage_since(const Usage& later, const Usage& earlier) {
  Usage d;
  auto minus = [](std::uint64_t a, std::uint64_t b) { return a >= b ? a - b : 0; };
  for (size_t i = 0; i < d.tally.size(); ++i) {
    d.tally[i].messages = minus(later.tally[i].messages, earlier.tally[i].messages);
    d.tally[i].recipients = minus(later.tally[i].recipients, earlier.tally[i].recipients);
    d.tally[i].bytes = minus(later.tally[i].bytes, earlier.tally[i].bytes);
  }
  return d;
}

std::string format_usage_file(const UsageFile& f) {
  std::string out = fmt::format("{} {}\ninstance {}\nsince {}\nupdated {}\n", kUsageTag, kUsageVersion,
                                printable(f.instance), f.since, f.updated);
  for (size_t i = 0; i < kUsageKinds.size(); ++i) {
    const Tally& t = f.totals.tally[i];
    out += fmt::format("{} {} {} {}\n", kUsageKinds[i], t.messages, t.recipients, t.bytes);
  }
  return out;
}

Result<UsageFile> parse_usage_file(std::string_view text) {
  UsageFile f;
  std::vector<std::string> seen;
  size_t lineno = 0;
  bool have_instance = false;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    if (eol == std::string_view::npos)
      return make_error(fmt::format("line {}: no newline at the end", lineno + 1));
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol + 1);
    ++lineno;
    auto err = [&](std::string_view what) { return make_error(fmt::format("line {}: {}", lineno, what)); };
    if (lineno == 1) {
      auto w = words(line);
      std::int64_t v = 0;
      if (w.size() != 2 || w[0] != kUsageTag || !parse_i64(w[1], v))
        return err(fmt::format("not a usage file (expected '{} {}')", kUsageTag, kUsageVersion));
      if (v < 1 || v > kUsageVersion)
        return err(
            fmt::format("usage format {} is not supported (this spoold reads 1..{})", v, kUsageVersion));
      continue;
    }
    size_t sp = line.find(' ');
    std::string key(line.substr(0, sp));
    std::string_view rest = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    if (key.empty()) return err("empty key");
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) return err("'" + key + "' repeated");
    seen.push_back(key);
    if (key == "instance") {
      if (rest.empty()) return err("empty instance");
      f.instance = std::string(rest);
      have_instance = true;
    } else if (key == "since" || key == "updated") {
      if (!parse_i64(rest, key == "since" ? f.since : f.updated))
        return err("'" + key + "' is not a unix time");
    } else if (auto k = kind_named(key)) {
      auto w = words(rest);
      Tally& t = f.totals[*k];
      if (w.size() != 3 || !parse_u64(w[0], t.messages) || !parse_u64(w[1], t.recipients) ||
          !parse_u64(w[2], t.bytes))
        return err("'" + key + "' needs three counts: messages recipients bytes");
    }
    // Any other key: written by a later spoold of the same version; skipped.
  }
  if (lineno == 0) return make_error("empty file");
  if (!have_instance) return make_error("no 'instance' line");
  for (auto k : kUsageKinds)
    if (std::find(seen.begin(), seen.end(), std::string(k)) == seen.end())
      return make_error(fmt::format("no '{}' line", k));
  return f;
}

std::string usage_file_name(std::string_view instance) {
  std::string out;
  for (unsigned char c : instance)
    out += (std::isalnum(c) || c == '.' || c == '-' || c == '_') ? static_cast<char>(c) : '_';
  if (out.empty() || out.front() == '.') out.insert(out.begin(), '_');
  return out;
}

std::string usage_path(const std::string& spool_dir, std::string_view instance) {
  return spool_dir + "/usage/" + usage_file_name(instance);
}

UsageDir read_usage_dir(const std::string& spool_dir) {
  UsageDir out;
  const std::string dir = spool_dir + "/usage";
  auto rd = DirReader::open(dir);
  if (!rd) {
    if (rd.error().code != ENOENT) out.problems.push_back(rd.error().message);
    return out;
  }
  while (auto name = rd->next()) {
    if (name->empty() || name->front() == '.') continue;
    std::string path = dir + "/" + *name;
    auto text = read_small_file(path, kMaxUsageFile);
    if (!text) {
      if (text.error().code != ENOENT) out.problems.push_back(text.error().message);
      continue;
    }
    auto f = parse_usage_file(*text);
    if (!f) {
      out.problems.push_back(fmt::format("{}: {}", path, f.error().message));
      continue;
    }
    out.files.push_back(std::move(*f));
  }
  std::sort(out.files.begin(), out.files.end(),
            [](const UsageFile& a, const UsageFile& b) { return a.instance < b.instance; });
  return out;
}

std::vector<UsageFile> with_live(std::vector<UsageFile> files, const UsageFile& live) {
  std::erase_if(files, [&](const UsageFile& f) { return f.instance == live.instance; });
  files.push_back(live);
  std::sort(files.begin(), files.end(),
            [](const UsageFile& a, const UsageFile& b) { return a.instance < b.instance; });
  return files;
}

Usage sum_usage(const std::vector<UsageFile>& files) {
  Usage u;
  for (const auto& f : files) u += f.totals;
  return u;
}

Result<void> make_usage_dir(const std::string& spool_dir) {
  std::string dir = spool_dir + "/usage";
  if (::mkdir(dir.c_str(), 0700) == 0) return fsync_dir(spool_dir);
  if (errno == EEXIST) return {};
  return sys_error("mkdir", dir);
}

Result<void> write_usage_file(const std::string& spool_dir, const UsageFile& f) {
  return atomic_write(spool_dir + "/tmp", usage_path(spool_dir, f.instance), {format_usage_file(f)});
}

Result<LoadedUsage> load_usage_file(const std::string& spool_dir, const std::string& instance,
                                    std::int64_t now) {
  LoadedUsage out;
  std::string path = usage_path(spool_dir, instance);
  auto text = read_small_file(path, kMaxUsageFile);
  if (!text && text.error().code == ENOENT) return out;
  std::string problem;
  if (!text) {
    // Too large is malformed; anything else (EACCES, EIO) leaves the file where it is.
    if (text.error().code != 0) return text.error();
    problem = text.error().message;
  } else if (auto f = parse_usage_file(*text); !f) {
    problem = fmt::format("{}: {}", path, f.error().message);
  } else if (f->instance != instance) {
    problem = fmt::format("{}: belongs to instance '{}', not '{}'", path, f->instance, instance);
  } else {
    out.file = std::move(*f);
    return out;
  }
  std::string target = fmt::format("{}/bad/usage.{}.{}", spool_dir, usage_file_name(instance), now);
  if (path_exists(target)) target += "." + unique_suffix();
  if (auto r = atomic_write(spool_dir + "/tmp", target + ".reason", {problem, "\n"}); !r) return r.error();
  if (auto r = durable_rename(path, target); !r) return r.error();
  out.problem = std::move(problem);
  out.moved_to = std::move(target);
  return out;
}

std::string format_usage_line(std::int64_t now, const std::string& instance, std::int64_t interval_s,
                              const Usage& interval, const Usage& totals) {
  std::tm tm{};
  auto t = static_cast<time_t>(now);
  ::gmtime_r(&t, &tm);
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z instance={} interval={}s",
                                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                tm.tm_sec, usage_file_name(instance), interval_s);
  auto add = [&](std::string_view prefix, const Usage& u) {
    for (size_t i = 0; i < kUsageKinds.size(); ++i) {
      const Tally& c = u.tally[i];
      out += fmt::format(" {}{}={}/{}/{}", prefix, kUsageKinds[i], c.messages, c.recipients, c.bytes);
    }
  };
  add("", interval);
  add("total_", totals);
  return out + "\n";
}

}  // namespace spoold::spool
