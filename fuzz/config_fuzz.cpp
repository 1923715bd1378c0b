// fuzz/config_fuzz.cpp — libFuzzer target for the config loader (YAML → validated Config) and the
// duration / size value parsers that spoolctl and sendmail also use on user input.
// Rule: no input may crash, hang or throw out of load_string(); an error always names
// "<name>:line:col:" (docs/configuration.md: every error has its line and column); loading is deterministic;
// a value parser either refuses or returns a value that round-trips through its own unit; and
// whatever the fast YAML subset parser accepts, yaml-cpp parses to exactly the same tree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config.h"
#include "config/fast_yaml.h"

using namespace spoold::config;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  // password_file is read at load time; keep the fuzzer away from devices and the real file system.
  if (in.find("password_file") != std::string::npos) return 0;

  if (auto fast = fast_load(in)) {
    YAML::Node slow;
    try {
      slow = YAML::Load(in);
    } catch (const YAML::Exception&) {
      std::abort();  // accepted what yaml-cpp refuses
    }
    if (!same_tree(*fast, slow)) std::abort();
  }

  auto a = load_string(in, "fuzz.yaml");
  auto b = load_string(in, "fuzz.yaml");
  if (a.ok() != b.ok()) std::abort();
  if (!a.ok()) {
    if (a.error().message.rfind("fuzz.yaml:", 0) != 0) std::abort();
    if (a.error().message != b.error().message) std::abort();
  } else {
    if (a->queue.tiers.empty()) std::abort();  // defaults fill an absent list; an empty one is an error
    for (const auto& r : a->routes)
      if (r.kind == RouteKind::relay && a->relay(r.relay) == nullptr) std::abort();  // dangling relay name
    (void)a->route_for("example.org");
  }

  if (size <= 64) {
    if (auto d = parse_duration(in)) {
      if (d->count() < 0) std::abort();
      auto again = parse_duration(std::to_string(d->count()) + "ms");
      if (!again || *again != *d) std::abort();
    }
    if (auto s = parse_size(in)) {
      auto again = parse_size(std::to_string(*s));
      if (!again || *again != *s) std::abort();
    }
  }
  return 0;
}
