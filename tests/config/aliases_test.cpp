// tests/config/aliases_test.cpp — the aliases(5) parser: what each line shape means, and a table
// of bad files, each with the exact file:line:col its error must name; the loop finder.
#include <catch2/catch.hpp>

#include "config/aliases.h"
#include "tests/support/fixtures.h"

using namespace spoold;
using namespace spoold::config;

namespace {

using Targets = std::vector<std::string>;

struct Parsed {
  std::string name;
  Targets targets;
  int line, column;
};

std::vector<Parsed> parsed(const std::string& text) {
  auto r = parse_aliases(text, "aliases");
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  std::vector<Parsed> out;
  for (const auto& e : *r) out.push_back({e.name, e.targets, e.line, e.column});
  return out;
}

}  // namespace

TEST_CASE("aliases: entries, continuations, comments and blank lines") {
  auto e = parsed(
      "# Debian's /etc/aliases\n"
      "\n"
      "postmaster:    root\n"
      "Root: admin@example.com, \"Jo Doe\"@example.org\n"
      "staff: a@example.com,\n"
      "  b@example.com,\r\n"
      "\n"
      "  # a comment inside an entry is a comment\n"
      "\tC@Example.com\n"
      "   \n"
      "list:a@example.com,,b@example.com,\n"
      "\"quoted\" : Postmaster\n");
  REQUIRE(e.size() == 5);
  CHECK(e[0].name == "postmaster");
  CHECK(e[0].targets == Targets{"root"});
  CHECK((e[0].line == 3 && e[0].column == 1));
  CHECK(e[1].name == "root");  // names are compared without case
  CHECK(e[1].targets == Targets{"admin@example.com", "\"Jo Doe\"@example.org"});
  CHECK(e[2].name == "staff");
  CHECK(e[2].targets == Targets{"a@example.com", "b@example.com", "C@Example.com"});  // as written
  CHECK(e[2].line == 5);
  CHECK(e[3].targets == Targets{"a@example.com", "b@example.com"});  // empty items are nothing
  CHECK(e[4].name == "quoted");
  CHECK(e[4].targets == Targets{"postmaster"});  // local names lower-cased
  CHECK(e[4].line == 12);
}

TEST_CASE("aliases: an empty file or one of comments only has no entries") {
  CHECK(parsed("").empty());
  CHECK(parsed("# nothing\n\n   \n#x: y\n").empty());
  CHECK(parsed("a: b@example.com").size() == 1);  // no newline at the end
}

TEST_CASE("aliases: every bad line is an error at file:line:col") {
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {"root admin@example.com\n", "aliases:1:1: expected 'name: address, ...'"},
      {"ok: a@example.com\n\nbad\n", "aliases:3:1: expected 'name: address, ...'"},
      {"  root: a@example.com\n",
       "aliases:1:3: a continuation line (starting with white space) without an alias before it"},
      {": a@example.com\n", "aliases:1:1: no alias name before ':'"},
      {"root@example.com: a@example.com\n",
       "aliases:1:1: 'root@example.com': an alias is a local name, without '@'"},
      {"ro ot: a@example.com\n", "aliases:1:1: 'ro ot' is not a local name"},
      {"root:\n", "aliases:1:5: 'root' has no addresses"},
      {"root: ,\n", "aliases:1:5: 'root' has no addresses"},
      {"root: a@example.com\nRoot: b@example.com\n",
       "aliases:2:1: duplicate alias 'Root' (first at line 1; names are compared without case)"},
      {"x: |/usr/bin/procmail\n",
       "aliases:1:4: '|/usr/bin/procmail': delivery to a command is not supported (spoold only forwards "
       "mail)"},
      {"x: a@example.com, \"|/usr/bin/foo arg, more\"\n",
       "aliases:1:19: '\"|/usr/bin/foo arg, more\"': delivery to a command is not supported (spoold only "
       "forwards mail)"},
      {"x: /var/mail/x\n",
       "aliases:1:4: '/var/mail/x': delivery to a file is not supported (spoold only forwards mail)"},
      {"x: :include:/etc/mail/x.list\n",
       "aliases:1:4: ':include:/etc/mail/x.list': include files are not supported (list the addresses here)"},
      {"x: \\root, a@example.com\n",
       "aliases:1:4: '\\root': local delivery is not supported (spoold has no mailboxes; name an address)"},
      {"x: a@@example.com\n",
       "aliases:1:4: 'a@@example.com' is not a mailbox (local@domain) or a local name"},
      {"x: admin@ # the admin\n",
       "aliases:1:4: 'admin@ # the admin' is not a mailbox (local@domain) or a local name"},
      {"x: a@example.com,\n   b c\n", "aliases:2:4: 'b c' is not a mailbox (local@domain) or a local name"},
      {"x: \"a@example.com\n", "aliases:1:4: unterminated quoted string"},
      {"x: a\x01@example.com\n",
       "aliases:1:4: 'a\\x01@example.com' is not a mailbox (local@domain) or a local name"},
      {"a: |cmd\nb\n  c: d\nok: e@example.com\nok: f@example.com\n",
       "aliases:1:4: '|cmd': delivery to a command is not supported (spoold only forwards mail)\n"
       "aliases:2:1: 'b   c' is not a local name\n"  // line 3 continues line 2
       "aliases:5:1: duplicate alias 'ok' (first at line 4; names are compared without case)"},
  };
  for (const auto& c : cases) {
    INFO("text:\n" << c.text);
    auto r = parse_aliases(c.text, "aliases");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == c.expect);
  }
}

TEST_CASE("aliases: a file of garbage gives a bounded list of errors") {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += "garbage\n";
  auto r = parse_aliases(text, "f");
  REQUIRE_FALSE(r.ok());
  auto lines = std::count(r.error().message.begin(), r.error().message.end(), '\n') + 1;
  CHECK(lines == 101);
  CHECK(r.error().message.ends_with("f: too many errors; giving up"));
}

TEST_CASE("aliases: reading the file") {
  test::TempDir dir;
  test::write_file(dir / "aliases", "root: a@example.com\n");
  auto text = read_aliases_text(dir / "aliases");
  REQUIRE(text.ok());
  CHECK(*text == "root: a@example.com\n");
  auto missing = read_aliases_text(dir / "none");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == "cannot read '" + (dir / "none") + "': No such file or directory");
  auto directory = read_aliases_text(dir / "");
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().message.ends_with("is not a regular file"));
}

TEST_CASE("aliases: loops, through bare names, @hostname and @localhost") {
  AliasMap m = {{"a", {"b@Mail.Example.com"}},
                {"b", {"c@localhost", "x@example.com"}},
                {"c", {"A"}},
                {"d", {"a"}},
                {"p", {"p@elsewhere.example"}},
                {"s", {"s"}}};
  auto loops = alias_loops(m, {"d", "a", "b", "c", "p", "s"}, "mail.example.com");
  REQUIRE(loops.size() == 2);
  CHECK(loops[0].name == "a");
  CHECK(loops[0].chain == "a -> b -> c -> a");
  CHECK(loops[1].chain == "s -> s");
  // Under another hostname b@mail.example.com is remote, and the loop is gone.
  CHECK(alias_loops(m, {"d", "a", "b", "c"}, "other.example").empty());
}
