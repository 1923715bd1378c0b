// tests/config/local_mail_test.cpp — the local-recipient resolver: one table row per rule
// (remote, bare name, @hostname, @localhost, alias to remote, chains, loops, admin_address).
#include <catch2/catch.hpp>

#include "config/config.h"
#include "config/local_mail.h"

using namespace spoold::config;

namespace {

using Addresses = std::vector<std::string>;

struct Case {
  const char* what;
  std::string recipient;
  std::string admin;
  bool local;
  Addresses addresses;      // when it is delivered
  std::string dsn, reason;  // when it bounces
};

const AliasMap kAliases = {
    {"root", {"admin@example.com"}},
    {"postmaster", {"root"}},
    {"abuse", {"postmaster@localhost", "Abuse@Example.org"}},
    {"team",
     {"a@example.com", "root", "a@EXAMPLE.COM", "b@example.com", "postmaster@mail.example.com",
      "A@example.com"}},
    {"ops", {"team", "root"}},  // two ways to admin@example.com: once in the result
    {"loop1", {"loop2"}},
    {"loop2", {"loop3@localhost"}},
    {"loop3", {"x@example.com", "loop1"}},
    {"self", {"self"}},
    {"selfat", {"SelfAt@Mail.Example.COM"}},
    {"ghostly", {"a@example.com", "ghost"}},  // ghost has no alias
    {"remote", {"root@elsewhere.example"}},   // the same name elsewhere is not us
    {"adminroot", {"boss@example.com"}},
};

Resolution resolve(const std::string& rcpt, const std::string& admin, const AliasMap& aliases = kAliases) {
  return resolve_recipient(rcpt, LocalRules{"mail.example.com", &aliases, admin});
}

}  // namespace

TEST_CASE("local mail: each rule of the resolver") {
  const std::string nobody;
  const char* no_local = "5.1.1";
  std::vector<Case> cases = {
      {"remote: unchanged", "User@Example.com", "", false, {"User@Example.com"}, "", ""},
      {"remote even with an alias of that name",
       "root@elsewhere.example",
       "",
       false,
       {"root@elsewhere.example"},
       "",
       ""},
      {"a subdomain of hostname is not us",
       "root@sub.mail.example.com",
       "",
       false,
       {"root@sub.mail.example.com"},
       "",
       ""},
      {"bare name", "root", "", true, {"admin@example.com"}, "", ""},
      {"bare name, any case", "ROOT", "", true, {"admin@example.com"}, "", ""},
      {"root@HOSTNAME", "root@MAIL.example.COM", "", true, {"admin@example.com"}, "", ""},
      {"x@localhost", "postmaster@LocalHost", "", true, {"admin@example.com"}, "", ""},
      {"a quoted plain local part is the name",
       "\"Root\"@localhost",
       "",
       true,
       {"admin@example.com"},
       "",
       ""},
      {"alias to remote, kept as written",
       "abuse",
       "",
       true,
       {"admin@example.com", "Abuse@Example.org"},
       "",
       ""},
      {"alias to the same name elsewhere", "remote", "", true, {"root@elsewhere.example"}, "", ""},
      {"chain; duplicates removed (domain without case), first seen first",
       "team@localhost",
       "",
       true,
       {"a@example.com", "admin@example.com", "b@example.com", "A@example.com"},  // local parts keep case
       "",
       ""},
      {"two paths to one address",
       "ops",
       "",
       true,
       {"a@example.com", "admin@example.com", "b@example.com", "A@example.com"},  // local parts keep case
       "",
       ""},
      {"loop through bare names, @localhost and back",
       "loop1",
       "",
       true,
       {},
       "5.4.6",
       "alias loop: loop1 -> loop2 -> loop3 -> loop1"},
      {"a loop bounces even with admin_address",
       "loop2@mail.example.com",
       "admin@example.com",
       true,
       {},
       "5.4.6",
       "alias loop: loop2 -> loop3 -> loop1 -> loop2"},
      {"self-reference is a loop: there is no mailbox it could mean",
       "self",
       "admin@example.com",
       true,
       {},
       "5.4.6",
       "alias loop: self -> self"},
      {"self-reference through @hostname", "selfat", "", true, {}, "5.4.6", "alias loop: selfat -> selfat"},
      {"unknown local, admin_address set",
       "nobody@localhost",
       "admin@example.com",
       true,
       {"admin@example.com"},
       "",
       ""},
      {"unknown local without admin_address",
       "nobody",
       "",
       true,
       {},
       no_local,
       "no local delivery for 'nobody' (no alias, no admin_address)"},
      {"an unaliased member goes to admin_address",
       "ghostly",
       "boss@example.com",
       true,
       {"a@example.com", "boss@example.com"},
       "",
       ""},
      {"an unaliased member without admin_address bounces the whole alias",
       "ghostly",
       "",
       true,
       {},
       no_local,
       "no local delivery for 'ghost' (no alias, no admin_address)"},
      {"a local admin_address is expanded through the aliases",
       "nobody",
       "adminroot@localhost",
       true,
       {"boss@example.com"},
       "",
       ""},
      {"a local admin_address without an alias never falls back on itself",
       "nobody",
       "nobody@localhost",
       true,
       {},
       no_local,
       "no local delivery for 'nobody' (admin_address <nobody@localhost> is local and ends at a name without "
       "an alias)"},
  };
  for (const auto& c : cases) {
    INFO(c.what << ": " << c.recipient);
    auto r = resolve(c.recipient, c.admin);
    CHECK(r.local == c.local);
    CHECK(r.addresses == c.addresses);
    CHECK(r.dsn == c.dsn);
    CHECK(r.reason == c.reason);
    CHECK(r.bounces() == !c.dsn.empty());
  }
}

