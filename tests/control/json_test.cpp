// tests/control/json_test.cpp — JSON round trips and hostile input for the control protocol.
#include <catch2/catch.hpp>

#include "control/json.h"
#include "control/protocol.h"

using spoold::control::Json;

TEST_CASE("json round trip") {
  Json j;
  j.set("ok", true).set("n", 42).set("f", 1.5).set("s", "a\"b\\c\nd\x01").set("null", Json());
  j.set("arr", Json().push(1).push("x").push(Json().set("k", -7)));
  auto text = j.dump();
  CHECK(text.find('\n') == std::string::npos);
  auto back = Json::parse(text);
  REQUIRE(back.ok());
  CHECK(back->dump() == text);
  CHECK((*back)["n"].as_int() == 42);
  CHECK((*back)["s"].as_string() == "a\"b\\c\nd\x01");
  CHECK((*back)["arr"].as_array().size() == 3);
  CHECK((*back)["arr"].as_array()[2]["k"].as_int() == -7);
  CHECK((*back)["missing"].is_null());
}

TEST_CASE("json parses escapes and unicode") {
  auto j = Json::parse(R"({"a":"\u00e9\ud83d\ude00\/","b":[true,false,null],"c":-1e3})");
  REQUIRE(j.ok());
  CHECK((*j)["a"].as_string() == "\xc3\xa9\xf0\x9f\x98\x80/");
  CHECK((*j)["c"].as_double() == -1000.0);
}

TEST_CASE("json rejects malformed input without crashing") {
  for (const char* bad : {"", "{", "[1,", "{\"a\"}", "{\"a\":}", "\"abc", "tru", "{\"a\":1}x", "[1 2]",
                          "\"\\x\"", "\"\\u12\"", "-", "1e999", "\"a\nb\""}) {
    INFO(bad);
    CHECK_FALSE(Json::parse(bad).ok());
  }
  std::string deep(10000, '[');
  CHECK_FALSE(Json::parse(deep).ok());
}

TEST_CASE("control call to a missing socket fails with errno") {
  auto r = spoold::control::call("/nonexistent/dir/control.sock", Json().set("cmd", "status"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ENOENT);
}
