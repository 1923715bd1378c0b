// daemon/main.cpp — `spoold [--config FILE] [--check-config] [--once] [--version]`.
// Exit codes: 0 success, 1 failure (message on stderr), 2 usage error.
#include <cstdio>
#include <cstring>
#include <string>

#include "config/config.h"
#include "daemon/daemon.h"

#ifndef SPOOLD_VERSION
#define SPOOLD_VERSION "0.1.0"
#endif

namespace {

int usage(const char* why) {
  if (why) std::fprintf(stderr, "spoold: %s\n", why);
  std::fprintf(stderr, "usage: spoold [--config FILE] [--check-config] [--once] [--version]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_flag;
  bool check = false, once = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" || a == "-c") {
      if (i + 1 >= argc) return usage("--config needs a file");
      config_flag = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_flag = a.substr(9);
    } else if (a == "--check-config") {
      check = true;
    } else if (a == "--once") {
      once = true;
    } else if (a == "--version" || a == "-V") {
      std::printf("spoold %s\n", SPOOLD_VERSION);
      return 0;
    } else if (a == "--help" || a == "-h") {
      usage(nullptr);
      return 0;
    } else {
      return usage(("unknown argument: " + a).c_str());
    }
  }
  std::string path = spoold::config::default_path(config_flag);
  auto cfg = spoold::config::load_file(path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.error().message.c_str());
    return 1;
  }
  auto shared = std::make_shared<const spoold::config::Config>(std::move(*cfg));
  if (check) {
    for (const auto& w : shared->warnings) std::fprintf(stderr, "%s: warning: %s\n", path.c_str(), w.c_str());
    std::printf("%s: configuration OK\n", path.c_str());
    return 0;
  }
  spoold::daemon::Daemon d(shared, spoold::daemon::RunOptions{once, path});
  return d.run();
}
