// config/loader.cpp — walks the YAML tree key by key, filling a Config from its defaults.
// Rule: collect every problem (not just the first) as "file:line:col: key: what", counted from 1,
// and never let a yaml-cpp exception escape: the caller gets a Result.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string_view>

#include <fmt/format.h>

#include "common/ascii.h"
#include "common/mailbox.h"
#include "config/aliases.h"
#include "config/config.h"
#include "config/fast_yaml.h"
#include "config/hostname.h"
#include "idna/idna.h"

namespace spoold::config {
namespace {

std::vector<Tier> default_tiers() {
  using std::chrono::hours;
  return {{0s, 1},         {30min, 3},       {hours(4), 9},   {hours(8), 25},
          {hours(16), 50}, {hours(24), 100}, {hours(48), 200}};
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The first line of a password file. Read at load time, so it must not hang or exhaust memory:
// only a regular file (a FIFO or /dev/zero is refused, opened without blocking) of at most
// kMaxSecretFile bytes; a trailing CR/LF is not part of the secret.
constexpr off_t kMaxSecretFile = 64 * 1024;

Result<std::string> read_secret(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Error{fmt::format("cannot read password file '{}': {}", path, std::strerror(errno))};
  struct FdGuard {
    int fd;
    ~FdGuard() { ::close(fd); }
  } guard{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return Error{fmt::format("cannot read password file '{}': {}", path, std::strerror(errno))};
  if (!S_ISREG(st.st_mode)) return Error{fmt::format("password file '{}' is not a regular file", path)};
  if (st.st_size > kMaxSecretFile)
    return Error{fmt::format("password file '{}' is too large ({} bytes, at most {})", path,
                             static_cast<long long>(st.st_size), static_cast<long long>(kMaxSecretFile))};
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{fmt::format("cannot read password file '{}': {}", path, std::strerror(errno))};
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  auto eol = data.find('\n');
  if (eol != std::string::npos) data.resize(eol);
  if (!data.empty() && data.back() == '\r') data.pop_back();
  return data;
}

bool valid_hostport(const std::string& s) {
  if (s.empty()) return false;
  std::string host = s;
  if (s.front() == '[') {  // [v6]:port
    auto close = s.find(']');
    if (close == std::string::npos) return false;
    if (close + 1 < s.size()) {
      if (s[close + 1] != ':') return false;
      auto port = s.substr(close + 2);
      if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit)) return false;
      int p = std::stoi(port);
      if (p < 1 || p > 65535) return false;
    }
    return close > 1;
  }
  auto colon = s.rfind(':');
  if (colon != std::string::npos && s.find(':') == colon) {
    auto port = s.substr(colon + 1);
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit)) return false;
    int p = std::stoi(port);
    if (p < 1 || p > 65535) return false;
    host = s.substr(0, colon);
  } else if (colon != std::string::npos) {
    return false;  // bare IPv6 must be bracketed when a port may follow
  }
  if (host.empty()) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

bool valid_domain(const std::string& d) {
  return mailbox::detail::valid_domain_name(d, false);
}

// Both listeners would take the same port on the same address: equal, or one takes every address
// ("25") or every address of the other's family (0.0.0.0, ::; IPv6 sockets are IPV6_V6ONLY).
bool overlaps(const Listener& a, const Listener& b) {
  if (a.port != b.port) return false;
  if (a.host == b.host || a.host.empty() || b.host.empty()) return true;
  bool a6 = a.host.find(':') != std::string::npos, b6 = b.host.find(':') != std::string::npos;
  if (a6 != b6) return false;
  auto any = [](const std::string& h) { return h == "0.0.0.0" || h == "::"; };
  return any(a.host) || any(b.host);
}

bool valid_pattern(const std::string& p) {
  if (p == "*") return true;
  std::string d = p.rfind("*.", 0) == 0 ? p.substr(2) : p;
  if (d.empty() || d.front() == '.' || d.find("..") != std::string::npos) return false;
  return std::all_of(d.begin(), d.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

class Loader {
 public:
  Loader(std::string file, const LoadOptions& options) : file_(std::move(file)), options_(options) {}

  Result<Config> run(const std::string& text) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
      return make_error(
          fmt::format("{}:{}:{}: YAML syntax: {}", file_, e.mark.line + 1, e.mark.column + 1, e.msg));
    }
    return run_tree(root);
  }

  Result<Config> run_tree(const YAML::Node& root) {
    Config c;
    c.source = file_;
    c.queue.tiers = default_tiers();
    if (root.IsNull()) {
      // An empty file is a valid config: every default applies.
    } else if (!root.IsMap()) {
      error(root, "", "the top level must be a mapping of keys");
    } else {
      load_root(root, c);
    }
    if (c.hostname.empty()) {
      auto h = default_hostname();
      c.hostname = std::move(h.name);
      if (!h.warning.empty()) c.warnings.push_back(std::move(h.warning));
    }
    if (c.instance.empty()) c.instance = c.hostname;
    if (options_.read_aliases_file && has_aliases_file_) load_aliases_file(c);
    // Whether a target is local depends on the hostname, so loops are looked for once it is known.
    for (const auto& loop : alias_loops(c.aliases, alias_order_, c.hostname)) {
      if (auto node = alias_nodes_.find(loop.name); node != alias_nodes_.end())
        error(node->second, "aliases." + node->second.Scalar(), "alias loop: " + loop.chain);
      else if (auto at = file_alias_at_.find(loop.name); at != file_alias_at_.end())
        errors_.push_back(fmt::format("{}:{}:{}: alias loop: {}", c.aliases_file, at->second.first,
                                      at->second.second, loop.chain));
    }
    if (c.routes.empty()) c.routes.push_back(Route{{"*"}, RouteKind::mx, "", {}, {}, {}});
    if (!errors_.empty()) {
      std::string all;
      for (const auto& e : errors_) all += (all.empty() ? "" : "\n") + e;
      return make_error(all);
    }
    return c;
  }

 private:
  using Keys = std::vector<std::string>;

  void error(const YAML::Node& at, const std::string& key, const std::string& what) {
    auto m = at.Mark();
    int line = m.line < 0 ? 0 : m.line, col = m.column < 0 ? 0 : m.column;
    errors_.push_back(key.empty() ? fmt::format("{}:{}:{}: {}", file_, line + 1, col + 1, what)
                                  : fmt::format("{}:{}:{}: {}: {}", file_, line + 1, col + 1, key, what));
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  // Reports unknown keys (with a suggestion) and calls fn(key, value) for the known ones.
  void each_key(const YAML::Node& map, const std::string& path, const Keys& allowed,
                const std::function<void(const std::string&, const YAML::Node&)>& fn) {
    if (!map.IsMap()) {
      error(map, path, "expected a mapping");
      return;
    }
    std::vector<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!it->first.IsScalar()) {
        error(it->first, path, "keys must be plain names");
        continue;
      }
      auto key = it->first.Scalar();
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        error(it->first, join(path, key), "duplicate key");
        continue;
      }
      seen.push_back(key);
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string best;
        size_t best_d = 3;
        for (const auto& a : allowed) {
          size_t d = edit_distance(key, a);
          if (d < best_d) best_d = d, best = a;
        }
        // A shortened name ("prio") is as likely a slip as a typo.
        if (best.empty() && key.size() >= 3)
          for (const auto& a : allowed)
            if (a.rfind(key, 0) == 0) best = a;
        error(it->first, join(path, key),
              best.empty() ? "unknown key" : fmt::format("unknown key (did you mean '{}'?)", best));
        continue;
      }
      fn(key, it->second);
    }
  }

  bool scalar(const YAML::Node& n, const std::string& key, std::string& out, const char* expected) {
    if (!n.IsScalar()) {
      error(n, key, fmt::format("expected {}", expected));
      return false;
    }
    out = n.Scalar();
    return true;
  }

  void str(const YAML::Node& n, const std::string& key, std::string& out) { scalar(n, key, out, "a string"); }

  void integer(const YAML::Node& n, const std::string& key, int& out, long min, long max) {
    std::string s;
    if (!scalar(n, key, s, "an integer")) return;
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end || errno) return error(n, key, fmt::format("expected an integer, got '{}'", s));
    if (v < min || v > max)
      return error(n, key, fmt::format("must be between {} and {}, got {}", min, max, v));
    out = static_cast<int>(v);
  }

  void number(const YAML::Node& n, const std::string& key, double& out, double min) {
    std::string s;
    if (!scalar(n, key, s, "a number")) return;
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end) return error(n, key, fmt::format("expected a number, got '{}'", s));
    if (!(v >= min)) return error(n, key, fmt::format("must be at least {}, got {}", min, s));
    out = v;
  }

  void boolean(const YAML::Node& n, const std::string& key, bool& out) {
    std::string s;
    if (!scalar(n, key, s, "true or false")) return;
    if (s == "true" || s == "yes" || s == "on") {
      out = true;
    } else if (s == "false" || s == "no" || s == "off") {
      out = false;
    } else {
      error(n, key, fmt::format("expected true or false, got '{}'", s));
    }
  }

  void duration(const YAML::Node& n, const std::string& key, Duration& out, Duration min = Duration(0),
                Duration max = Duration::max()) {
    std::string s;
    if (!scalar(n, key, s, "a duration like 90s, 30m, 4h, 2d")) return;
    auto d = parse_duration(s);
    if (!d) return error(n, key, fmt::format("bad duration '{}' (use e.g. 90, 90s, 500ms, 30m, 4h, 2d)", s));
    if (*d < min) return error(n, key, fmt::format("must be at least {}ms, got '{}'", min.count(), s));
    if (*d > max) return error(n, key, fmt::format("must be at most {}ms, got '{}'", max.count(), s));
    out = *d;
  }

  void size(const YAML::Node& n, const std::string& key, std::uint64_t& out) {
    std::string s;
    if (!scalar(n, key, s, "a size like 512, 10KB, 50MB")) return;
    auto v = parse_size(s);
    if (!v) return error(n, key, fmt::format("bad size '{}' (use e.g. 512, 10KB, 50MB)", s));
    if (*v == 0) return error(n, key, "must be greater than 0");
    out = *v;
  }

  // One of `names`, else "'<string>' is not one of a | b | c" (the spellings in table order). Takes
  // a table of common/delivery_policy.h or a braced list {{"name", value}, ...}.
  template <class E, std::size_t N>
  void enumeration(const YAML::Node& n, const std::string& key, E& out, const EnumName<E> (&names)[N]) {
    std::string s;
    std::string choices;
    for (const auto& [name, _] : names) choices += (choices.empty() ? "" : " | ") + std::string(name);
    if (!scalar(n, key, s, choices.c_str())) return;
    if (auto value = value_in(names, s)) {
      out = *value;
      return;
    }
    error(n, key, fmt::format("'{}' is not one of {}", s, choices));
  }

  void strings(const YAML::Node& n, const std::string& key, std::vector<std::string>& out) {
    if (n.IsScalar()) {  // a single string is accepted where a list is expected
      out = {n.Scalar()};
      return;
    }
    if (!n.IsSequence()) return error(n, key, "expected a list of strings");
    out.clear();
    for (const auto& item : n) {
      if (!item.IsScalar()) {
        error(item, key, "expected a string");
        continue;
      }
      out.push_back(item.Scalar());
    }
  }

  // One address or a list of up to two, one per family, each an address of this host.
  void bind_address(const YAML::Node& n, const std::string& key, BindAddress& out) {
    std::vector<std::string> ips;
    strings(n, key, ips);
    out = {};
    for (size_t i = 0; i < ips.size(); ++i) {
      if (ips[i].empty() && ips.size() == 1) return;  // "": the kernel's choice
      if (std::string why = add_bind_address(out, ips[i]); !why.empty())
        error(n.IsSequence() ? n[i] : n, key, why);
    }
  }

  // strings(), each one also checked by `valid`; a bad one is an error at its own list item:
  // "'<string>' <is_not>".
  void strings(const YAML::Node& n, const std::string& key, std::vector<std::string>& out,
               bool (*valid)(const std::string&), std::string_view is_not) {
    strings(n, key, out);
    for (size_t i = 0; i < out.size(); ++i)
      if (!valid(out[i])) error(n.IsSequence() ? n[i] : n, key, fmt::format("'{}' {}", out[i], is_not));
  }

  void load_root(const YAML::Node& root, Config& c) {
    each_key(root, "",
             {"hostname", "instance", "spool_dir", "control_socket", "queue", "delivery", "dns", "relays",
              "routes", "logging", "listen", "aliases", "aliases_file", "admin_address", "rewrite", "hooks",
              "usage_log"},
             [&](const std::string& k, const YAML::Node& v) {
               if (k == "hostname") str(v, k, c.hostname);
               if (k == "instance") str(v, k, c.instance);
               if (k == "spool_dir") str(v, k, c.spool_dir);
               if (k == "control_socket") str(v, k, c.control_socket);
               if (k == "queue") load_queue(v, c.queue);
               if (k == "delivery") load_delivery(v, c.delivery);
               if (k == "dns") load_dns(v, c.dns);
               if (k == "relays") load_relays(v, c.relays);
               if (k == "logging") load_logging(v, c.logging);
               if (k == "listen") load_listen(v, c.listen);
               if (k == "aliases") load_aliases(v, c.aliases);
               if (k == "aliases_file") {
                 size_t before = errors_.size();
                 existing_file(v, k, c.aliases_file);
                 if (errors_.size() == before && !c.aliases_file.empty())
                   aliases_file_node_ = v, has_aliases_file_ = true;
               }
               if (k == "admin_address") mailbox_or_empty(v, k, c.admin_address);
               if (k == "rewrite") {
                 RewriteOverride r;
                 load_rewrite(v, "rewrite", r);
                 c.rewrite = c.rewrite.with(r);
               }
               if (k == "hooks")
                 each_key(v, "hooks", {"on_outcome"}, [&](const std::string&, const YAML::Node& h) {
                   load_outcome_hook(h, c.hooks.on_outcome);
                 });
               if (k == "usage_log") load_usage_log(v, c.usage_log);
             });
    // Routes refer to relays, so they are checked once all relays are known.
    if (auto r = root["routes"]) load_routes(r, c);
    if (c.spool_dir.empty()) error(root["spool_dir"], "spool_dir", "must not be empty");
    if (c.spool_dir.size() > 0 && c.spool_dir.front() != '/' && root["spool_dir"])
      error(root["spool_dir"], "spool_dir", "must be an absolute path");
    if (c.queue.delay_warning_tier >= static_cast<int>(c.queue.tiers.size()) && root["queue"])
      error(root["queue"]["delay_warning_tier"] ? root["queue"]["delay_warning_tier"] : root["queue"],
            "queue.delay_warning_tier",
            fmt::format("must name an existing tier (0 to {}), got {}", c.queue.tiers.size() - 1,
                        c.queue.delay_warning_tier));
  }

  void load_queue(const YAML::Node& n, Queue& q) {
    each_key(n, "queue",
             {"scan_interval", "tiers", "max_message_size", "lock_stale_after", "delay_warning_tier",
              "failed_retention"},
             [&](const std::string& k, const YAML::Node& v) {
               std::string key = "queue." + k;
               if (k == "scan_interval") duration(v, key, q.scan_interval, Duration(10));
               if (k == "tiers") load_tiers(v, q.tiers);
               if (k == "max_message_size") size(v, key, q.max_message_size);
               if (k == "lock_stale_after") duration(v, key, q.lock_stale_after, Duration(1000));
               if (k == "delay_warning_tier") integer(v, key, q.delay_warning_tier, 0, 1000);
               if (k == "failed_retention") duration(v, key, q.failed_retention);
             });
  }

  void load_tiers(const YAML::Node& n, std::vector<Tier>& tiers) {
    if (!n.IsSequence()) return error(n, "queue.tiers", "expected a list of { delay, priority }");
    if (n.size() == 0) return error(n, "queue.tiers", "must have at least one tier");
    tiers.clear();
    size_t before = errors_.size();
    for (size_t i = 0; i < n.size(); ++i) {
      Tier t;
      std::string path = fmt::format("queue.tiers[{}]", i);
      each_key(n[i], path, {"delay", "priority"}, [&](const std::string& k, const YAML::Node& v) {
        if (k == "delay") duration(v, path + ".delay", t.delay);
        if (k == "priority") integer(v, path + ".priority", t.priority, 1, 1'000'000);
      });
      if (n[i].IsMap() && !n[i]["delay"]) error(n[i], path, "missing 'delay'");
      if (errors_.size() == before && !tiers.empty() && t.delay <= tiers.back().delay)
        error(n[i]["delay"], path + ".delay", "tier delays must be strictly increasing");
      tiers.push_back(t);
    }
    if (errors_.size() == before && tiers.front().delay != Duration(0))
      error(n[0], "queue.tiers[0].delay", "the first tier must have delay 0 (new mail is due at once)");
  }

  void load_timeouts(const YAML::Node& n, Timeouts& t) {
    each_key(n, "delivery.timeouts", {"connect", "greeting", "ehlo", "mail", "rcpt", "data", "block", "dot"},
             [&](const std::string& k, const YAML::Node& v) {
               std::string key = "delivery.timeouts." + k;
               Duration* target = k == "connect"    ? &t.connect
                                  : k == "greeting" ? &t.greeting
                                  : k == "ehlo"     ? &t.ehlo
                                  : k == "mail"     ? &t.mail
                                  : k == "rcpt"     ? &t.rcpt
                                  : k == "data"     ? &t.data
                                  : k == "block"    ? &t.block
                                                    : &t.dot;
               duration(v, key, *target, Duration(1));
             });
  }

  void load_delivery(const YAML::Node& n, Delivery& d) {
    each_key(
        n, "delivery",
        {"max_sessions", "max_sessions_per_destination", "max_connection_time", "max_messages_per_connection",
         "idle_timeout", "envelope_limit", "rate_limit", "port", "bind_address", "tls", "ca_file",
         "connect_attempts", "talk_attempts", "timeouts", "transcript_dir"},
        [&](const std::string& k, const YAML::Node& v) {
          std::string key = "delivery." + k;
          if (k == "max_sessions") integer(v, key, d.max_sessions, 1, 100'000);
          if (k == "max_sessions_per_destination")
            integer(v, key, d.max_sessions_per_destination, 1, 100'000);
          if (k == "max_connection_time") duration(v, key, d.max_connection_time, Duration(1));
          if (k == "max_messages_per_connection") integer(v, key, d.max_messages_per_connection, 0, INT_MAX);
          if (k == "idle_timeout") duration(v, key, d.idle_timeout);
          if (k == "envelope_limit") integer(v, key, d.envelope_limit, 1, 100'000);
          if (k == "rate_limit") number(v, key, d.rate_limit, 0);
          if (k == "port") integer(v, key, d.port, 1, 65535);
          if (k == "bind_address") bind_address(v, key, d.bind_address);
          if (k == "tls") enumeration(v, key, d.tls, tls_policy_names);
          if (k == "ca_file") readable_path(v, key, d.ca_file);
          if (k == "connect_attempts") integer(v, key, d.connect_attempts, 1, 100);
          if (k == "talk_attempts") integer(v, key, d.talk_attempts, 1, 100);
          if (k == "timeouts") load_timeouts(v, d.timeouts);
          if (k == "transcript_dir") str(v, key, d.transcript_dir);
        });
    if (d.max_sessions_per_destination > d.max_sessions && n["max_sessions_per_destination"])
      error(n["max_sessions_per_destination"], "delivery.max_sessions_per_destination",
            fmt::format("must not exceed delivery.max_sessions ({})", d.max_sessions));
  }

  void readable_path(const YAML::Node& n, const std::string& key, std::string& out) {
    str(n, key, out);
    if (!out.empty() && access(out.c_str(), R_OK) != 0)
      error(n, key, fmt::format("cannot read '{}': {}", out, std::strerror(errno)));
  }

  // A path that, when set, names a readable regular file now (its contents are read later).
  void existing_file(const YAML::Node& n, const std::string& key, std::string& out) {
    if (!scalar(n, key, out, "a path")) return;
    if (out.empty()) return;
    struct stat st {};
    if (::stat(out.c_str(), &st) != 0 || access(out.c_str(), R_OK) != 0)
      return error(n, key, fmt::format("cannot read '{}': {}", out, std::strerror(errno)));
    if (!S_ISREG(st.st_mode)) return error(n, key, fmt::format("'{}' is not a regular file", out));
  }

  void mailbox_or_empty(const YAML::Node& n, const std::string& key, std::string& out) {
    if (!scalar(n, key, out, "a mailbox (local@domain) or \"\"")) return;
    if (!out.empty() && !mailbox::valid_mailbox(out))
      error(n, key, fmt::format("'{}' is not a mailbox (local@domain)", out));
  }

  void load_listen(const YAML::Node& n, std::vector<Listener>& out) {
    if (!n.IsSequence()) return error(n, "listen", "expected a list of listeners");
    for (size_t i = 0; i < n.size(); ++i) {
      std::string path = fmt::format("listen[{}]", i);
      Listener l;
      l.relay_from = {*parse_network("127.0.0.0/8"), *parse_network("::1/128")};
      bool address_ok = false;
      each_key(n[i], path,
               {"address", "relay_from", "auth", "tls", "max_sessions", "max_sessions_per_client",
                "max_recipients", "timeout", "min_data_rate", "reverse_lookup"},
               [&](const std::string& k, const YAML::Node& v) {
                 std::string key = fmt::format("{}.{}", path, k);
                 if (k == "address") {
                   if (!scalar(v, key, l.address, "an address like 127.0.0.1:25, [::1]:25 or 25")) return;
                   std::string why;
                   auto a = parse_listen_address(l.address, &why);
                   if (!a) return error(v, key, fmt::format("'{}' {}", l.address, why));
                   l.host = a->host;
                   l.port = a->port;
                   address_ok = true;
                 }
                 if (k == "relay_from") load_networks(v, key, l.relay_from);
                 if (k == "auth")
                   each_key(v, key, {"users_file"}, [&](const std::string&, const YAML::Node& f) {
                     existing_file(f, key + ".users_file", l.users_file);
                   });
                 if (k == "tls") load_listener_tls(v, key, l.tls);
                 if (k == "max_sessions") integer(v, key, l.max_sessions, 1, 100'000);
                 if (k == "max_sessions_per_client") integer(v, key, l.max_sessions_per_client, 1, 100'000);
                 if (k == "min_data_rate") integer(v, key, l.min_data_rate, 0, 1'000'000'000);
                 if (k == "max_recipients") integer(v, key, l.max_recipients, 1, 100'000);
                 if (k == "timeout") duration(v, key, l.timeout, 1s, 1h);
                 if (k == "reverse_lookup") boolean(v, key, l.reverse_lookup);
               });
      if (!n[i].IsMap()) continue;
      if (!n[i]["address"]) error(n[i], path, "missing 'address'");
      if (!address_ok) continue;
      for (size_t j = 0; j < out.size(); ++j) {
        if (!overlaps(out[j], l)) continue;
        error(n[i]["address"], path + ".address",
              fmt::format(fmt::runtime(out[j].host == l.host ? "'{}' is the same address as listen[{}] ('{}')"
                                                             : "'{}' overlaps listen[{}] ('{}') on port {}"),
                          l.address, j, out[j].address, l.port));
        break;
      }
      out.push_back(std::move(l));
    }
  }

  void load_networks(const YAML::Node& n, const std::string& key, std::vector<Network>& out) {
    std::vector<std::string> texts;
    size_t before = errors_.size();
    strings(n, key, texts);
    if (errors_.size() != before) return;
    out.clear();
    for (size_t i = 0; i < texts.size(); ++i) {
      std::string why;
      if (auto net = parse_network(texts[i], &why))
        out.push_back(*net);
      else
        error(n.IsSequence() ? n[i] : n, key, fmt::format("'{}' {}", texts[i], why));
    }
  }

  void load_listener_tls(const YAML::Node& n, const std::string& path, ListenerTls& t) {
    each_key(n, path, {"cert_file", "key_file", "implicit", "new_sessions_per_minute"},
             [&](const std::string& k, const YAML::Node& v) {
               std::string key = path + "." + k;
               if (k == "cert_file") existing_file(v, key, t.cert_file);
               if (k == "key_file") existing_file(v, key, t.key_file);
               if (k == "implicit") boolean(v, key, t.implicit);
               if (k == "new_sessions_per_minute") integer(v, key, t.new_sessions_per_minute, 0, 1'000'000);
             });
    if (!n.IsMap()) return;
    bool cert = n["cert_file"] && n["cert_file"].IsScalar() && !n["cert_file"].Scalar().empty();
    bool key = n["key_file"] && n["key_file"].IsScalar() && !n["key_file"].Scalar().empty();
    if (cert && !key) error(n, path, "cert_file needs key_file too");
    if (key && !cert) error(n, path, "key_file needs cert_file too");
    if (t.implicit && !(cert && key))
      error(n["implicit"], path + ".implicit", "needs cert_file and key_file");
  }

  void load_aliases(const YAML::Node& n, std::map<std::string, std::vector<std::string>>& out) {
    if (!n.IsMap()) return error(n, "aliases", "expected a mapping of local names to addresses");
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!it->first.IsScalar()) {
        error(it->first, "aliases", "keys must be plain names");
        continue;
      }
      const YAML::Node at = it->first, v = it->second;
      const std::string name = at.Scalar();
      std::string key = "aliases." + name, lower = ascii_lower(name);
      if (name.find('@') != std::string::npos) {
        error(at, key, "an alias is a local name, without '@'");
        continue;
      }
      if (!mailbox::valid_dot_string(name)) {
        error(at, key, fmt::format("'{}' is not a local name", name));
        continue;
      }
      if (out.count(lower)) {
        error(at, key, "duplicate alias (names are compared without case)");
        continue;
      }
      if (!v.IsScalar() && !v.IsSequence()) {
        error(v.IsNull() ? at : v, key, "expected an address or a list of addresses");
        continue;
      }
      std::vector<std::string> targets;
      strings(v, key, targets);
      if (targets.empty()) error(v, key, "expected at least one address");
      for (size_t i = 0; i < targets.size(); ++i) {
        std::string& t = targets[i];
        if (t.find('@') != std::string::npos ? mailbox::valid_mailbox(t) : mailbox::valid_dot_string(t)) {
          if (t.find('@') == std::string::npos) t = ascii_lower(t);
          continue;
        }
        error(v.IsSequence() ? v[i] : v, key,
              fmt::format("'{}' is not a mailbox (local@domain) or a local name", t));
      }
      out[lower] = std::move(targets);
      alias_order_.push_back(lower);
      alias_nodes_[lower] = at;
    }
  }

  // aliases_file's entries join the config's; a name the config has keeps the config's targets.
  void load_aliases_file(Config& c) {
    auto text = read_aliases_text(c.aliases_file);
    if (!text) return error(aliases_file_node_, "aliases_file", text.error().message);
    auto entries = parse_aliases(*text, c.aliases_file);
    if (!entries) {
      std::istringstream lines(entries.error().message);
      for (std::string line; std::getline(lines, line);) errors_.push_back(line);
      return;
    }
    for (auto& e : *entries) {
      if (c.aliases.count(e.name)) {
        c.warnings.push_back(fmt::format("{}:{}:{}: alias '{}' is also in the config's aliases, which win",
                                         c.aliases_file, e.line, e.column, e.name));
        continue;
      }
      file_alias_at_[e.name] = {e.line, e.column};
      alias_order_.push_back(e.name);
      c.aliases[e.name] = std::move(e.targets);
      ++c.aliases_from_file;
    }
  }

  void load_rewrite(const YAML::Node& n, const std::string& path, RewriteOverride& r) {
    each_key(n, path, {"envelope_from", "masquerade_domains"},
             [&](const std::string& k, const YAML::Node& v) {
               std::string key = path + "." + k;
               if (k == "envelope_from") mailbox_or_empty(v, key, r.envelope_from.emplace());
               if (k == "masquerade_domains") {
                 auto& domains = r.masquerade_domains.emplace();
                 strings(v, key, domains, valid_domain, "is not a domain name");
                 for (auto& d : domains) d = ascii_lower(d);
               }
             });
  }

  void load_dns(const YAML::Node& n, Dns& d) {
    each_key(n, "dns", {"servers", "timeout", "tries", "address_preference", "cache_max_ttl", "negative_ttl"},
             [&](const std::string& k, const YAML::Node& v) {
               std::string key = "dns." + k;
               if (k == "servers") {
                 strings(v, key, d.servers, valid_hostport, "is not host:port or an IP address");
               }
               if (k == "timeout") duration(v, key, d.timeout, Duration(10));
               if (k == "tries") integer(v, key, d.tries, 1, 20);
               if (k == "address_preference")
                 enumeration(v, key, d.address_preference, address_preference_names);
               if (k == "cache_max_ttl") duration(v, key, d.cache_max_ttl);
               if (k == "negative_ttl") duration(v, key, d.negative_ttl);
             });
  }

  void load_auth(const YAML::Node& n, const std::string& path, Auth& a) {
    each_key(n, path, {"mechanism", "user", "password_file"}, [&](const std::string& k, const YAML::Node& v) {
      std::string key = path + "." + k;
      if (k == "mechanism") enumeration(v, key, a.mechanism, auth_mechanism_names);
      if (k == "user") str(v, key, a.user);
      if (k == "password_file") {
        str(v, key, a.password_file);
        auto secret = read_secret(a.password_file);
        if (!secret.ok())
          error(v, key, secret.error().message);
        else
          a.secret = std::move(*secret);
      }
    });
    if (n.IsMap() && !n["user"]) error(n, path, "missing 'user'");
    if (n.IsMap() && !n["password_file"]) error(n, path, "missing 'password_file'");
  }

  void load_server(const YAML::Node& n, const std::string& path, RelayServer& s) {
    bool port_given = false;
    each_key(
        n, path,
        {"host", "port", "tls", "verify", "auth", "max_messages", "max_messages_per_robin",
         "max_messages_while_awake", "sleep_length", "max_messages_per_connection", "talk_attempts",
         "rewrite"},
        [&](const std::string& k, const YAML::Node& v) {
          std::string key = path + "." + k;
          if (k == "host") str(v, key, s.host);
          if (k == "port") integer(v, key, s.port, 1, 65535), port_given = true;
          if (k == "tls")
            enumeration(
                v, key, s.tls,
                {{"none", RelayTls::none}, {"starttls", RelayTls::starttls}, {"smtps", RelayTls::smtps}});
          if (k == "verify") boolean(v, key, s.verify);
          if (k == "auth") load_auth(v, key, s.auth.emplace());
          if (k == "max_messages") integer(v, key, s.max_messages, 0, INT_MAX);
          if (k == "max_messages_per_robin") integer(v, key, s.max_messages_per_robin, 0, INT_MAX);
          if (k == "max_messages_while_awake") integer(v, key, s.max_messages_while_awake, 0, INT_MAX);
          if (k == "sleep_length") duration(v, key, s.sleep_length);
          if (k == "max_messages_per_connection")
            integer(v, key, s.max_messages_per_connection.emplace(), 0, INT_MAX);
          if (k == "talk_attempts") integer(v, key, s.talk_attempts.emplace(), 1, 100);
          if (k == "rewrite") load_rewrite(v, key, s.rewrite);
        });
    if (n.IsMap() && !n["host"]) error(n, path, "missing 'host'");
    if (!port_given && s.tls == RelayTls::smtps) s.port = 465;
  }

  void load_relays(const YAML::Node& n, std::vector<RelayGroup>& groups) {
    if (!n.IsMap()) return error(n, "relays", "expected a mapping of relay group names");
    for (auto it = n.begin(); it != n.end(); ++it) {
      RelayGroup g;
      g.name = it->first.Scalar();
      std::string path = "relays." + g.name;
      bool has_servers = false;
      each_key(it->second, path, {"strategy", "servers"}, [&](const std::string& k, const YAML::Node& v) {
        if (k == "strategy")
          enumeration(v, path + ".strategy", g.strategy,
                      {{"round_robin", RelayStrategy::round_robin}, {"failover", RelayStrategy::failover}});
        if (k == "servers") {
          has_servers = true;
          if (!v.IsSequence() || v.size() == 0)
            return error(v, path + ".servers", "expected a non-empty list");
          for (size_t i = 0; i < v.size(); ++i)
            load_server(v[i], fmt::format("{}.servers[{}]", path, i), g.servers.emplace_back());
        }
      });
      if (it->second.IsMap() && !has_servers) error(it->second, path, "missing 'servers'");
      groups.push_back(std::move(g));
    }
  }

  void load_routes(const YAML::Node& n, Config& c) {
    if (!n.IsSequence()) return error(n, "routes", "expected a list of routes");
    for (size_t i = 0; i < n.size(); ++i) {
      std::string path = fmt::format("routes[{}]", i);
      Route r;
      int kinds = 0;
      each_key(n[i], path,
               {"match", "relay", "hosts", "mx", "rewrite", "tls", "max_sessions", "rate_limit",
                "bind_address", "fallback_relay"},
               [&](const std::string& k, const YAML::Node& v) {
                 std::string key = fmt::format("{}.{}", path, k);
                 if (k == "match") {
                   strings(v, key, r.match);
                   for (size_t j = 0; j < r.match.size(); ++j) {
                     // Recipient domains are routed in A-label form (daemon/router.h), so a
                     // pattern written with U-labels is turned into one too.
                     std::string& p = r.match[j];
                     bool wild = p.rfind("*.", 0) == 0;
                     if (auto a = idna::to_ascii(wild ? p.substr(2) : p)) p = (wild ? "*." : "") + *a;
                     if (!valid_pattern(p))
                       error(v.IsSequence() ? v[j] : v, key,
                             fmt::format("'{}' is not a domain, '*.suffix' or '*'", p));
                   }
                 }
                 if (k == "relay") {
                   ++kinds;
                   r.kind = RouteKind::relay;
                   str(v, key, r.relay);
                   if (!r.relay.empty() && !c.relay(r.relay))
                     error(v, key, fmt::format("unknown relay group '{}'", r.relay));
                 }
                 if (k == "hosts") {
                   ++kinds;
                   r.kind = RouteKind::hosts;
                   strings(v, key, r.hosts, valid_hostport, "is not host or host:port");
                   if (r.hosts.empty()) error(v, key, "expected at least one host");
                 }
                 if (k == "mx") {
                   ++kinds;
                   r.kind = RouteKind::mx;
                   bool on = true;
                   boolean(v, key, on);
                   if (!on) error(v, key, "only 'mx: true' makes sense; leave the route out instead");
                 }
                 if (k == "rewrite") load_rewrite(v, key, r.rewrite);
                 if (k == "tls") enumeration(v, key, r.policy.tls.emplace(), tls_policy_names);
                 if (k == "max_sessions") {
                   integer(v, key, r.policy.max_sessions.emplace(), 1, 100'000);
                   if (*r.policy.max_sessions > c.delivery.max_sessions)
                     error(
                         v, key,
                         fmt::format("must not exceed delivery.max_sessions ({})", c.delivery.max_sessions));
                 }
                 if (k == "rate_limit") number(v, key, r.policy.rate_limit.emplace(), 0);
                 if (k == "bind_address") bind_address(v, key, r.policy.bind_address.emplace());
                 if (k == "fallback_relay") {
                   str(v, key, r.policy.fallback_relay.emplace());
                   if (!c.relay(*r.policy.fallback_relay))
                     error(v, key, fmt::format("unknown relay group '{}'", *r.policy.fallback_relay));
                 }
               });
      if (r.kind == RouteKind::relay && r.policy.fallback_relay && n[i].IsMap())
        error(n[i]["fallback_relay"], path + ".fallback_relay",
              "a relay route fails over within its group: list the fallback as another of its servers");
      if (r.kind == RouteKind::relay && r.policy.tls && n[i].IsMap())
        error(n[i]["tls"], path + ".tls",
              "a relay group's servers set their own tls (relays.G.servers[].tls)");
      if (!n[i].IsMap()) continue;
      if (!n[i]["match"]) error(n[i], path, "missing 'match'");
      if (kinds != 1) error(n[i], path, "needs exactly one of 'relay', 'hosts' or 'mx'");
      c.routes.push_back(std::move(r));
    }
  }

  void load_outcome_hook(const YAML::Node& n, OutcomeHook& h) {
    const std::string path = "hooks.on_outcome";
    each_key(
        n, path, {"exec", "statuses", "max_running", "timeout"},
        [&](const std::string& k, const YAML::Node& v) {
          std::string key = path + "." + k;
          if (k == "exec") {
            if (!scalar(v, key, h.exec, "a command line")) return;
            if (h.exec.empty()) return;
            auto words = split_command(h.exec);
            if (!words) return error(v, key, words.error().message);
            if (words->empty() || words->front().empty()) return error(v, key, "names no program");
            const std::string& prog = words->front();
            struct stat st {};
            if (prog.front() != '/') return error(v, key, fmt::format("'{}' must be an absolute path", prog));
            if (::stat(prog.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(prog.c_str(), X_OK) != 0)
              return error(v, key, fmt::format("'{}' is not an executable file", prog));
            h.argv = std::move(*words);
          }
          if (k == "statuses") {
            strings(
                v, key, h.statuses,
                [](const std::string& s) {
                  return s == "sent" || s == "deferred" || s == "bounced" || s == "expired";
                },
                "is not sent, deferred, bounced or expired");
            if (h.statuses.empty()) error(v, key, "expected at least one status");
          }
          if (k == "max_running") integer(v, key, h.max_running, 1, 64);
          if (k == "timeout") duration(v, key, h.timeout, 1s, 1h);
        });
  }

  void load_usage_log(const YAML::Node& n, UsageLog& u) {
    each_key(n, "usage_log", {"file", "interval", "save_interval"},
             [&](const std::string& k, const YAML::Node& v) {
               std::string key = "usage_log." + k;
               if (k == "file") {
                 if (!scalar(v, key, u.file, "a file name")) return;
                 if (!u.file.empty() && u.file.front() != '/')
                   error(v, key, fmt::format("'{}' must be an absolute path", u.file));
               }
               if (k == "interval") duration(v, key, u.interval, 1s, std::chrono::hours(24 * 31));
               if (k == "save_interval") duration(v, key, u.save_interval, 1s, 1h);
             });
  }

  void load_logging(const YAML::Node& n, Logging& l) {
    each_key(n, "logging", {"level", "format"}, [&](const std::string& k, const YAML::Node& v) {
      if (k == "level")
        enumeration(v, "logging.level", l.level,
                    {{"debug", LogLevel::debug},
                     {"info", LogLevel::info},
                     {"warning", LogLevel::warning},
                     {"error", LogLevel::error}});
      if (k == "format")
        enumeration(v, "logging.format", l.format, {{"text", LogFormat::text}, {"json", LogFormat::json}});
    });
  }

  std::string file_;
  LoadOptions options_;
  std::vector<std::string> errors_;
  bool has_aliases_file_ = false;                             // aliases_file names a readable regular file…
  YAML::Node aliases_file_node_;                              // …written here
  std::vector<std::string> alias_order_;                      // alias names as written: config, then file
  std::map<std::string, YAML::Node> alias_nodes_;             // the config's aliases: name → its key
  std::map<std::string, std::pair<int, int>> file_alias_at_;  // aliases_file's: name → line, column
};

}  // namespace

Result<Config> load_string(const std::string& yaml, const std::string& name, const LoadOptions& options) {
  // The common case (a valid config in the usual subset of YAML) without yaml-cpp's scanner; any
  // error is reported from yaml-cpp's tree, which knows every node's line and column.
  if (auto tree = fast_load(yaml)) {
    try {
      if (auto c = Loader(name, options).run_tree(*tree); c.ok()) return c;
    } catch (const YAML::Exception&) {
    }
  }
  try {
    return Loader(name, options).run(yaml);
  } catch (const YAML::Exception& e) {
    return make_error(fmt::format("{}:{}:{}: {}", name, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

Result<Config> load_file(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return make_error(fmt::format("{}:1:1: cannot read config: {}", path, std::strerror(errno)), errno);
  std::stringstream ss;
  ss << in.rdbuf();
  return load_string(ss.str(), path, options);
}

}  // namespace spoold::config
