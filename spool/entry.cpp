// spool/entry.cpp — the versioned text format of a queue entry (see entry.h and
// docs/spool-format.md). One record per line: "key field field…"; only the last field of a line
// may contain spaces. Escaping is %XX for '%', control bytes and (in non-final fields) space.
#include "spool/entry.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <utility>

#include <fmt/format.h>

namespace spoold::spool {

std::string_view to_string(RcptState s) {
  switch (s) {
    case RcptState::pending:
      return "pending";
    case RcptState::sent:
      return "sent";
    case RcptState::bounced:
      return "bounced";
    case RcptState::expired:
      return "expired";
  }
  return "?";
}

bool Entry::all_final() const {
  return std::all_of(recipients.begin(), recipients.end(), [](const Recipient& r) { return r.final(); });
}

size_t Entry::pending() const {
  return static_cast<size_t>(
      std::count_if(recipients.begin(), recipients.end(), [](const Recipient& r) { return !r.final(); }));
}

namespace {

std::string escape(std::string_view s, bool last_field) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u == '%' || u < 0x20 || u == 0x7f || (u == ' ' && !last_field)) {
      out += fmt::format("%{:02X}", u);
    } else {
      out += c;
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

Result<std::string> unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      auto u = static_cast<unsigned char>(s[i]);
      if (u < 0x20 || u == 0x7f) return make_error("raw control byte in field");
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return make_error("truncated % escape");
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return make_error("bad % escape");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string angle(std::string_view addr) {
  return "<" + escape(addr, false) + ">";
}

Result<std::string> unangle(std::string_view f) {
  if (f.size() < 2 || f.front() != '<' || f.back() != '>') return make_error("address not in <>");
  return unescape(f.substr(1, f.size() - 2));
}

template <class T>
Result<T> number(std::string_view f) {
  T v{};
  auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
  if (ec != std::errc() || p != f.data() + f.size() || f.empty())
    return make_error("bad number '" + std::string(f) + "'");
  return v;
}

// Splits off the first space-separated field.
std::string_view next_field(std::string_view& rest) {
  auto sp = rest.find(' ');
  std::string_view f = rest.substr(0, sp);
  rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
  return f;
}

std::string format_flags(const EntryFlags& f) {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!out.empty()) out += ',';
    out += name;
  };
  add(f.missing_date, "missing-date");
  add(f.missing_message_id, "missing-message-id");
  add(f.eight_bit, "8bit");
  add(f.has_bcc, "bcc");
  add(f.warning_sent, "warning-sent");
  return out.empty() ? "-" : out;
}

Result<EntryFlags> parse_flags(std::string_view s) {
  EntryFlags f;
  if (s == "-") return f;
  while (!s.empty()) {
    auto comma = s.find(',');
    auto name = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
    if (name == "missing-date")
      f.missing_date = true;
    else if (name == "missing-message-id")
      f.missing_message_id = true;
    else if (name == "8bit")
      f.eight_bit = true;
    else if (name == "bcc")
      f.has_bcc = true;
    else if (name == "warning-sent")
      f.warning_sent = true;
    else
      return make_error("unknown flag '" + std::string(name) + "'");
  }
  return f;
}

Result<RcptState> parse_state(std::string_view s) {
  for (auto st : {RcptState::pending, RcptState::sent, RcptState::bounced, RcptState::expired})
    if (s == to_string(st)) return st;
  return make_error("unknown recipient state '" + std::string(s) + "'");
}

bool valid_id(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c));
  });
}

struct Reader {
  Entry e;
  bool saw_version = false, saw_end = false, saw_id = false, saw_from = false;
  int version = 0;
  bool rcpt_dsn_open = false;  // the last line was a rcpt line: a rcpt-dsn line may follow

  Result<void> line(std::string_view l) {
    if (saw_end) return make_error("data after end");
    std::string_view rest = l;
    std::string_view key = next_field(rest);
    if (!saw_version) {
      if (key != "spoold-entry") return make_error("not a spoold entry");
      auto v = number<int>(rest);
      if (!v) return v.error();
      if (*v < 1 || *v > kEntryFormatVersion)
        return make_error(fmt::format("unsupported entry version {}", *v));
      version = *v;
      saw_version = true;
      return {};
    }
    const bool after_rcpt = std::exchange(rcpt_dsn_open, false);
    if (version >= 2 && (key.starts_with("dsn-") || key == "rcpt-dsn"))
      return dsn_line(key, rest, after_rcpt);
    if (key == "id") {
      if (!valid_id(rest)) return make_error("bad id");
      e.id = std::string(rest);
      saw_id = true;
    } else if (key == "arrived") {
      return set(e.arrived, rest);
    } else if (key == "last-attempt") {
      return set(e.last_attempt, rest);
    } else if (key == "attempts") {
      return set(e.attempts, rest);
    } else if (key == "body-offset") {
      return set(e.body_offset, rest);
    } else if (key == "body-size") {
      return set(e.body_size, rest);
    } else if (key == "longest-line") {
      return set(e.longest_line, rest);
    } else if (key == "flags") {
      auto f = parse_flags(rest);
      if (!f) return f.error();
      e.flags = *f;
    } else if (key == "from") {
      auto a = unangle(rest);
      if (!a) return a.error();
      e.sender = std::move(*a);
      saw_from = true;
    } else if (key == "rcpt") {
      return rcpt(rest);
    } else if (key == "reason") {
      auto r = unescape(rest);
      if (!r) return r.error();
      e.reason = std::move(*r);
    } else if (key == "end" && rest.empty()) {
      saw_end = true;
    } else {
      return make_error("unknown key '" + std::string(key) + "'");
    }
    return {};
  }

