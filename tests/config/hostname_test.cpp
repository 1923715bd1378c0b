// tests/config/hostname_test.cpp — the default hostname: /etc/mailname (a temp file here), and the
// choice among the canonical names getaddrinfo gives.
#include <catch2/catch.hpp>

#include "config/hostname.h"
#include "tests/support/fixtures.h"

using namespace spoold::config;
namespace test = spoold::test;

TEST_CASE("hostname: the first line of the mailname file, trimmed") {
  test::TempDir dir;
  struct Case {
    std::string text;
    std::optional<std::string> expect;
  };
  std::vector<Case> cases = {
      {"mail.example.com\n", "mail.example.com"},
      {"  mail.example.com \r\nignored.example\n", "mail.example.com"},
      {"mail.example.com", "mail.example.com"},
      {"box\n", "box"},  // unqualified but said on purpose
      {"\n", std::nullopt},
      {"", std::nullopt},
      {"not a name\n", std::nullopt},
      {"\nmail.example.com\n", std::nullopt},  // only the first line counts
  };
  for (const auto& c : cases) {
    INFO("mailname: " << c.text);
    test::write_file(dir / "mailname", c.text);
    CHECK(read_mailname(dir / "mailname") == c.expect);
  }
  CHECK(read_mailname(dir / "missing") == std::nullopt);
}

TEST_CASE("hostname: a mailname file decides the default") {
  test::TempDir dir;
  test::write_file(dir / "mailname", "mail.example.com\n");
  auto h = default_hostname(dir / "mailname");
  CHECK(h.name == "mail.example.com");
  CHECK(h.warning.empty());
}

TEST_CASE("hostname: without it, gethostname's FQDN or a warning") {
  test::TempDir dir;
  auto h = default_hostname(dir / "missing");
  REQUIRE(!h.name.empty());
  if (h.name.find('.') == std::string::npos)
    CHECK(h.warning.find("has no domain") != std::string::npos);
  else
    CHECK(h.warning.empty());
}

TEST_CASE("hostname: the first qualified candidate") {
  using V = std::vector<std::string>;
  CHECK(first_qualified(V{}) == "");
  CHECK(first_qualified(V{"box"}) == "");
  CHECK(first_qualified(V{"box", "box.example.com", "box.example.org"}) == "box.example.com");
  CHECK(first_qualified(V{"box.", ".box", "box.lan"}) == "box.lan");  // a dot at an end is no domain
}
