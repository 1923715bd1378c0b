// tests/spool/usage_test.cpp — the usage file (spool/usage.h): exact round trips, every way a
// damaged file must be refused (table), file names, the sum over instances with a live one, and a
// malformed file moved to bad/ at load rather than lost.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "spool/fs_util.h"
#include "spool/usage.h"
#include "tests/support/fixtures.h"

using namespace spoold::spool;

namespace {

UsageFile sample(std::string instance = "mx1.example.org") {
  UsageFile f;
  f.instance = std::move(instance);
  f.since = 1700000000;
  f.updated = 1700000600;
  f.totals[UsageKind::spooled] = {10, 12, 4096};
  f.totals[UsageKind::sent] = {8, 9, 3000};
  f.totals[UsageKind::deferred] = {3, 3, 900};
  f.totals[UsageKind::bounced] = {1, 2, 100};
  f.totals[UsageKind::expired] = {0, 0, 0};
  return f;
}

const std::string kSampleText =
    "spoold-usage 1\n"
    "instance mx1.example.org\n"
    "since 1700000000\n"
    "updated 1700000600\n"
    "spooled 10 12 4096\n"
    "sent 8 9 3000\n"
    "deferred 3 3 900\n"
    "bounced 1 2 100\n"
    "expired 0 0 0\n";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("usage file: the exact text, and back", "[usage]") {
  CHECK(format_usage_file(sample()) == kSampleText);
  auto back = parse_usage_file(kSampleText);
  REQUIRE(back.ok());
  CHECK(*back == sample());
  UsageFile big = sample();
  big.totals[UsageKind::sent].bytes = UINT64_MAX;
  auto b = parse_usage_file(format_usage_file(big));
  REQUIRE(b.ok());
  CHECK(b->totals[UsageKind::sent].bytes == UINT64_MAX);
}

TEST_CASE("usage file: unknown keys are skipped, the order of lines is free", "[usage]") {
  std::string text =
      "spoold-usage 1\nexpired 0 0 0\nbounced 1 2 100\nfuture_key whatever it says\ndeferred 3 3 900\n"
      "sent 8 9 3000\nspooled 10 12 4096\nupdated 1700000600\nsince 1700000000\ninstance mx1.example.org\n";
  auto f = parse_usage_file(text);
  REQUIRE(f.ok());
  CHECK(*f == sample());
}

TEST_CASE("usage file: damaged files are refused, naming the line", "[usage]") {
  auto replace = [](const std::string& from, const std::string& to) {
    std::string t = kSampleText;
    auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    t.replace(at, from.size(), to);
    return t;
  };
  struct Case {
    std::string text, error;
  };
  const std::vector<Case> cases = {
      {"", "empty file"},
      {"spoold-spool 1\n", "line 1: not a usage file"},
      {replace("spoold-usage 1", "spoold-usage 2"), "line 1: usage format 2 is not supported"},
      {replace("spoold-usage 1", "spoold-usage 0"), "line 1: usage format 0"},
      {replace("spoold-usage 1", "spoold-usage x"), "line 1: not a usage file"},
      {kSampleText.substr(0, kSampleText.size() - 1), "line 9: no newline at the end"},
      {replace("sent 8 9 3000", "sent 8 9"), "line 6: 'sent' needs three counts"},
      {replace("sent 8 9 3000", "sent 8 9 3000 1"), "line 6: 'sent' needs three counts"},
      {replace("sent 8 9 3000", "sent 8 -9 3000"), "line 6: 'sent' needs three counts"},
      {replace("sent 8 9 3000", "sent 8 9 99999999999999999999"), "line 6: 'sent' needs three counts"},
      {replace("since 1700000000", "since yesterday"), "line 3: 'since' is not a unix time"},
      {replace("updated 1700000600", "updated -5"), "line 4: 'updated' is not a unix time"},
      {replace("instance mx1.example.org", "instance "), "line 2: empty instance"},
      {replace("instance mx1.example.org\n", ""), "no 'instance' line"},
      {replace("expired 0 0 0\n", ""), "no 'expired' line"},
      {kSampleText + "sent 1 1 1\n", "line 10: 'sent' repeated"},
      {replace("sent 8", "\nsent 8"), "line 6: empty key"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto f = parse_usage_file(c.text);
    REQUIRE_FALSE(f.ok());
    CHECK_THAT(f.error().message, Catch::Matchers::StartsWith(c.error));
  }
}

TEST_CASE("usage file names", "[usage]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"mx1.example.org", "mx1.example.org"},
      {"a/b", "a_b"},
      {"..", "_.."},
      {".hidden", "_.hidden"},
      {"", "_"},
      {"a b\n", "a_b_"},
      {"x-y_z", "x-y_z"},
  };
  for (const auto& [instance, name] : cases) CHECK(usage_file_name(instance) == name);
}

TEST_CASE("usage: totals of every instance, a live daemon's counts replacing its file", "[usage]") {
  UsageFile a = sample("a"), b = sample("b");
  b.totals[UsageKind::sent] = {1, 1, 10};
  UsageFile live = sample("a");
  live.totals[UsageKind::sent] = {100, 100, 1000};
  auto merged = with_live({b, a}, live);
  REQUIRE(merged.size() == 2);
  CHECK(merged[0].instance == "a");
  CHECK(merged[0].totals[UsageKind::sent].messages == 100);
  Usage sum = sum_usage(merged);
  CHECK(sum[UsageKind::sent] == Tally{101, 101, 1010});
  CHECK(sum[UsageKind::spooled] == Tally{20, 24, 8192});
  // A live daemon without a file yet joins the list.
  auto joined = with_live({b}, live);
  REQUIRE(joined.size() == 2);
  CHECK(sum_usage(joined)[UsageKind::sent].messages == 101);
  // What an interval added.
  Usage d = usage_since(live.totals, a.totals);
  CHECK(d[UsageKind::sent] == Tally{92, 91, 0});  // bytes 1000 < 3000: never negative
  CHECK(d[UsageKind::spooled] == Tally{});
}

TEST_CASE("usage: write, read the directory, a malformed file moved to bad/ at load", "[usage]") {
  spoold::test::TempDir dir;
  REQUIRE(::mkdir((dir / "tmp").c_str(), 0700) == 0);
  REQUIRE(::mkdir((dir / "bad").c_str(), 0700) == 0);
  REQUIRE(make_usage_dir(dir.path()).ok());
  REQUIRE(make_usage_dir(dir.path()).ok());  // again: already there
  REQUIRE(write_usage_file(dir.path(), sample("a")).ok());
  REQUIRE(write_usage_file(dir.path(), sample("b")).ok());
  CHECK(slurp(dir / "usage/a") == format_usage_file(sample("a")));

  auto loaded = load_usage_file(dir.path(), "a", 1700001000);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->file);
  CHECK(*loaded->file == sample("a"));
  auto none = load_usage_file(dir.path(), "c", 1700001000);
  REQUIRE(none.ok());
  CHECK_FALSE(none->file);
  CHECK(none->problem.empty());

