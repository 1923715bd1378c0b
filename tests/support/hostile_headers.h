// tests/support/hostile_headers.h — messages whose header uses CR in every way LF-only readers and
// CR-splitting readers disagree on, with what every reader must make of them. One table for the
// drop parser (tests/spool), `sendmail -t` (tests/ctl) and the SMTP encoder (tests/smtp): each test
// checks its reader against the same expectations, so the three agree with each other.
// The rule (common/header_lines.h): in the header only LF ends a line, the CRs right before it
// belong to the ending, any other CR is a space; the header ends at an empty line or before the
// first line that is no field (the encoder then sends an empty line first).
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace spoold::test {

struct HostileHeader {
  const char* name;
  std::string message;              // a bare RFC 5322 message (From: and To: first)
  std::vector<std::string> fields;  // lower-case names of the header's fields, in order
  std::vector<std::string> rcpts;   // what a bare drop or `sendmail -t` takes from To/Cc/Bcc
  std::string wire;                 // the encoder's exact DATA bytes
  std::size_t longest;              // the longest line as read: the wire's, or a dropped Bcc line's
                                    // (the 998-octet limit holds for those too)
};

inline std::vector<HostileHeader> hostile_headers() {
  const std::string head = "From: a@x.org\nTo: b@x.org\n";
  const std::string wire = "From: a@x.org\r\nTo: b@x.org\r\n";
  return {
      {"CR CR LF ends one line, not two (the reported leak)",
       head + "X: y\r\r\nBcc: c@x.org\n\nbody\n",
       {"from", "to", "x", "bcc"},
       {"b@x.org", "c@x.org"},
       wire + "X: y\r\n\r\nbody\r\n.\r\n",
       13},
      {"a lone CR inside a line is a space, it starts no field",
       head + "Subject: a\rBcc: c@x.org\n\nbody\n",
       {"from", "to", "subject"},
       {"b@x.org"},
       wire + "Subject: a Bcc: c@x.org\r\n\r\nbody\r\n.\r\n",
       23},
      {"CR CR LF inside a folded Bcc",
       head + "Bcc: c@x.org,\r\r\n d@x.org\nSubject: s\n\nbody\n",
       {"from", "to", "bcc", "subject"},
       {"b@x.org", "c@x.org", "d@x.org"},
       wire + "Subject: s\r\n\r\nbody\r\n.\r\n",
       13},
      {"a lone CR inside a folded Bcc",
       head + "Bcc: c@x.org,\r d@x.org\n\nbody\n",
       {"from", "to", "bcc"},
       {"b@x.org", "c@x.org", "d@x.org"},
       wire + "\r\nbody\r\n.\r\n",
       22},
      {"a lone CR at a line start makes a continuation",
       head + "Subject: s\n\rBcc: c@x.org\n\nbody\n",
       {"from", "to", "subject"},
       {"b@x.org"},
       wire + "Subject: s\r\n Bcc: c@x.org\r\n\r\nbody\r\n.\r\n",
       13},
      {"LF CR CR is no empty line",
       head + "Subject: s\n\r\rBcc: c@x.org\n\nbody\n",
       {"from", "to", "subject"},
       {"b@x.org"},
       wire + "Subject: s\r\n  Bcc: c@x.org\r\n\r\nbody\r\n.\r\n",
       14},
      {"LF CR LF ends the header: a Bcc after it is body",
       head + "\r\nBcc: c@x.org\n",
       {"from", "to"},
       {"b@x.org"},
       wire + "\r\nBcc: c@x.org\r\n.\r\n",
       13},
      {"LF CR CR LF ends the header too",
       head + "\r\r\nBcc: c@x.org\n",
       {"from", "to"},
       {"b@x.org"},
       wire + "\r\nBcc: c@x.org\r\n.\r\n",
       13},
      {"CRLF CRLF ends the header",
       "From: a@x.org\r\nTo: b@x.org\r\n\r\nBcc: c@x.org\r\n",
       {"from", "to"},
       {"b@x.org"},
       wire + "\r\nBcc: c@x.org\r\n.\r\n",
       13},
      {"LF LF ends the header",
       head + "\nBcc: c@x.org\n",
       {"from", "to"},
       {"b@x.org"},
       wire + "\r\nBcc: c@x.org\r\n.\r\n",
       13},
      {"many CRs before LF",
       head + "Subject: s\r\r\r\r\nBcc: c@x.org\r\r\n\r\r\r\nbody\r\r\n",
       {"from", "to", "subject", "bcc"},
       {"b@x.org", "c@x.org"},
       wire + "Subject: s\r\n\r\nbody\r\n\r\n.\r\n",
       13},
      {"Bcc with white space before the colon",
       head + "Bcc : c@x.org\nSubject: s\n\nbody\n",
       {"from", "to", "bcc", "subject"},
       {"b@x.org", "c@x.org"},
       wire + "Subject: s\r\n\r\nbody\r\n.\r\n",
       13},
      {"a line that is no field ends the header, an empty line goes before it",
       head + "not a header\nBcc: c@x.org\n\nbody\n",
       {"from", "to"},
       {"b@x.org"},
       wire + "\r\nnot a header\r\nBcc: c@x.org\r\n\r\nbody\r\n.\r\n",
       13},
      {"a lone CR inside a line that is no field",
       head + "junk\rBcc: c@x.org\n",
       {"from", "to"},
       {"b@x.org"},
       wire + "\r\njunk Bcc: c@x.org\r\n.\r\n",
       17},
      {"Resent-Bcc is dropped and names no recipient",
       head + "Resent-Bcc: c@x.org\r\r\n\n",
       {"from", "to", "resent-bcc"},
       {"b@x.org"},
       wire + "\r\n.\r\n",
       19},
      {"a Date behind a lone CR is no Date field",
       head + "Subject: s\rDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n",
       {"from", "to", "subject"},
       {"b@x.org"},
       wire + "Subject: s Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n.\r\n",
       47},
      {"a CR at the end of the file in the header",
       head + "Bcc: c@x.org\r",
       {"from", "to", "bcc"},
       {"b@x.org", "c@x.org"},
       wire + ".\r\n",
       13},
      {"mixed CRLF and LF",
       "From: a@x.org\r\nTo: b@x.org\nBcc: c@x.org\r\n\nbody",
       {"from", "to", "bcc"},
       {"b@x.org", "c@x.org"},
       wire + "\r\nbody\r\n.\r\n",
       13},
  };
}

// True if the header of DATA bytes (up to the first empty line) has a Bcc:/Resent-Bcc: field.
inline bool wire_header_has_blind_field(const std::string& wire) {
  std::size_t end = wire.find("\r\n\r\n");
  std::string header = "\r\n" + wire.substr(0, end == std::string::npos ? wire.size() : end + 2);
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (i + 2 > header.size() || header[i] != '\r' || header[i + 1] != '\n') continue;
    std::string name;
    std::size_t j = i + 2;
    while (j < header.size() && header[j] != ':' && header[j] != '\r')
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(header[j++])));
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
    if (j < header.size() && header[j] == ':' && (name == "bcc" || name == "resent-bcc")) return true;
  }
  return false;
}

}  // namespace spoold::test
