// tests/daemon/harness.cpp — see harness.h.
#include "tests/daemon/harness.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>

namespace spoold::test {

Sink::Sink(const std::string& dir, std::vector<std::string> extra_args, const std::string& host, int port)
    : dir_(dir), port_(port ? port : free_port()) {
  ::mkdir(dir.c_str(), 0755);
  std::vector<std::string> argv{
      system_python(), std::string(SPOOLD_SOURCE_DIR) + "/tests/support/smtp_sink.py",
      "--port",        std::to_string(port_),
      "--outdir",      dir,
      "--host",        host};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  proc_ = std::make_unique<Process>(argv, dir + ".out", dir + ".err");
  if (!wait_until([&] { return ::access((dir + "/ready").c_str(), F_OK) == 0; }, std::chrono::seconds(20)) ||
      !wait_for_port(host, port_, std::chrono::seconds(10)))
    throw std::runtime_error("SMTP sink " + host + ":" + std::to_string(port_) +
                             " did not start: " + read_file(dir + ".err"));
}

std::vector<SinkMessage> Sink::messages() const {
  std::vector<std::string> names = list_dir(dir_);
  std::sort(names.begin(), names.end());
  std::vector<SinkMessage> out;
  for (const auto& n : names) {
    if (n.size() < 5 || n.substr(n.size() - 5) != ".json") continue;
    std::string base = dir_ + "/" + n.substr(0, n.size() - 5);
    auto meta = control::Json::parse(read_file(base + ".json"));
    if (!meta.ok()) continue;
    out.push_back({*meta, read_file(base + ".eml")});
  }
  return out;
}

size_t Sink::count() const {
  size_t n = 0;
  for (const auto& f : list_dir(dir_))
    if (f.size() > 5 && f.substr(f.size() - 5) == ".json") ++n;
  return n;
}

bool Sink::wait_count(size_t n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return count() >= n; }, timeout);
}

size_t Sink::sessions() const {
  std::set<long long> s;
  for (const auto& m : messages()) s.insert(m.meta["session"].as_int());
  return s.size();
}

std::string Env::spoold_binary() {
  return std::string(SPOOLD_BINARY_DIR) + "/daemon/spoold";
}

Env::Env(const std::string& extra_yaml, bool with_sink, std::vector<std::string> sink_args) {
  if (with_sink) sink_ = std::make_unique<Sink>(dir_ / "sink", std::move(sink_args));
  std::string yaml =
      "hostname: spoold.test\n"
      "spool_dir: " +
      spool() +
      "\n"
      "control_socket: " +
      (dir_ / "control.sock") + "\n";
  bool has_queue = extra_yaml.find("queue:") != std::string::npos;
  bool has_routes = extra_yaml.find("routes:") != std::string::npos;
  bool has_delivery = extra_yaml.find("delivery:") != std::string::npos;
  if (!has_queue)
    yaml +=
        "queue:\n  scan_interval: 200ms\n  lock_stale_after: 5s\n  tiers:\n"
        "    - { delay: 0, priority: 1 }\n    - { delay: 1s, priority: 1 }\n    - { delay: 2s, priority: 1 "
        "}\n";
  if (!has_delivery)
    yaml +=
        "delivery:\n  idle_timeout: 1s\n"
        "  timeouts: { connect: 5s, greeting: 10s, ehlo: 10s, mail: 10s, rcpt: 10s, data: 10s, dot: 10s }\n";
  if (!has_routes && sink_)
    yaml += "routes:\n  - { match: [\"*\"], hosts: [\"127.0.0.1:" + std::to_string(sink_->port()) + "\"] }\n";
  yaml += extra_yaml;
  write_file(config_path(), yaml);
}

Env::~Env() {
  if (daemon_) stop(9);
}

void Env::drop(const std::string& name, const std::string& content) {
  ::mkdir(spool().c_str(), 0700);
  ::mkdir((spool() + "/tmp").c_str(), 0700);
  ::mkdir((spool() + "/incoming").c_str(), 0700);
  std::string tmp = spool() + "/tmp/drop-" + name;
  write_file(tmp, content);
  if (::rename(tmp.c_str(), (spool() + "/incoming/" + name).c_str()) != 0)
    throw std::runtime_error("rename into incoming failed");
}

int Env::run_once(std::chrono::milliseconds timeout) {
  std::string log = dir_ / ("once-" + std::to_string(++runs_) + ".log");
  Process p({spoold_binary(), "--config", config_path(), "--once"}, "", log);
  int st = p.wait(timeout);
  if (st == -1) {
    p.stop(SIGKILL);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

namespace {

// The daemon binds its control socket (the file appears) a moment before it listens on it.
bool accepts_connections(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

void Env::start(std::vector<std::string> env) {
  std::string log = dir_ / ("daemon-" + std::to_string(++runs_) + ".log");
  // A daemon killed with SIGKILL leaves its socket file: wait for the new daemon's own.
  ::unlink((dir_ / "control.sock").c_str());
  daemon_ = std::make_unique<Process>(std::vector<std::string>{spoold_binary(), "--config", config_path()},
                                      "", log, std::move(env));
  if (!wait_until([&] { return accepts_connections(dir_ / "control.sock"); }, std::chrono::seconds(10)))
    throw std::runtime_error("spoold did not start: " + this->log());
}

void Env::signal(int sig) {
  if (daemon_) ::kill(daemon_->pid(), sig);
}

int Env::daemon_pid() const {
  return daemon_ ? daemon_->pid() : -1;
}

int Env::stop(int sig) {
  if (!daemon_) return -1;
  int st = daemon_->stop(sig, std::chrono::seconds(40));
  daemon_.reset();
  return st == -1 ? -1 : (WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

std::string Env::log() const {
  std::string all;
  std::vector<std::string> names = list_dir(dir_.path());
  std::sort(names.begin(), names.end());
  for (const auto& n : names)
    if (n.size() > 4 && n.substr(n.size() - 4) == ".log") all += read_file(dir_ / n);
  return all;
}

std::vector<std::string> Env::entries(const std::string& place) const {
  std::vector<std::string> out;
  for (const auto& n : list_dir(spool() + "/" + place))
    if (n[0] != '.' && n.find(".lock") == std::string::npos && n.find(".reason") == std::string::npos)
      out.push_back(n);
  return out;
}

void make_certificate(const std::string& dir) {
  Process p({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=127.0.0.1", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"},
            dir + "/openssl.out", dir + "/openssl.err");
  int st = p.wait(std::chrono::seconds(60));
  if (st != 0) throw std::runtime_error("openssl req failed: " + read_file(dir + "/openssl.err"));
}

std::string envelope_message(const std::string& from, const std::vector<std::string>& rcpts,
                             const std::string& subject, const std::string& body) {
  std::string m = "MAIL FROM:<" + from + ">\n";
  for (const auto& r : rcpts) m += "RCPT TO:<" + r + ">\n";
  m += "\nFrom: <" + (from.empty() ? std::string("mailer-daemon@spoold.test") : from) + ">\n";
  m += "To: <" + (rcpts.empty() ? std::string("x@y") : rcpts[0]) + ">\n";
  m += "Subject: " + subject + "\n\n" + body;
  return m;
}

}  // namespace spoold::test