  template <class T>
  Result<void> set(T& out, std::string_view f) {
    auto v = number<T>(f);
    if (!v) return v.error();
    out = *v;
    return {};
  }

  Result<void> rcpt(std::string_view rest) {
    Recipient r;
    auto st = parse_state(next_field(rest));
    if (!st) return st.error();
    r.state = *st;
    auto n = number<int>(next_field(rest));
    if (!n) return n.error();
    r.attempts = *n;
    auto a = unangle(next_field(rest));
    if (!a) return a.error();
    if (a->empty()) return make_error("empty recipient");
    r.address = std::move(*a);
    auto reply = unescape(rest);
    if (!reply) return reply.error();
    r.last_reply = std::move(*reply);
    e.recipients.push_back(std::move(r));
    rcpt_dsn_open = true;
    return {};
  }

  // dsn-ret FULL|HDRS; dsn-envid ENVID; rcpt-dsn NOTIFY|- ORCPT (right after its rcpt line).
  Result<void> dsn_line(std::string_view key, std::string_view rest, bool after_rcpt) {
    if (key == "dsn-ret") {
      if (!e.dsn.ret.empty() || !valid_ret(rest)) return make_error("bad or repeated dsn-ret");
      e.dsn.ret = std::string(rest);
      return {};
    }
    if (key == "dsn-envid") {
      auto v = unescape(rest);
      if (!v) return v.error();
      if (!e.dsn.envid.empty() || !valid_envid(*v)) return make_error("bad or repeated dsn-envid");
      e.dsn.envid = std::move(*v);
      return {};
    }
    if (key != "rcpt-dsn") return make_error("unknown key '" + std::string(key) + "'");
    if (!after_rcpt) return make_error("rcpt-dsn not right after its rcpt line");
    RecipientDsn d;
    std::string_view notify = next_field(rest);
    if (notify != "-") {
      auto n = canonical_notify(notify);
      if (!n || *n != notify) return make_error("bad NOTIFY in rcpt-dsn");
      d.notify = std::string(notify);
    }
    auto orcpt = unescape(rest);
    if (!orcpt) return orcpt.error();
    if (!orcpt->empty() && !valid_orcpt(*orcpt)) return make_error("bad ORCPT in rcpt-dsn");
    d.orcpt = std::move(*orcpt);
    if (d.empty()) return make_error("empty rcpt-dsn");
    e.recipients.back().dsn = std::move(d);
    return {};
  }
};

}  // namespace

std::string format_entry(const Entry& e) {
  const bool dsn = !e.dsn.empty() || std::any_of(e.recipients.begin(), e.recipients.end(),
                                                 [](const Recipient& r) { return !r.dsn.empty(); });
  std::string out = fmt::format("spoold-entry {}\n", dsn ? kEntryFormatVersion : 1);
  out += fmt::format("id {}\narrived {}\nlast-attempt {}\nattempts {}\n", e.id, e.arrived, e.last_attempt,
                     e.attempts);
  out += fmt::format("body-offset {}\nbody-size {}\nflags {}\n", e.body_offset, e.body_size,
                     format_flags(e.flags));
  if (e.longest_line > 0) out += fmt::format("longest-line {}\n", e.longest_line);
  out += "from " + angle(e.sender) + "\n";
  if (!e.dsn.ret.empty()) out += "dsn-ret " + e.dsn.ret + "\n";
  if (!e.dsn.envid.empty()) out += "dsn-envid " + escape(e.dsn.envid, true) + "\n";
  for (const auto& r : e.recipients) {
    std::string_view reply = std::string_view(r.last_reply).substr(0, kMaxReplyText);
    out += fmt::format("rcpt {} {} {} {}\n", to_string(r.state), r.attempts, angle(r.address),
                       escape(reply, true));
    if (!r.dsn.empty())
      out += fmt::format("rcpt-dsn {} {}\n", r.dsn.notify.empty() ? "-" : r.dsn.notify,
                         escape(r.dsn.orcpt, true));
  }
  if (!e.reason.empty())
    out += "reason " + escape(std::string_view(e.reason).substr(0, kMaxReplyText), true) + "\n";
  out += "end\n";
  return out;
}

Result<Entry> parse_entry(std::string_view text) {
  if (text.size() > kMaxEntryBytes) return make_error("entry file too large");
  Reader rd;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    if (nl == std::string_view::npos)
      return make_error(fmt::format("line {}: no newline (truncated file)", line_no));
    if (nl > kMaxEntryLine)
      return make_error(fmt::format("line {}: longer than {} bytes", line_no, kMaxEntryLine));
    if (auto r = rd.line(text.substr(0, nl)); !r)
      return make_error(fmt::format("line {}: {}", line_no, r.error().message));
    text.remove_prefix(nl + 1);
  }
  if (!rd.saw_end) return make_error("missing end line (truncated file)");
  if (!rd.saw_id || !rd.saw_from) return make_error("missing id or from");
  if (rd.e.recipients.empty()) return make_error("no recipients");
  return std::move(rd.e);
}

}  // namespace spoold::spool
