// daemon/users_file.cpp — see users_file.h.
#include "daemon/users_file.h"

#include <crypt.h>

#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

namespace spoold::daemon {

namespace {

// Compared without an early exit, so the time does not tell how much of a hash matched.
bool same(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Hashed for an unknown user when the file has no account to borrow a setting from.
constexpr const char* kDummyHash =
    "$6$spooldspooldsp$SJBwFV6Q3VVNQvMTmu2Fi79gBuXsb7m7jU6b1NsRGGe3g/"
    "dPVBg.sVXc6haTwmXlQQ3HSuJb3i649R.hjS9WU.";

}  // namespace

Result<Users> parse_users(std::string_view text, const std::string& path) {
  Users u;
  std::size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos || line[start] == '#') continue;
    auto where = [&](std::size_t col, std::string_view what) {
      return make_error(fmt::format("{}:{}:{}: {}", path, line_no, col + 1, what));
    };
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return where(start, "expected user:hash");
    std::string user(line.substr(start, colon - start));
    std::string hash(line.substr(colon + 1));
    if (user.empty() || user.find_first_of(" \t") != std::string::npos) return where(start, "bad user name");
    if (hash.size() < 4 || hash[0] != '$' || hash.find_first_of(": \t") != std::string::npos)
      return where(colon + 1, "expected a crypt(3) hash starting with $ ($y$, $6$, $2b$, …)");
    if (!u.hashes.emplace(user, hash).second) return where(start, "user '" + user + "' is listed twice");
  }
  return u;
}

Result<std::shared_ptr<const Users>> load_users(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot read the users file");
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > 1024 * 1024) return make_error(path + ": users file larger than 1 MiB");
  auto u = parse_users(text, path);
  if (!u) return u.error();
  return std::shared_ptr<const Users>(std::make_shared<Users>(std::move(*u)));
}

std::string_view hash_method(std::string_view hash) {
  // "$id$params$salt$digest" → "$id$params$"; "$6$salt$digest" → "$6$": all but the last two fields
  std::size_t end = hash.rfind('$');
  if (end == std::string_view::npos || end == 0) return hash.substr(0, 0);
  end = hash.rfind('$', end - 1);
  return end == std::string_view::npos || end == 0 ? hash.substr(0, 0) : hash.substr(0, end + 1);
}

std::string dummy_hash(const Users& users) {
  std::map<std::string_view, std::pair<std::size_t, const std::string*>> methods;
  for (const auto& [user, hash] : users.hashes) {
    auto& m = methods[hash_method(hash)];
    if (m.first++ == 0) m.second = &hash;
  }
  const std::string* best = nullptr;
  std::size_t count = 0;
  for (const auto& [method, m] : methods)
    if (m.first > count) count = m.first, best = m.second;
  return best ? *best : std::string(kDummyHash);
}

bool check_password(const Users& users, const std::string& user, const std::string& password) {
  auto it = users.hashes.find(user);
  // An unknown user's password is hashed with a real account's setting (method, cost and salt), so
  // a probe cannot tell accounts from non-accounts by the time taken; it never matches.
  const std::string hash = it == users.hashes.end() ? dummy_hash(users) : it->second;
  crypt_data data{};
  const char* out = ::crypt_r(password.c_str(), hash.c_str(), &data);
  bool ok = out && out[0] != '*' && same(out, hash);
  return ok && it != users.hashes.end();
}

}  // namespace spoold::daemon