  { std::ofstream(dir / "usage/c") << "garbage\n"; }
  auto all = read_usage_dir(dir.path());
  REQUIRE(all.files.size() == 2);
  CHECK(all.files[0].instance == "a");
  CHECK(all.files[1].instance == "b");
  REQUIRE(all.problems.size() == 1);
  CHECK_THAT(all.problems[0], Catch::Matchers::Contains("usage/c: line 1: not a usage file"));

  auto bad = load_usage_file(dir.path(), "c", 1700001000);
  REQUIRE(bad.ok());
  CHECK_FALSE(bad->file);
  CHECK_THAT(bad->problem, Catch::Matchers::Contains("not a usage file"));
  CHECK(bad->moved_to == dir / "bad/usage.c.1700001000");
  CHECK(slurp(bad->moved_to) == "garbage\n");
  CHECK_THAT(slurp(bad->moved_to + ".reason"), Catch::Matchers::Contains("not a usage file"));
  CHECK_FALSE(path_exists(dir / "usage/c"));

  // Another instance's file under this name is not taken over.
  REQUIRE(write_usage_file(dir.path(), sample("d")).ok());
  REQUIRE(::rename((dir / "usage/d").c_str(), (dir / "usage/e").c_str()) == 0);
  auto other = load_usage_file(dir.path(), "e", 1700001000);
  REQUIRE(other.ok());
  CHECK_FALSE(other->file);
  CHECK_THAT(other->problem, Catch::Matchers::Contains("belongs to instance 'd'"));
}

TEST_CASE("usage log line", "[usage]") {
  Usage interval;
  interval[UsageKind::sent] = {2, 3, 400};
  std::string line = format_usage_line(1700000000, "mx 1", 3600, interval, sample().totals);
  CHECK(line ==
        "2023-11-14T22:13:20Z instance=mx_1 interval=3600s spooled=0/0/0 sent=2/3/400 deferred=0/0/0 "
        "bounced=0/0/0 expired=0/0/0 total_spooled=10/12/4096 total_sent=8/9/3000 total_deferred=3/3/900 "
        "total_bounced=1/2/100 total_expired=0/0/0\n");
}
