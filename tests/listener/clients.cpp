// tests/listener/clients.cpp — see clients.h.
#include "tests/listener/clients.h"

#include <sys/wait.h>

#include <catch2/catch.hpp>

namespace spoold::test::listener {

using control::Json;

Run run(const TempDir& dir, std::vector<std::string> argv, std::chrono::milliseconds timeout,
        const std::string* input) {
  static int n = 0;
  std::string base = dir / ("run-" + std::to_string(++n));
  if (input) {  // through a shell: the fixture's Process has no stdin of its own
    write_file(base + ".in", *input);
    argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" < " + base + ".in"});
  }
  Process p(std::move(argv), base + ".out", base + ".err");
  int st = p.wait(timeout);
  Run r;
  r.status = st == -1 ? -1 : (WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  r.out = read_file(base + ".out");
  r.err = read_file(base + ".err");
  return r;
}

std::string client_script() {
  return std::string(SPOOLD_SOURCE_DIR) + "/tests/listener/smtp_client.py";
}

std::string ctl_binary(const std::string& name) {
  return std::string(SPOOLD_BINARY_DIR) + "/ctl/" + name;
}

std::vector<Json> json_lines(const std::string& text) {
  std::vector<Json> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty()) {
      auto j = Json::parse(line);
      if (j.ok()) out.push_back(std::move(*j));
    }
    pos = nl + 1;
  }
  return out;
}

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    h += d[c >> 4];
    h += d[c & 15];
  }
  return h;
}

std::string queue_id(const std::string& reply) {
  auto p = reply.find("queued as ");
  if (p == std::string::npos) return "";
  return reply.substr(p + 10, reply.find_first_of(" \r\n", p + 10) - (p + 10));
}

Json status(const Env& env) {
  Run r = run(env.dir(), {ctl_binary("spoolctl"), "--config", env.config_path(), "status", "--json"});
  auto j = Json::parse(r.out);
  return j.ok() ? *j : Json();
}

ListenEnv::ListenEnv(const std::string& listen_extra, const std::string& extra_yaml,
                     std::vector<std::string> sink_args)
    : port(free_port()),
      env("listen:\n  - address: \"127.0.0.1:" + std::to_string(port) + "\"\n" +
              // No reverse lookups (against this machine's own resolver) unless a test asks.
              (listen_extra.find("reverse_lookup:") == std::string::npos ? "    reverse_lookup: false\n"
                                                                         : "") +
              listen_extra + extra_yaml,
          true, std::move(sink_args)) {}

void ListenEnv::start() {
  env.start();
  REQUIRE(wait_for_port("127.0.0.1", port, std::chrono::seconds(10)));
}

std::vector<Json> ListenEnv::send(std::vector<std::string> args) {
  std::vector<std::string> argv{system_python(), client_script(), "send", "--port", std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  Run r = run(env.dir(), argv);
  INFO(r.err);
  REQUIRE(r.status == 0);
  return json_lines(r.out);
}

Json ListenEnv::raw(const std::vector<std::string>& chunks, const std::vector<std::string>& extra) {
  std::vector<std::string> argv{system_python(), client_script(), "raw", "--port", std::to_string(port)};
  for (const auto& c : chunks) {
    argv.push_back("--send");
    argv.push_back(hex(c));
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  Run r = run(env.dir(), argv);
  INFO(r.err);
  REQUIRE(r.status == 0);
  auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 1);
  return lines[0];
}

}  // namespace spoold::test::listener
