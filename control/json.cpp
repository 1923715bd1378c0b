// control/json.cpp — JSON parse/dump. Control characters and non-UTF-8 bytes are escaped on output
// (\u00XX for controls; other bytes pass through) so a hostile reply text can never break a line.
#include "control/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace spoold::control {
namespace {

const Json& null_json() {
  static const Json n;
  return n;
}

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {}

  Result<Json> document() {
    Json v;
    if (!value(v, 0)) return make_error(fmt::format("JSON: {} at offset {}", err_, i_));
    ws();
    if (i_ != t_.size()) return make_error(fmt::format("JSON: trailing data at offset {}", i_));
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;

  void ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
  }
  bool fail(const char* what) {
    err_ = what;
    return false;
  }
  bool literal(std::string_view word) {
    if (t_.substr(i_, word.size()) != word) return fail("bad literal");
    i_ += word.size();
    return true;
  }

  bool value(Json& out, int depth) {
    if (depth > kMaxDepth) return fail("nested too deeply");
    ws();
    if (i_ >= t_.size()) return fail("unexpected end");
    char c = t_[i_];
    if (c == 'n') return literal("null") && (out = Json(), true);
    if (c == 't') return literal("true") && (out = Json(true), true);
    if (c == 'f') return literal("false") && (out = Json(false), true);
    if (c == '"') {
      std::string s;
      if (!string(s)) return false;
      out = Json(std::move(s));
      return true;
    }
    if (c == '[') return array(out, depth);
    if (c == '{') return object(out, depth);
    return number(out);
  }

