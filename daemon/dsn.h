// daemon/dsn.h — delivery status notifications (RFC 3464 multipart/report) for bounces and delay
// warnings. Pure: text in, message out; the caller queues it from <> to the original sender.
// Rule: every outside text (server replies, addresses) is sanitised and folded so it can never
// inject a header or break the MIME structure; one DSN per original message per attempt.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace spoold::daemon {

struct DsnRecipient {
  std::string address;
  std::string status;      // enhanced code "5.1.1" / "4.4.7"
  std::string diagnostic;  // "smtp; 550 5.1.1 no such user" or a local reason
  std::string remote_mta;  // host name of the server that answered, "" if none
};

struct DsnInput {
  bool delayed = false;       // true: a warning (Action: delayed), the message is still queued
  std::string reporting_mta;  // our hostname
  std::string original_qid;
  std::string original_sender;
  std::chrono::system_clock::time_point arrival;
  std::chrono::system_clock::time_point now;
  std::vector<DsnRecipient> recipients;
  std::string original_headers;  // the header section of the original, possibly truncated
  std::string boundary_seed;     // makes the MIME boundary unique (e.g. the new qid)
};

// The whole RFC 5322 message (CRLF line endings), ready to be queued.
std::string make_dsn(const DsnInput& in);

// RFC 5322 date, e.g. "Sun, 22 Nov 2026 04:00:00 +0000".
std::string rfc5322_date(std::chrono::system_clock::time_point t);

}  // namespace spoold::daemon
