// ctl/format.cpp — see format.h.
#include "ctl/format.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

namespace spoold::ctl {
namespace {

using control::Json;

std::string local_time(int64_t t, const char* fmt_str) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, fmt_str, &tm);
  return std::string(buf, n);
}

// "2026-11-22 03:58:27 (3h12m ago)" / "(in 5m)"; "-" for 0 or null.
std::string when(const Json& v, int64_t now) {
  if (!v.is_int() || v.as_int() <= 0) return "-";
  int64_t t = v.as_int();
  std::string rel = t <= now ? format_age(now - t) + " ago" : "in " + format_age(t - now);
  return fmt::format("{} ({})", local_time(t, "%Y-%m-%d %H:%M:%S"), rel);
}

std::string place_of(const Json& m) {
  const std::string& place = m["place"].as_string();
  if (place == "queue") return fmt::format("queue, tier {}", m["tier"].as_int());
  return place.empty() ? "-" : place;
}

std::string indent(std::string_view text, std::string_view pad) {
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    std::string_view line =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out += fmt::format("{}{}\n", pad, line);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

std::string daemon_line(const Json& s) {
  const Json& d = s["daemon"];
  if (!d["running"].as_bool()) {
    std::string dir = s["spool_dir"].as_string();
    return dir.empty() ? "spoold: not running\n" : fmt::format("spoold: not running (spool {})\n", dir);
  }
  std::string line =
      fmt::format("spoold: running, pid {}, up {}", d["pid"].as_int(), format_age(d["uptime_s"].as_int()));
  if (!d["instance"].as_string().empty()) line += ", instance " + d["instance"].as_string();
  if (!d["version"].as_string().empty()) line += ", version " + d["version"].as_string();
  return line + "\n";
}

std::string counters_line(const Json& s) {
  std::string out = "counters:";
  for (const auto& [k, v] : s["counters"].as_object()) out += fmt::format(" {} {}", k, v.as_int());
  return out + "\n";
}

// "usage: messages/recipients/bytes" rows: since start (a running daemon), this instance's totals,
// every instance's on the spool.
std::string usage_table(const Json& s) {
  const Json& u = s["usage"];
  if (!u.is_object()) return "";
  static constexpr const char* kinds[] = {"spooled", "sent", "deferred", "bounced", "expired"};
  std::vector<std::string> head{""};
  head.insert(head.end(), std::begin(kinds), std::end(kinds));
  Table t(head, {1, 2, 3, 4, 5});
  auto row = [&](std::string label, const Json& counts) {
    std::vector<std::string> cells{std::move(label)};
    for (const char* k : kinds) {
      const Json& c = counts[k];
      cells.push_back(
          fmt::format("{}/{}/{}", c["messages"].as_int(), c["recipients"].as_int(), c["bytes"].as_int()));
    }
    t.add(std::move(cells));
  };
  if (u["since_start"].is_object()) row("since start", u["since_start"]);
  row("total, instance " + u["instance"].as_string(), u["total"]);
  row(fmt::format("total, all {} instances", u["instances"].as_array().size()), u["all_instances"]);
  std::string out = "\nusage (messages/recipients/bytes):\n" + t.render();
  for (const auto& p : u["problems"].as_array()) out += "usage: " + p.as_string() + "\n";
  return out;
}

std::string destinations_table(const Json& s) {
  const auto& dests = s["destinations"].as_array();
  if (dests.empty()) return "";
  Table t({"destination", "sessions", "queued"}, {1, 2});
  for (const auto& d : dests)
    t.add(
        {d["hop"].as_string(), std::to_string(d["sessions"].as_int()), std::to_string(d["queued"].as_int())});
  return "\n" + t.render();
}

}  // namespace

std::string format_age(int64_t s) {
  if (s <= 0) return "0s";
  struct Unit {
    int64_t secs;
    char name;
  };
  static constexpr Unit units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
  for (size_t i = 0; i < 4; ++i) {
    if (s < units[i].secs) continue;
    std::string out = fmt::format("{}{}", s / units[i].secs, units[i].name);
    int64_t rest = s % units[i].secs;
    if (i + 1 < 4 && rest / units[i + 1].secs > 0)
      out += fmt::format("{}{}", rest / units[i + 1].secs, units[i + 1].name);
    return out;
  }
  return "0s";
}

