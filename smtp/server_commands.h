// smtp/server_commands.h — parsing pieces of the server engine: a command line into verb and
// argument, a MAIL/RCPT path, ESMTP parameters (RFC 5321 §4.1.2, RFC 1869). Internal to smtp/
// (the engine and its tests).
// Rule: pure functions of untrusted bytes; they never read out of bounds and return nullopt or an
// error text rather than guess.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/mailbox.h"

namespace spoold::smtp::server {

struct CommandLine {
  std::string verb;      // upper-cased; "" for an empty line
  std::string_view arg;  // after the verb and the spaces following it; trailing spaces removed
};
CommandLine split_command(std::string_view line);

struct PathArg {
  std::string address;    // "<>" gives ""; a source route "@a,@b:" is removed (RFC 5321 §4.1.1.3)
  std::string_view rest;  // what follows ">": the parameters
};
// `arg` is what follows "FROM:" or "TO:" (leading spaces allowed). The address inside <> is not
// validated beyond its brackets here.
std::optional<PathArg> parse_path(std::string_view arg);

struct EsmtpParam {
  std::string key;  // upper-cased
  std::string_view value;
  bool has_value = false;
};
// RFC 5321 §4.1.2 Mail-parameters / Rcpt-parameters: SP-separated esmtp-keyword ["=" esmtp-value].
std::optional<std::vector<EsmtpParam>> parse_params(std::string_view rest);

using mailbox::is_ascii;
using mailbox::valid_utf8;

}  // namespace spoold::smtp::server
