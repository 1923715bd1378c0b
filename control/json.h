// control/json.h — a small JSON value for the control socket and `--json` output.
// Rule: the parser takes untrusted bytes: bounded depth, no recursion past it, errors as values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"

namespace spoold::control {

class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::map<std::string, Json>;

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : v_(b) {}
  Json(int i) : v_(static_cast<std::int64_t>(i)) {}
  Json(long i) : v_(static_cast<std::int64_t>(i)) {}
  Json(long long i) : v_(static_cast<std::int64_t>(i)) {}
  Json(unsigned i) : v_(static_cast<std::int64_t>(i)) {}
  Json(unsigned long i) : v_(static_cast<std::int64_t>(i)) {}
  Json(unsigned long long i) : v_(static_cast<std::int64_t>(i)) {}
  Json(double d) : v_(d) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(std::string_view s) : v_(std::string(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  bool is_null() const { return v_.index() == 0; }
  bool is_bool() const { return v_.index() == 1; }
  bool is_int() const { return v_.index() == 2; }
  bool is_number() const { return v_.index() == 2 || v_.index() == 3; }
  bool is_string() const { return v_.index() == 4; }
  bool is_array() const { return v_.index() == 5; }
  bool is_object() const { return v_.index() == 6; }

  bool as_bool(bool def = false) const { return is_bool() ? std::get<1>(v_) : def; }
  std::int64_t as_int(std::int64_t def = 0) const;
  double as_double(double def = 0) const;
  const std::string& as_string() const;  // "" when not a string
  const Array& as_array() const;         // empty when not an array
  const Object& as_object() const;       // empty when not an object

  // Object access: a missing key (or a non-object) yields null.
  const Json& operator[](const std::string& key) const;
  Json& set(const std::string& key, Json value);  // turns null into an object; returns *this
  Json& push(Json value);                         // turns null into an array; returns *this

  // Compact single-line form (the wire format: one JSON object per line).
  std::string dump() const;
  static Result<Json> parse(std::string_view text);

 private:
  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> v_;
};

// Appends s as a JSON string literal (quotes and escapes included) — also used by the JSON logger.
void append_json_string(std::string& out, std::string_view s);

}  // namespace spoold::control