std::string Table::render() const {
  std::vector<size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      bool right = std::find(right_.begin(), right_.end(), c) != right_.end();
      if (c) line += "  ";
      line += right ? fmt::format("{:>{}}", row[c], width[c]) : fmt::format("{:<{}}", row[c], width[c]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string format_status(const Json& s, int64_t now) {
  (void)now;
  std::string out = daemon_line(s);
  Table t({"tier", "delay", "messages", "oldest"}, {0, 1, 2, 3});
  for (const auto& tier : s["tiers"].as_array()) {
    int64_t n = tier["messages"].as_int();
    t.add({std::to_string(tier["tier"].as_int()), format_age(tier["delay_s"].as_int()), std::to_string(n),
           n ? format_age(tier["oldest_s"].as_int()) : "-"});
  }
  out += "\n" + t.render() + "\n";
  out += fmt::format("incoming {}  held {}  failed {}  bad {}  in flight {}\n", s["incoming"].as_int(),
                     s["held"].as_int(), s["failed"].as_int(), s["bad"].as_int(), s["in_flight"].as_int());
  if (s["daemon"]["running"].as_bool()) out += counters_line(s);
  out += usage_table(s);
  if (s["daemon"]["running"].as_bool()) out += destinations_table(s);
  return out;
}

namespace {

// A file name as it may be printed: anyone who can write to incoming/ chooses it.
std::string printable_name(std::string_view name) {
  std::string out;
  for (char c : name)
    out += (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) ? '?' : c;
  return out;
}

}  // namespace

std::string format_list(const Json& list, int64_t now) {
  const auto& msgs = list["messages"].as_array();
  const auto& drops = list["incoming"].as_array();
  if (msgs.empty() && drops.empty()) return "Mail queue is empty\n";
  std::string out = fmt::format("{:<31} {:>8} {:<20} {}\n", "-Queue ID-", "--Size--", "----Arrival Time----",
                                "-Sender/Recipient-------");
  int64_t bytes = 0;
  for (const auto& m : msgs) {
    bytes += m["size"].as_int();
    std::string id = m["id"].as_string() + (m["held"].as_bool() ? "!" : "");
    std::string sender = m["sender"].as_string().empty() ? "MAILER-DAEMON" : m["sender"].as_string();
    out += fmt::format("{:<31} {:>8} {:<20} {}\n", id, m["size"].as_int(),
                       local_time(m["arrived"].as_int(), "%a %b %e %H:%M:%S"), sender);
    if (m["place"].as_string() == "failed")
      out += fmt::format("{:62}(failed: {})\n", "", m["reason"].as_string());
    for (const auto& r : m["recipients"].as_array()) {
      const std::string& state = r["state"].as_string();
      if (!r["last_reply"].as_string().empty())
        out += fmt::format("{:62}({})\n", "", r["last_reply"].as_string());
      out += fmt::format("{:62}{}{}\n", "", r["address"].as_string(),
                         state == "pending" ? "" : " [" + state + "]");
    }
    out += "\n";
  }
  // Drops pickup has not taken yet: no queue id, sender or recipients until it has.
  for (const auto& d : drops) {
    bytes += d["size"].as_int();
    int64_t mtime = d["mtime"].as_int();
    out += fmt::format("{:<31} {:>8} {:<20} (incoming, not picked up yet, {} old)\n\n",
                       printable_name(d["name"].as_string()), d["size"].as_int(),
                       local_time(mtime, "%a %b %e %H:%M:%S"), format_age(now - mtime));
  }
  size_t requests = msgs.size() + drops.size();
  out += fmt::format("-- {} Kbytes in {} Request{}.\n", (bytes + 1023) / 1024, requests,
                     requests == 1 ? "" : "s");
  if (list["truncated"].as_bool()) out += "(list truncated; narrow it with --tier, --domain or --limit)\n";
  return out;
}

std::string format_show(const Json& show, int64_t now) {
  const Json& m = show["message"];
  Table head({"id:", m["id"].as_string()});
  std::string sender = m["sender"].as_string();
  head.add({"place:", place_of(m) + (m["held"].as_bool() ? " (held)" : "")});
  head.add({"sender:", "<" + sender + ">"});
  head.add({"size:", std::to_string(m["size"].as_int())});
  head.add({"arrived:", when(m["arrived"], now)});
  head.add({"attempts:", std::to_string(m["attempts"].as_int())});
  head.add({"last attempt:", when(m["last_attempt"], now)});
  head.add({"next attempt:", when(m["next_attempt"], now)});
  if (!m["reason"].as_string().empty()) head.add({"failed:", m["reason"].as_string()});
  // DSN requests (RFC 3461) in SMTP parameter style, only when the submission made any.
  auto params = [](std::initializer_list<std::pair<const char*, const Json*>> kv) {
    std::string p;
    for (const auto& [k, v] : kv)
      if (!v->as_string().empty()) p += (p.empty() ? "" : " ") + std::string(k) + "=" + v->as_string();
    return p;
  };
  if (std::string d = params({{"RET", &m["ret"]}, {"ENVID", &m["envid"]}}); !d.empty()) head.add({"dsn:", d});
  std::string out = head.render() + "\n";
  bool any_dsn = false;
  for (const auto& r : m["recipients"].as_array()) any_dsn |= !r["notify"].is_null() || !r["orcpt"].is_null();
  Table rcpts(any_dsn ? std::vector<std::string>{"recipient", "state", "attempts", "dsn", "last reply"}
                      : std::vector<std::string>{"recipient", "state", "attempts", "last reply"},
              {2});
  for (const auto& r : m["recipients"].as_array()) {
    std::vector<std::string> row{r["address"].as_string(), r["state"].as_string(),
                                 std::to_string(r["attempts"].as_int())};
    if (any_dsn) {
      std::string d = params({{"NOTIFY", &r["notify"]}, {"ORCPT", &r["orcpt"]}});
      row.push_back(d.empty() ? "-" : d);
    }
    row.push_back(r["last_reply"].as_string());
    rcpts.add(row);
  }
  out += rcpts.render() + "\nheaders:\n" + indent(m["headers"].as_string(), "  ");
  if (m["headers_truncated"].as_bool()) out += "  [header section truncated]\n";
  if (!m["headers_error"].as_string().empty()) out += "  [" + m["headers_error"].as_string() + "]\n";
  return out;
}

std::string format_op(const Json& a, std::string_view command) {
  std::string out;
  if (command == "flush") {
    out +=
        fmt::format("flushed {} message{}\n", a["flushed"].as_int(), a["flushed"].as_int() == 1 ? "" : "s");
  } else {
    for (const auto& id : a["done"].as_array()) out += fmt::format("{}: {}\n", id.as_string(), command);
  }
  return out;
}

}  // namespace spoold::ctl
