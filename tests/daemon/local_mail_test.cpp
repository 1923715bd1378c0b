// tests/daemon/local_mail_test.cpp — expand_local: local recipients of a queue entry replaced by
// their aliases, unknown ones bounced at once, everything else untouched; idempotent.
#include <catch2/catch.hpp>

#include "daemon/local_mail.h"

using namespace spoold;
using daemon::expand_local;
using spool::RcptState;

namespace {

spool::Entry entry_with(std::vector<std::string> rcpts) {
  spool::Entry e;
  e.id = std::string(30, '0');
  for (auto& r : rcpts) e.recipients.push_back(spool::Recipient{r, RcptState::pending, 0, "", {}});
  return e;
}

std::vector<std::string> addresses(const spool::Entry& e) {
  std::vector<std::string> out;
  for (const auto& r : e.recipients) out.push_back(r.address);
  return out;
}

}  // namespace

TEST_CASE("expand_local replaces local names, bounces the rest, and is idempotent", "[local]") {
  config::AliasMap aliases{{"root", {"admin@example.com", "ops"}},
                           {"ops", {"ops@example.com"}},
                           {"loop", {"loop2"}},
                           {"loop2", {"loop"}},
                           {"dup", {"x@example.test"}}};
  struct Row {
    std::vector<std::string> in;
    std::string admin;
    std::vector<std::string> out;
    std::vector<std::pair<size_t, std::string>> bounced;  // index in `out`, dsn
  };
  const Row rows[] = {
      {{"x@example.test"}, "", {"x@example.test"}, {}},
      {{"root@host.test"}, "", {"admin@example.com", "ops@example.com"}, {}},
      {{"ROOT@HOST.TEST", "root@localhost"}, "", {"admin@example.com", "ops@example.com"}, {}},
      {{"nobody@host.test"}, "", {"nobody@host.test"}, {{0, "5.1.1"}}},
      {{"nobody@host.test"}, "adm@example.com", {"adm@example.com"}, {}},
      {{"a@example.test", "loop@localhost", "b@example.test"},
       "",
       {"a@example.test", "loop@localhost", "b@example.test"},
       {{1, "5.4.6"}}},
      {{"x@example.test", "dup@host.test"}, "", {"x@example.test"}, {}},  // already a recipient
      {{"x@Example.TEST", "dup@host.test"}, "", {"x@Example.TEST"}, {}},  // domains without case
      {{"nobody@host.test", "root@host.test"},
       "",
       {"nobody@host.test", "admin@example.com", "ops@example.com"},
       {{0, "5.1.1"}}},
  };
  for (const auto& r : rows) {
    INFO(r.in.front() << " admin=" << r.admin);
    config::LocalRules rules{"host.test", &aliases, r.admin};
    auto e = entry_with(r.in);
    auto b = expand_local(e, rules);
    CHECK(addresses(e) == r.out);
    REQUIRE(b.size() == r.bounced.size());
    for (size_t i = 0; i < b.size(); ++i) {
      CHECK(b[i].index == r.bounced[i].first);
      CHECK(b[i].outcome.status == smtp::Status::permanent);
      CHECK(b[i].outcome.enhanced == r.bounced[i].second);
      CHECK(b[i].relay == "none");
    }
    auto again = e;
    auto b2 = expand_local(again, rules);
    CHECK(addresses(again) == r.out);  // expanding twice changes nothing more
    CHECK(b2.size() == b.size());
  }
}

TEST_CASE("expand_local leaves final recipients alone", "[local]") {
  config::AliasMap aliases{{"root", {"admin@example.com"}}};
  auto e = entry_with({"root@host.test"});
  e.recipients[0].state = RcptState::sent;
  auto b = expand_local(e, config::LocalRules{"host.test", &aliases, ""});
  CHECK(b.empty());
  CHECK(addresses(e) == std::vector<std::string>{"root@host.test"});
}
