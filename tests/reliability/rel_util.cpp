// tests/reliability/rel_util.cpp — see rel_util.h.
#include "tests/reliability/rel_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <unistd.h>
#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <stdexcept>

namespace spoold::test::rel {

std::string message(const std::string& mid, const std::string& from, const std::vector<std::string>& rcpts,
                    const std::string& body) {
  std::string m = "MAIL FROM:<" + from + ">\n";
  for (const auto& r : rcpts) m += "RCPT TO:<" + r + ">\n";
  m += "\nFrom: <" + from + ">\nTo: <" + rcpts.at(0) + ">\nSubject: reliability " + mid + "\nMessage-ID: <" +
       mid + ">\n\n" + body;
  return m;
}

std::string message_id(const std::string& data) {
  size_t pos = 0;
  while (pos < data.size()) {
    size_t eol = data.find('\n', pos);
    if (eol == std::string::npos) eol = data.size();
    std::string line = data.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;  // end of the header section
    if (line.size() > 11) {
      std::string name = line.substr(0, 11);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      if (name == "message-id:") {
        auto lt = line.find('<'), gt = line.find('>');
        if (lt != std::string::npos && gt != std::string::npos && gt > lt)
          return line.substr(lt + 1, gt - lt - 1);
      }
    }
    pos = eol + 1;
  }
  return "";
}

std::map<std::string, int> message_id_counts(const Sink& sink) {
  std::map<std::string, int> out;
  for (const auto& m : sink.messages()) ++out[message_id(m.data)];
  return out;
}

int run_spoold(const std::string& config, const std::vector<std::string>& args,
               const std::vector<std::string>& env, const std::string& log_path,
               std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{Env::spoold_binary(), "--config", config};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, "", log_path, env);
  int st = p.wait(timeout);
  if (st == -1) {
    p.stop(SIGKILL);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

namespace {
void walk(const std::string& root, const std::string& rel, std::vector<std::string>& out) {
  DIR* d = ::opendir((root + "/" + rel).c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string r = rel.empty() ? n : rel + "/" + n;
    struct stat st {};
    if (::lstat((root + "/" + r).c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode))
      walk(root, r, out);
    else
      out.push_back(r);
  }
  ::closedir(d);
}
}  // namespace

std::vector<std::string> spool_files(const std::string& spool) {
  std::vector<std::string> out;
  walk(spool, "", out);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> leftovers(const std::string& spool) {
  std::set<std::string> failed_ids;
  for (const auto& f : spool_files(spool))
    if (f.rfind("failed/", 0) == 0 && f.find('-') != std::string::npos)
      failed_ids.insert(f.substr(f.find('-') + 1));
  std::vector<std::string> out;
  for (const auto& f : spool_files(spool)) {
    if (f == "VERSION" || f.rfind("failed/", 0) == 0) {
      if (f.find(".lock") != std::string::npos) out.push_back(f);
      continue;
    }
    if (f.rfind("data/", 0) == 0 && failed_ids.count(f.substr(5)) && f.find(".lock") == std::string::npos)
      continue;
    // The usage totals of each instance are meant to outlive the run (one file each, no temps).
    if (f.rfind("usage/", 0) == 0 && f.find('/', 6) == std::string::npos && f[6] != '.') continue;
    out.push_back(f);
  }
  return out;
}

long rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

void route_domain(const Env& env, const std::string& domain, int port, const std::string& host) {
  std::string yaml = read_file(env.config_path());
  auto at = yaml.find("routes:\n");
  if (at == std::string::npos) throw std::runtime_error("no routes in " + env.config_path());
  yaml.insert(at + 8, "  - { match: [\"" + domain + "\"], hosts: [\"" + host + ":" + std::to_string(port) +
                          "\"] }\n");
  write_file(env.config_path(), yaml);
}

int find_pid(const std::string& needle) {
  for (const auto& n : list_dir("/proc")) {
    if (n.empty() || !std::isdigit(static_cast<unsigned char>(n[0]))) continue;
    std::string cmd = read_file("/proc/" + n + "/cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(needle) != std::string::npos && cmd.find("spoold") != std::string::npos) return std::stoi(n);
  }
  return 0;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

}  // namespace spoold::test::rel

namespace spoold::test::rel {

std::string instance_config(const Env& env, const std::string& instance, int port) {
  std::string yaml = read_file(env.config_path());
  std::string sock_key = "control_socket: ";
  auto at = yaml.find(sock_key);
  auto eol = yaml.find('\n', at);
  yaml.replace(at, eol - at, sock_key + (env.dir() / (instance + ".sock")));
  if (port != 0) {
    std::string from = "127.0.0.1:" + std::to_string(const_cast<Env&>(env).sink().port());
    for (auto p = yaml.find(from); p != std::string::npos; p = yaml.find(from, p + 1))
      yaml.replace(p, from.size(), "127.0.0.1:" + std::to_string(port));
  }
  yaml += "instance: " + instance + "\n";
  std::string path = env.dir() / (instance + ".yaml");
  write_file(path, yaml);
  return path;
}

Daemon::Daemon(const Env& env, const std::string& instance, const std::string& config,
               const std::vector<std::string>& environment)
    : log_(env.dir() / ("daemon-" + instance + ".log")) {
  std::vector<std::string> argv{Env::spoold_binary(), "--config", config};
  std::string sock = env.dir() / (instance + ".sock");
  ::unlink(sock.c_str());
  proc_ = std::make_unique<Process>(argv, "", log_, environment);
  if (!wait_until([&] { return ::access(sock.c_str(), F_OK) == 0; }, std::chrono::seconds(15)))
    throw std::runtime_error("spoold " + instance + " did not start: " + read_file(log_));
}

HostileServer::HostileServer(const TempDir& dir, const std::string& mode,
                             const std::vector<std::string>& extra, const std::string& host, int port,
                             bool probe)
    : port_(port ? port : free_port()) {
  std::string tag = "hostile-" + host + "-" + std::to_string(port_);
  log_ = dir / (tag + ".events");
  std::string ready = dir / (tag + ".ready");
  std::vector<std::string> argv{
      system_python(), std::string(SPOOLD_SOURCE_DIR) + "/tests/reliability/hostile_smtp.py",
      "--port",        std::to_string(port_),
      "--mode",        mode,
      "--log",         log_,
      "--ready",       ready,
      "--host",        host};
  argv.insert(argv.end(), extra.begin(), extra.end());
  proc_ = std::make_unique<Process>(argv, dir / (tag + ".out"), dir / (tag + ".err"));
  if (!wait_until([&] { return ::access(ready.c_str(), F_OK) == 0; }, std::chrono::seconds(20)) ||
      (probe && !wait_for_port(host, port_, std::chrono::seconds(10))))
    throw std::runtime_error("hostile server did not start: " + read_file(dir / (tag + ".err")));
}

size_t HostileServer::count(const std::string& event) const {
  size_t n = 0;
  std::string text = log();
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    auto sp = line.find(' ');
    if (sp != std::string::npos && line.compare(sp + 1, event.size(), event) == 0 &&
        (line.size() == sp + 1 + event.size() || line[sp + 1 + event.size()] == ' '))
      ++n;
    pos = eol + 1;
  }
  return n;
}

std::map<std::string, std::string> lock_owners(const std::string& spool) {
  std::map<std::string, std::string> out;
  for (const auto& n : list_dir(spool + "/data")) {
    if (n.size() < 6 || n.substr(n.size() - 5) != ".lock") continue;
    std::string text = read_file(spool + "/data/" + n);  // "" when it went away meanwhile
    if (auto sp = text.find(' '); sp != std::string::npos)
      out[n.substr(0, n.size() - 5)] = text.substr(0, sp);
  }
  return out;
}

std::map<std::string, double> arrival_times(const std::string& sink_dir) {
  std::map<std::string, double> out;
  for (const auto& n : list_dir(sink_dir)) {
    if (n.size() < 6 || n.substr(n.size() - 4) != ".eml") continue;
    struct stat st {};
    if (::stat((sink_dir + "/" + n).c_str(), &st) != 0) continue;
    double t = static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) / 1e9;
    std::string id = message_id(read_file(sink_dir + "/" + n));
    if (!out.count(id) || out[id] > t) out[id] = t;
  }
  return out;
}

std::vector<std::string> faketime_env(const std::string& offset) {
  return {"LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "FAKETIME=" + offset,
          "FAKETIME_DONT_RESET=1",
          // libfaketime would turn utimensat(NULL) ("now", as the lock refresh does) into an explicit
          // faked time; the kernel, and an NFS server (SET_TO_SERVER_TIME), stamp their own clock.
          // FAKE_UTIME=1 keeps the real behaviour (see docs/reliability.md).
          "FAKE_UTIME=1",
          // An ASan build would refuse a preload that comes before its runtime.
          "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:abort_on_error=1"};
}

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace spoold::test::rel
