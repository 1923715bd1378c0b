// daemon/dsn.cpp — see dsn.h. Layout follows RFC 3464 §2 and RFC 3462 (multipart/report).
#include "daemon/dsn.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

namespace spoold::daemon {
namespace {

std::string clean(std::string_view s) {
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c >= 0x7F) ? ' ' : ch;  // DSN fields are 7-bit text
  }
  return out;
}

// Folds a long field value at spaces so no line exceeds ~78 octets (continuations start with a space).
std::string fold(const std::string& name, const std::string& value) {
  std::string out = name + ": ";
  size_t col = out.size();
  size_t i = 0;
  while (i < value.size()) {
    size_t sp = value.find(' ', i);
    std::string word = value.substr(i, sp == std::string::npos ? std::string::npos : sp - i);
    if (col + word.size() > 76 && col > name.size() + 2) {
      out += "\r\n ";
      col = 1;
    }
    while (word.size() > 900) {  // a single enormous word: hard-split, never an illegal line
      out += word.substr(0, 900) + "\r\n ";
      word.erase(0, 900);
      col = 1;
    }
    out += word;
    col += word.size();
    if (sp == std::string::npos) break;
    out += ' ';
    ++col;
    i = sp + 1;
  }
  return out + "\r\n";
}

std::string normalize_lines(const std::string& h) {
  // The original (headers or whole) as attached: CRLF everywhere, no line over 998 octets.
  std::string out;
  size_t line_len = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    char c = h[i];
    if (c == '\r') continue;
    if (c == '\n') {
      out += "\r\n";
      line_len = 0;
      continue;
    }
    if (line_len >= 990) {
      out += "\r\n ";
      line_len = 1;
    }
    out += c;
    ++line_len;
  }
  if (!out.empty() && out.substr(out.size() - 2) != "\r\n") out += "\r\n";
  return out;
}

}  // namespace

std::string rfc5322_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

const char* to_string(DsnAction a) {
  switch (a) {
    case DsnAction::failed:
      return "failed";
    case DsnAction::delayed:
      return "delayed";
    case DsnAction::relayed:
      return "relayed";
  }
  return "failed";
}

bool notify_wants(std::string_view notify, DsnAction a) {
  if (notify.empty()) return a != DsnAction::relayed;
  std::string_view word = a == DsnAction::failed ? "FAILURE" : a == DsnAction::delayed ? "DELAY" : "SUCCESS";
  while (!notify.empty()) {
    auto comma = notify.find(',');
    if (notify.substr(0, comma) == word) return true;
    if (comma == std::string_view::npos) break;
    notify.remove_prefix(comma + 1);
  }
  return false;  // NEVER, or a list without this keyword
}

bool DsnInput::any(DsnAction a) const {
  for (const auto& r : recipients)
    if (r.action == a) return true;
  return false;
}

std::string make_dsn(const DsnInput& in) {
  std::string boundary = fmt::format("spoold-dsn-{}", clean(in.boundary_seed));
  std::string mta = clean(in.reporting_mta);
  const bool failed = in.any(DsnAction::failed), delayed = in.any(DsnAction::delayed);
  const bool full = in.attach_full() && !in.original_message.empty() &&
                    std::none_of(in.original_message.begin(), in.original_message.end(),
                                 [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  std::string m;
  m += fmt::format("From: Mail Delivery System <MAILER-DAEMON@{}>\r\n", mta);
  m += fmt::format("To: <{}>\r\n", clean(in.original_sender));
  m += failed    ? "Subject: Undelivered Mail Returned to Sender\r\n"
       : delayed ? "Subject: Delayed Mail (still being retried)\r\n"
                 : "Subject: Successful Mail Delivery Report\r\n";
  m += fmt::format("Date: {}\r\n", rfc5322_date(in.now));
  m += fmt::format("Message-ID: <{}.dsn@{}>\r\n", clean(in.boundary_seed), mta);
  m += "Auto-Submitted: auto-replied\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += fmt::format("Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"{}\"\r\n",
                   boundary);
  m += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

  // Human-readable part: one paragraph and list per kind of report.
  m += fmt::format("--{}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
  m += fmt::format("This is the mail system at host {}.\r\n\r\n", mta);
  auto list = [&](DsnAction a) {
    for (const auto& r : in.recipients)
      if (r.action == a) m += fold(fmt::format("<{}>", clean(r.address)), clean(r.diagnostic));
    m += "\r\n";
  };
  if (failed) {
    m += "I'm sorry to have to inform you that your message could not\r\n"
         "be delivered to one or more recipients. ";
    if (full) {
      m += "It's attached below.\r\n\r\n";
    } else if (in.ret_full) {
      m += fmt::format(
          "It could not be returned\r\nwhole (over {} bytes, or 8-bit text), so only its header section "
          "is\r\n"
          "attached below.\r\n\r\n",
          kDsnFullMessageLimit);
    } else {
      m += "Its header section is\r\nattached below.\r\n\r\n";
    }
    list(DsnAction::failed);
  }
  if (delayed) {
    m += "Your message could not be delivered yet to the recipients below. It is\r\n"
         "still queued and will be retried; you do not need to send it again.\r\n\r\n";
    list(DsnAction::delayed);
  }
  if (in.any(DsnAction::relayed)) {
    m += "Your message was delivered to the next mail system for the recipients\r\n"
         "below, which does not offer delivery notifications: you may hear of\r\n"
         "errors from later systems, but not of the final delivery.\r\n\r\n";
    list(DsnAction::relayed);
  }

  // Machine-readable part.
  m += fmt::format("--{}\r\nContent-Type: message/delivery-status\r\n\r\n", boundary);
  if (!in.envid.empty()) m += fold("Original-Envelope-Id", clean(in.envid));
  m += fmt::format("Reporting-MTA: dns; {}\r\n", mta);
  m += fmt::format("X-Spoold-Queue-ID: {}\r\n", clean(in.original_qid));
  m += fmt::format("Arrival-Date: {}\r\n", rfc5322_date(in.arrival));
  for (const auto& r : in.recipients) {
    m += "\r\n";
    if (auto semi = r.orcpt.find(';'); semi != std::string::npos)
      m +=
          fold("Original-Recipient", clean(r.orcpt.substr(0, semi)) + "; " + clean(r.orcpt.substr(semi + 1)));
    m += fmt::format("Final-Recipient: rfc822; {}\r\n", clean(r.address));
    m += fmt::format("Action: {}\r\n", to_string(r.action));
    std::string fallback = r.action == DsnAction::failed    ? "5.0.0"
                           : r.action == DsnAction::delayed ? "4.0.0"
                                                            : "2.0.0";
    m += fmt::format("Status: {}\r\n", clean(r.status.empty() ? fallback : r.status));
    if (!r.remote_mta.empty()) m += fmt::format("Remote-MTA: dns; {}\r\n", clean(r.remote_mta));
    if (!r.diagnostic.empty()) m += fold("Diagnostic-Code", clean(r.diagnostic));
  }
  m += "\r\n";

  // The original: whole (RET=FULL) or its header section.
  if (full) {
    m += fmt::format("--{}\r\nContent-Type: message/rfc822\r\n\r\n", boundary);
    m += normalize_lines(in.original_message);
  } else {
    m += fmt::format("--{}\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
    m += normalize_lines(in.original_headers);
  }
  m += fmt::format("\r\n--{}--\r\n", boundary);
  return m;
}

}  // namespace spoold::daemon