TEST_CASE("local mail: without aliases or a hostname") {
  auto r = resolve_recipient("root@localhost", LocalRules{"", nullptr, "admin@example.com"});
  CHECK(r.local);
  CHECK(r.addresses == Addresses{"admin@example.com"});
  auto remote = resolve_recipient("root@mail.example.com", LocalRules{"", nullptr, ""});
  CHECK_FALSE(remote.local);  // no hostname: only bare names and localhost are ours
  CHECK(remote.addresses == Addresses{"root@mail.example.com"});
}

TEST_CASE("local mail: aliases nested deeper than the bound bounce") {
  AliasMap chain;
  for (int i = 0; i < 30; ++i) chain["a" + std::to_string(i)] = {"a" + std::to_string(i + 1)};
  chain["a30"] = {"end@example.com"};
  auto deep = resolve("a0", "", chain);
  CHECK(deep.dsn == "5.4.6");
  CHECK(deep.reason == "aliases nested deeper than 20 levels at 'a21'");
  auto shallow = resolve("a10", "", chain);  // 20 levels from a10 to a30
  CHECK(shallow.addresses == Addresses{"end@example.com"});
}

TEST_CASE("local mail: a wide lattice of aliases is expanded once per name") {
  // Each level names the next one twice: without memoizing, 2^20 walks.
  AliasMap lattice;
  for (int i = 0; i < 20; ++i) {
    auto next = "l" + std::to_string(i + 1);
    lattice["l" + std::to_string(i)] = {next, next + "@localhost", "m" + std::to_string(i) + "@example.com"};
  }
  lattice["l20"] = {"end@example.com"};
  auto r = resolve("l0", "", lattice);
  REQUIRE_FALSE(r.bounces());
  CHECK(r.addresses.size() == 21);
}

TEST_CASE("local mail: the rules of a loaded config") {
  auto c = load_string(
      "hostname: Mail.Example.com\naliases: { root: admin@example.com }\n"
      "admin_address: boss@example.com\n");
  REQUIRE(c.ok());
  auto rules = local_rules(*c);
  CHECK(resolve_recipient("root@mail.example.com", rules).addresses == Addresses{"admin@example.com"});
  CHECK(resolve_recipient("x@localhost", rules).addresses == Addresses{"boss@example.com"});
  CHECK_FALSE(resolve_recipient("x@example.com", rules).local);
}

TEST_CASE("local mail: local_name") {
  CHECK(local_name("Root", "h.example") == "root");
  CHECK(local_name("Root@H.Example", "h.example") == "root");
  CHECK(local_name("root@localhost", "") == "root");
  CHECK(local_name("root@h.example", "") == std::nullopt);
  CHECK(local_name("root@other.example", "h.example") == std::nullopt);
  CHECK(local_name("\"a b\"@localhost", "h.example") == "\"a b\"");  // quoted for a reason: kept
}
