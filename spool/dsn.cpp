// spool/dsn.cpp — see dsn.h.
#include "spool/dsn.h"

#include <algorithm>

#include "common/ascii.h"
#include "common/xtext.h"

namespace spoold::spool {

namespace {

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// Splits "K=V K=V" into (key in upper case, value) pairs, calling f for each; an error from f or
// a word without "=" ends it.
template <class F>
Result<void> each_param(std::string_view s, F f) {
  while (!s.empty()) {
    std::size_t b = s.find_first_not_of(' ');
    if (b == std::string_view::npos) break;
    s.remove_prefix(b);
    std::string_view word = s.substr(0, s.find(' '));
    s.remove_prefix(word.size());
    std::size_t eq = word.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return make_error("expected KEY=VALUE, got '" + std::string(word) + "'");
    if (auto r = f(ascii_upper(word.substr(0, eq)), word.substr(eq + 1)); !r) return r;
  }
  return {};
}

}  // namespace

Result<std::string> canonical_notify(std::string_view value) {
  bool never = false, success = false, failure = false, delay = false;
  if (value.empty()) return make_error("empty NOTIFY");
  while (true) {
    std::size_t comma = value.find(',');
    std::string kw = ascii_upper(value.substr(0, comma));
    bool* flag = kw == "NEVER"     ? &never
                 : kw == "SUCCESS" ? &success
                 : kw == "FAILURE" ? &failure
                 : kw == "DELAY"   ? &delay
                                   : nullptr;
    if (!flag) return make_error("unknown NOTIFY keyword '" + kw + "'");
    if (*flag) return make_error("NOTIFY keyword " + kw + " twice");
    *flag = true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  if (never) {
    if (success || failure || delay) return make_error("NOTIFY=NEVER with other keywords");
    return std::string("NEVER");
  }
  std::string out;
  for (auto [on, name] : {std::pair{success, "SUCCESS"}, {failure, "FAILURE"}, {delay, "DELAY"}}) {
    if (!on) continue;
    if (!out.empty()) out += ',';
    out += name;
  }
  return out;
}

bool valid_ret(std::string_view ret) {
  return ret == "FULL" || ret == "HDRS";
}

bool valid_envid(std::string_view envid) {
  return !envid.empty() && envid.size() <= 100 && printable(envid);
}

bool valid_orcpt(std::string_view orcpt) {
  std::size_t semi = orcpt.find(';');
  if (semi == std::string_view::npos || semi == 0) return false;
  std::string_view type = orcpt.substr(0, semi), addr = orcpt.substr(semi + 1);
  if (!std::all_of(type.begin(), type.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      }))
    return false;
  // RFC 3461 §4.2: the parameter value, as encoded on the wire, is at most 500 characters.
  return !addr.empty() && semi + 1 + xtext::encode(addr).size() <= 500 &&
         addr.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

Result<MessageDsn> parse_mail_params(std::string_view params) {
  MessageDsn d;
  auto r = each_param(params, [&](const std::string& key, std::string_view value) -> Result<void> {
    if (key == "RET") {
      if (!d.ret.empty()) return make_error("RET twice");
      d.ret = ascii_upper(value);
      if (!valid_ret(d.ret)) return make_error("RET must be FULL or HDRS");
    } else if (key == "ENVID") {
      if (!d.envid.empty()) return make_error("ENVID twice");
      auto v = xtext::decode(value);
      if (!v || !valid_envid(*v)) return make_error("bad ENVID (xtext, 1 to 100 printable characters)");
      d.envid = std::move(*v);
    } else {
      return make_error("unknown MAIL FROM parameter " + key);
    }
    return {};
  });
  if (!r) return r.error();
  return d;
}

Result<RecipientDsn> parse_rcpt_params(std::string_view params) {
  RecipientDsn d;
  auto r = each_param(params, [&](const std::string& key, std::string_view value) -> Result<void> {
    if (key == "NOTIFY") {
      if (!d.notify.empty()) return make_error("NOTIFY twice");
      auto n = canonical_notify(value);
      if (!n) return n.error();
      d.notify = std::move(*n);
    } else if (key == "ORCPT") {
      if (!d.orcpt.empty()) return make_error("ORCPT twice");
      std::size_t semi = value.find(';');
      std::optional<std::string> addr;
      if (semi != std::string_view::npos) addr = xtext::decode(value.substr(semi + 1));
      std::string orcpt = addr ? std::string(value.substr(0, semi)) + ";" + *addr : "";
      if (!addr || !valid_orcpt(orcpt)) return make_error("bad ORCPT (addr-type;xtext)");
      d.orcpt = std::move(orcpt);
    } else {
      return make_error("unknown RCPT TO parameter " + key);
    }
    return {};
  });
  if (!r) return r.error();
  return d;
}

std::string format_mail_params(const MessageDsn& d) {
  std::string out;
  if (!d.ret.empty()) out += " RET=" + d.ret;
  if (!d.envid.empty()) out += " ENVID=" + xtext::encode(d.envid);
  return out;
}

std::string format_rcpt_params(const RecipientDsn& d) {
  std::string out;
  if (!d.notify.empty()) out += " NOTIFY=" + d.notify;
  if (!d.orcpt.empty()) {
    std::size_t semi = d.orcpt.find(';');
    out +=
        " ORCPT=" + d.orcpt.substr(0, semi + 1) + xtext::encode(std::string_view(d.orcpt).substr(semi + 1));
  }
  return out;
}

}  // namespace spoold::spool
