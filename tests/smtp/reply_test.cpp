// tests/smtp/reply_test.cpp — the reply parser against good and hostile input, table-driven.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "smtp/engine.h"  // the public headers must compile even before all is implemented
#include "smtp/reply.h"
#include "smtp/smtp.h"

using namespace spoold::smtp;

namespace {

struct Parsed {
  std::vector<Reply> replies;
  std::string error;  // "" when no error
};

// Feeds `input` in pieces of `step` bytes and collects every reply (or the first error).
Parsed parse_all(const std::string& input, std::size_t step) {
  ReplyParser p;
  Parsed out;
  for (std::size_t i = 0; i < input.size() && out.error.empty(); i += step) {
    p.feed(std::string_view(input).substr(i, step));
    for (int guard = 0; guard < 1000; ++guard) {
      auto r = p.next();
      if (!r) break;
      if (!r->ok()) {
        out.error = r->error().message;
        break;
      }
      out.replies.push_back(std::move(r->value()));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("well-formed replies parse to code, enhanced code and text", "[reply]") {
  struct Case {
    std::string input;
    int code;
    std::string enhanced;
    std::string text;
    std::size_t lines;
  };
  const std::vector<Case> cases = {
      {"220 mx.example.org ESMTP ready\r\n", 220, "", "mx.example.org ESMTP ready", 1},
      {"250 2.1.0 Ok\r\n", 250, "2.1.0", "Ok", 1},
      {"250\r\n", 250, "", "", 1},
      {"250-mx\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 250, "", "mx PIPELINING SIZE 1000", 3},
      {"550-5.1.1 No such\r\n550 5.1.1 user\r\n", 550, "5.1.1", "No such user", 2},
      {"452 4.5.3 Too many recipients\n", 452, "4.5.3", "Too many recipients", 1},  // bare LF ok
      {"550 2.1.1 class mismatch\r\n", 550, "", "2.1.1 class mismatch", 1},         // not the same class
      {"451 4.123.456 odd but legal\r\n", 451, "4.123.456", "odd but legal", 1},
      {"421 4.4.2 bye\tnow\x01\r\n", 421, "4.4.2", "bye?now?", 1},  // controls sanitised
      {"250 caf\xc3\xa9\r\n", 250, "", "caf??", 1},
  };
  for (const auto& c : cases) {
    for (std::size_t step : {std::size_t{1}, std::size_t{3}, c.input.size()}) {
      INFO("input: " << c.input << " step " << step);
      auto got = parse_all(c.input, step);
      REQUIRE(got.error == "");
      REQUIRE(got.replies.size() == 1);
      CHECK(got.replies[0].code == c.code);
      CHECK(got.replies[0].enhanced.to_string() == c.enhanced);
      CHECK(got.replies[0].text() == c.text);
      CHECK(got.replies[0].lines.size() == c.lines);
    }
  }
}

TEST_CASE("malformed replies are sticky errors", "[reply]") {
  struct Case {
    std::string input;
    std::string error_contains;
  };
  const std::vector<Case> cases = {
      {"hello\r\n", "malformed"},
      {"25\r\n", "malformed"},
      {"2500 x\r\n", "malformed"},
      {"250x\r\n", "malformed"},
      {"650 x\r\n", "out of range"},
      {"150 x\r\n", "out of range"},
      {"260 x\r\n", "out of range"},
      {"250-a\r\n251 b\r\n", "changed"},
      {"250-a\r\n550 b\r\n", "changed"},
      {std::string("250 a\0b\r\n", 9), "NUL"},
      {"250 a\rb\r\n", "bare CR"},
      {"250 " + std::string(70000, 'x') + "\r\n", "longer than 65536"},  // one endless line
      {"250 " + std::string(100, 'x') + "\r" + std::string(600, 'x') + "\r\n", "bare CR"},  // in the head
      {"", ""},
  };
  for (const auto& c : cases) {
    if (c.input.empty()) continue;
    INFO("input: " << c.input.substr(0, 40));
    auto got = parse_all(c.input, 7);
    CHECK(got.replies.empty());
    CHECK(got.error.find(c.error_contains) != std::string::npos);
  }
}

TEST_CASE("a line over 512 bytes keeps its code and its first 510 text bytes", "[reply]") {
  std::string line = "250 " + std::string(506, 'a') + "\r\n";  // exactly 512
  REQUIRE(line.size() == 512);
  auto ok = parse_all(line, 100);
  CHECK(ok.error == "");
  CHECK(ok.replies.size() == 1);
  // Real servers send long 5xx texts; the verdict must survive (a bounce, not a retried
  // "malformed reply"), the text is cut, and the next reply is read in step.
  for (std::size_t step : {std::size_t{1}, std::size_t{7}, std::size_t{600}, std::size_t{5000}}) {
    INFO("step " << step);
    std::string text = "5.1.1 " + std::string(2000, 'u');
    auto got = parse_all("550-" + text + "\r\n550 " + text + "\r\n250 next\r\n", step);
    REQUIRE(got.error == "");
    REQUIRE(got.replies.size() == 2);
    CHECK(got.replies[0].code == 550);
    CHECK(got.replies[0].enhanced.to_string() == "5.1.1");
    REQUIRE(got.replies[0].lines.size() == 2);
    CHECK(got.replies[0].lines[0].size() == ReplyParser::kMaxLine - 2 - 4);
    CHECK(got.replies[1].code == 250);
  }
  // Without a line end the parser keeps nothing of it: memory stays bounded.
  ReplyParser p;
  for (int i = 0; i < 10; ++i) {
    p.feed("250 " + std::string(4000, 'x'));
    CHECK(!p.next());
    CHECK(p.buffered() < 4100);
  }
  p.feed("\r\n");
  auto r = p.next();
  REQUIRE(r);
  REQUIRE(r->ok());
  CHECK(r->value().code == 250);
}

TEST_CASE("an endless multi-line reply stops at 64 KiB", "[reply]") {
  ReplyParser p;
  std::string line = "250-" + std::string(400, 'x') + "\r\n";
  std::string error;
  std::size_t fed = 0;
  for (int i = 0; i < 1000 && error.empty(); ++i) {
    p.feed(line);
    fed += line.size();
    auto r = p.next();
    if (r && !r->ok())
      error = r->error().message;
    else
      REQUIRE(!r);
  }
  CHECK(error.find("longer than 65536") != std::string::npos);
  CHECK(fed <= ReplyParser::kMaxReply + line.size());
  CHECK(p.failed());
  p.feed("250 ok\r\n");  // sticky
  auto again = p.next();
  REQUIRE(again);
  CHECK(!again->ok());
}

TEST_CASE("several replies in one read come out in order; leftovers can be taken", "[reply]") {
  ReplyParser p;
  p.feed("250 ok\r\n550 5.1.1 no\r\n354 go\r\n220 2.0.0 Ready\r\n250 injected");
  std::vector<int> codes;
  for (int i = 0; i < 3; ++i) {
    auto r = p.next();
    REQUIRE(r);
    REQUIRE(r->ok());
    codes.push_back(r->value().code);
  }
  CHECK(codes == std::vector<int>{250, 550, 354});
  auto r = p.next();
  REQUIRE(r);
  CHECK(r->value().code == 220);
  CHECK(p.buffered() == 12);
  CHECK(p.take_unparsed() == "250 injected");
  CHECK(p.buffered() == 0);
  CHECK(!p.next());
}

TEST_CASE("enhanced codes need three numbers of 1-3 digits", "[reply]") {
  struct Case {
    std::string text;
    bool present;
  };
  const std::vector<Case> cases = {
      {"5.1.1 x", true},  {"5.1.1", true},  {"2.0.0 ok", true}, {"4.7.1000 x", false},
      {"3.1.1 x", false}, {"5.1 x", false}, {"5..1 x", false},  {"5.1.1x", false},
      {"x5.1.1", false},  {"5.1.", false},  {"", false},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    CHECK(parse_enhanced_code(c.text).has_value() == c.present);
  }
}

TEST_CASE("sanitize neutralises CR, LF and controls and caps the length", "[reply]") {
  CHECK(sanitize("a\r\nb") == "a??b");
  CHECK(sanitize(std::string("a\0b", 3)) == "a?b");
  CHECK(sanitize("\x7f\x1b[31m") == "??[31m");
  CHECK(sanitize(std::string(2000, 'x'), 10) == "xxxxxxxxxx...");
}
