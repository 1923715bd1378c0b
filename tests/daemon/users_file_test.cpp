// tests/daemon/users_file_test.cpp — auth.users_file: the line syntax with FILE:LINE:COL errors,
// and crypt(3) checks of real hashes (SHA-512 from openssl passwd -6).
#include <catch2/catch.hpp>

#include "daemon/users_file.h"

using namespace spoold::daemon;

namespace {
// openssl passwd -6 -salt testsalt1234 secret
const char* kSecretHash =
    "$6$testsalt1234$x2ekVBLFKeAvd.lfwgc43dVBt7yZOZhyiHrhMgkVhBSiGO52mRHtX3elweMUJo2YRy7yDabyvNG2QB0DkTFhw/";
}  // namespace

TEST_CASE("users_file lines: user:hash, comments, blanks; errors name file, line and column",
          "[listener][auth]") {
  auto ok =
      parse_users(std::string("# accounts\n\nmailer:") + kSecretHash + "\r\n  app:$y$j9T$abc$def\n", "u");
  REQUIRE(ok.ok());
  CHECK(ok->hashes.size() == 2);
  CHECK(ok->hashes.at("mailer") == kSecretHash);
  struct Row {
    const char* text;
    const char* error;
  };
  const Row rows[] = {
      {"mailer\n", "u:1:1: expected user:hash"},
      {"# c\n:$6$x$y\n", "u:2:1: bad user name"},
      {"a b:$6$x$y\n", "u:1:1: bad user name"},
      {"a:plaintext\n", "u:1:3: expected a crypt(3) hash"},
      {"a:$6$x$y:extra\n", "u:1:3: expected a crypt(3) hash"},
      {"a:$6$x$y\na:$6$x$z\n", "u:2:1: user 'a' is listed twice"},
  };
  for (const auto& r : rows) {
    INFO(r.text);
    auto res = parse_users(r.text, "u");
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().message.rfind(r.error, 0) == 0);
  }
}

TEST_CASE("check_password against crypt(3) hashes", "[listener][auth]") {
  Users u;
  u.hashes["mailer"] = kSecretHash;
  CHECK(check_password(u, "mailer", "secret"));
  CHECK_FALSE(check_password(u, "mailer", "Secret"));
  CHECK_FALSE(check_password(u, "mailer", ""));
  CHECK_FALSE(check_password(u, "nobody", "secret"));
  u.hashes["broken"] = "$6$";  // a hash crypt_r refuses
  CHECK_FALSE(check_password(u, "broken", ""));
}
