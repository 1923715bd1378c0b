// tests/daemon/users_file_test.cpp — auth.users_file: the line syntax with FILE:LINE:COL errors,
// crypt(3) checks of real hashes (SHA-512 from openssl passwd -6), and the dummy hash that makes an
// unknown user's check cost what a real one costs.
#include <crypt.h>

#include <algorithm>
#include <chrono>
#include <vector>

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

TEST_CASE("hash_method and dummy_hash: an unknown user costs what the file's accounts cost",
          "[listener][auth]") {
  CHECK(hash_method("$y$j9T$salt$digest") == "$y$j9T$");
  CHECK(hash_method("$6$salt$digest") == "$6$");
  CHECK(hash_method("$6$rounds=9000$salt$digest") == "$6$rounds=9000$");
  CHECK(hash_method("$2b$12$saltanddigest") == "$2b$");
  CHECK(hash_method("$6$") == "");
  CHECK(hash_method("nodollar") == "");

  Users none;
  CHECK(dummy_hash(none).rfind("$6$", 0) == 0);  // no account to borrow from: the built-in one
  Users mixed;
  mixed.hashes["a"] = "$6$s1$d1";
  mixed.hashes["b"] = "$y$j9T$s2$d2";
  mixed.hashes["c"] = "$y$j9T$s3$d3";
  mixed.hashes["d"] = "$6$rounds=9000$s4$d4";
  CHECK(dummy_hash(mixed) == "$y$j9T$s2$d2");  // the method most accounts use, first by name
  mixed.hashes["e"] = "$6$s5$d5";
  mixed.hashes["f"] = "$6$s6$d6";
  CHECK(dummy_hash(mixed) == "$6$s1$d1");
}

TEST_CASE("an unknown user's check takes as long as a yescrypt account's", "[listener][auth]") {
  // A yescrypt hash made here (libxcrypt's default cost), far slower than the built-in SHA-512
  // dummy: with that dummy an unknown user answered several times faster than a real one.
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn("$y$", 0, nullptr, 0, setting, sizeof setting) != nullptr);
  crypt_data data{};
  const char* h = crypt_r("secret", setting, &data);
  REQUIRE(h != nullptr);
  REQUIRE(h[0] == '$');
  Users u;
  u.hashes["mailer"] = h;
  REQUIRE(check_password(u, "mailer", "secret"));
  auto timed = [&](const char* user) {
    std::vector<double> t;
    for (int i = 0; i < 5; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      CHECK_FALSE(check_password(u, user, "wrong"));
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    return t[2];
  };
  double known = timed("mailer"), unknown = timed("nobody");
  INFO("known " << known << " s, unknown " << unknown << " s");
  CHECK(unknown > known * 0.5);
  CHECK(unknown < known * 2);
}