  bool array(Json& out, int depth) {
    ++i_;
    Json::Array a;
    ws();
    if (i_ < t_.size() && t_[i_] == ']') {
      ++i_;
      out = Json(std::move(a));
      return true;
    }
    for (;;) {
      Json v;
      if (!value(v, depth + 1)) return false;
      a.push_back(std::move(v));
      ws();
      if (i_ >= t_.size()) return fail("unterminated array");
      if (t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (t_[i_] == ']') {
        ++i_;
        out = Json(std::move(a));
        return true;
      }
      return fail("expected , or ]");
    }
  }

  bool object(Json& out, int depth) {
    ++i_;
    Json::Object o;
    ws();
    if (i_ < t_.size() && t_[i_] == '}') {
      ++i_;
      out = Json(std::move(o));
      return true;
    }
    for (;;) {
      ws();
      if (i_ >= t_.size() || t_[i_] != '"') return fail("expected a key");
      std::string key;
      if (!string(key)) return false;
      ws();
      if (i_ >= t_.size() || t_[i_] != ':') return fail("expected :");
      ++i_;
      Json v;
      if (!value(v, depth + 1)) return false;
      o[key] = std::move(v);
      ws();
      if (i_ >= t_.size()) return fail("unterminated object");
      if (t_[i_] == ',') {
        ++i_;
        continue;
      }
      if (t_[i_] == '}') {
        ++i_;
        out = Json(std::move(o));
        return true;
      }
      return fail("expected , or }");
    }
  }

  static void utf8(std::string& s, unsigned cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  bool hex4(unsigned& cp) {
    if (i_ + 4 > t_.size()) return fail("short \\u escape");
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      char h = t_[i_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') {
        cp |= static_cast<unsigned>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        cp |= static_cast<unsigned>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        cp |= static_cast<unsigned>(h - 'A' + 10);
      } else {
        return fail("bad \\u escape");
      }
    }
    return true;
  }

  bool string(std::string& s) {
    ++i_;  // opening quote
    while (i_ < t_.size()) {
      char c = t_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
      if (c != '\\') {
        s += c;
        continue;
      }
      if (i_ >= t_.size()) break;
      char e = t_[i_++];
      switch (e) {
        case '"':
          s += '"';
          break;
        case '\\':
          s += '\\';
          break;
        case '/':
          s += '/';
          break;
        case 'b':
          s += '\b';
          break;
        case 'f':
          s += '\f';
          break;
        case 'n':
          s += '\n';
          break;
        case 'r':
          s += '\r';
          break;
        case 't':
          s += '\t';
          break;
        case 'u': {
          unsigned cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00 && t_.substr(i_, 2) == "\\u") {
            i_ += 2;
            unsigned lo = 0;
            if (!hex4(lo)) return false;
            if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(s, cp);
          break;
        }
        default:
          return fail("bad escape");
      }
    }
    return fail("unterminated string");
  }

  bool number(Json& out) {
    size_t start = i_;
    if (i_ < t_.size() && t_[i_] == '-') ++i_;
    bool is_float = false;
    while (i_ < t_.size()) {
      char c = t_[i_];
      if (c >= '0' && c <= '9') {
        ++i_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        is_float = true;
        ++i_;
      } else {
        break;
      }
    }
    std::string s(t_.substr(start, i_ - start));
    if (s.empty() || s == "-") return fail("unexpected character");
    char* end = nullptr;
    if (!is_float) {
      errno = 0;
      long long v = std::strtoll(s.c_str(), &end, 10);
      if (*end == 0 && errno == 0) {
        out = Json(v);
        return true;
      }
    }
    double d = std::strtod(s.c_str(), &end);
    if (*end != 0 || !std::isfinite(d)) return fail("bad number");
    out = Json(d);
    return true;
  }

  std::string_view t_;
  size_t i_ = 0;
  const char* err_ = "";
};

void dump_to(std::string& out, const Json& j) {
  if (j.is_null()) {
    out += "null";
  } else if (j.is_bool()) {
    out += j.as_bool() ? "true" : "false";
  } else if (j.is_int()) {
    out += std::to_string(j.as_int());
  } else if (j.is_number()) {
    out += fmt::format("{}", j.as_double());
  } else if (j.is_string()) {
    append_json_string(out, j.as_string());
  } else if (j.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& v : j.as_array()) {
      if (!first) out += ',';
      first = false;
      dump_to(out, v);
    }
    out += ']';
  } else {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : j.as_object()) {
      if (!first) out += ',';
      first = false;
      append_json_string(out, k);
      out += ':';
      dump_to(out, v);
    }
    out += '}';
  }
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::int64_t Json::as_int(std::int64_t def) const {
  if (v_.index() == 2) return std::get<2>(v_);
  if (v_.index() == 3) return static_cast<std::int64_t>(std::get<3>(v_));
  return def;
}

double Json::as_double(double def) const {
  if (v_.index() == 2) return static_cast<double>(std::get<2>(v_));
  if (v_.index() == 3) return std::get<3>(v_);
  return def;
}

const std::string& Json::as_string() const {
  static const std::string empty;
  return is_string() ? std::get<4>(v_) : empty;
}

const Json::Array& Json::as_array() const {
  static const Array empty;
  return is_array() ? std::get<5>(v_) : empty;
}

const Json::Object& Json::as_object() const {
  static const Object empty;
  return is_object() ? std::get<6>(v_) : empty;
}

const Json& Json::operator[](const std::string& key) const {
  if (!is_object()) return null_json();
  const auto& o = std::get<6>(v_);
  auto it = o.find(key);
  return it == o.end() ? null_json() : it->second;
}

Json& Json::set(const std::string& key, Json value) {
  if (!is_object()) v_ = Object{};
  std::get<6>(v_)[key] = std::move(value);
  return *this;
}

Json& Json::push(Json value) {
  if (!is_array()) v_ = Array{};
  std::get<5>(v_).push_back(std::move(value));
  return *this;
}

std::string Json::dump() const {
  std::string out;
  dump_to(out, *this);
  return out;
}

Result<Json> Json::parse(std::string_view text) {
  return Parser(text).document();
}

}  // namespace spoold::control
