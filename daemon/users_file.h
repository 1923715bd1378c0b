// daemon/users_file.h — a listener's auth.users_file: one "user:hash" line per account, the hash
// in crypt(3) form ($y$ yescrypt, $6$ SHA-512, $2b$ bcrypt, … — what `mkpasswd` or
// `openssl passwd -6` print), comments (#) and blank lines allowed.
// Rule: parsing is pure and reports the first bad line as FILE:LINE:COL; checking a password runs
// crypt_r (slow on purpose), so the daemon calls it on the thread pool, and it takes as long for
// an unknown user as for a known one (the same method and cost as the file's accounts).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace spoold::daemon {

struct Users {
  std::map<std::string, std::string> hashes;  // user → crypt(3) hash
};

Result<Users> parse_users(std::string_view text, const std::string& path);
Result<std::shared_ptr<const Users>> load_users(const std::string& path);  // at most 1 MiB

// The crypt(3) method of a hash, its settings before the salt: "$y$j9T$", "$6$", "$6$rounds=9$",
// "$2b$"; "" when it has too few '$' fields.
std::string_view hash_method(std::string_view hash);
// What an unknown user's password is hashed against: an account's hash of the method most accounts
// use (the first by name among them), so the check costs what a real one costs.
std::string dummy_hash(const Users& users);
bool check_password(const Users& users, const std::string& user, const std::string& password);

}  // namespace spoold::daemon
