// config/fast_yaml.h — a small parser for the plain YAML subset spoold configs are written in (block
// mappings and sequences, one-line flow collections, plain and quoted one-line scalars, comments),
// building the same YAML::Node tree yaml-cpp builds, at a fraction of its cost: `sendmail` loads
// the config once per message, and yaml-cpp's scanner was more than half of such a run's
// instructions (issue 8, W2b).
// Rule: anything outside the subset — anchors, tags, block scalars, multi-line scalars, complex
// keys, tabs, documents, unusual escapes, duplicate keys — returns nullopt and yaml-cpp parses the
// text instead. The tree carries no marks (line/column), so the loader goes through yaml-cpp again
// for any config it finds an error in. tests/config and fuzz/config_fuzz check, input by input,
// that an accepted text gives exactly yaml-cpp's tree.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string_view>

namespace spoold::config {

std::optional<YAML::Node> fast_load(std::string_view text);

// Whether two trees are equal in type, scalar text, order of map entries and sequence items.
bool same_tree(const YAML::Node& a, const YAML::Node& b);

}  // namespace spoold::config
