// daemon/dsn.h — delivery status notifications (RFC 3464 multipart/report): non-delivery reports,
// delay warnings and "relayed" success reports, as the submission asked for them (RFC 3461 NOTIFY,
// RET, ENVID, ORCPT). Pure: text in, message out; the caller queues it from <> to the original
// sender.
// Rule: every outside text (server replies, addresses) is sanitised and folded so it can never
// inject a header or break the MIME structure; one DSN per original message per attempt.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace spoold::daemon {

enum class DsnAction { failed, delayed, relayed };
const char* to_string(DsnAction a);  // the RFC 3464 Action: value

// Whether a recipient's NOTIFY (canonical, spool/dsn.h; "" = not given) asks for a report of
// this kind. Without NOTIFY: failures and delays are reported (RFC 3461 §4.1 leaves it to the
// MTA; Postfix and sendmail do the same), success is not.
bool notify_wants(std::string_view notify, DsnAction a);

struct DsnRecipient {
  std::string address;
  std::string status;      // enhanced code "5.1.1" / "4.4.7" / "2.0.0"
  std::string diagnostic;  // "smtp; 550 5.1.1 no such user" or a local reason
  std::string remote_mta;  // host name of the server that answered, "" if none
  DsnAction action = DsnAction::failed;
  std::string orcpt = {};  // ORCPT "addr-type;address" of the submission, "" = none
};

// RET=FULL returns the whole message in a failure report when it is 7-bit and at most this size
// (an 8-bit one inside a report could not reach a server without 8BITMIME); otherwise, and in any
// report without RET=FULL, the header section only.
inline constexpr std::size_t kDsnFullMessageLimit = 1024 * 1024;

struct DsnInput {
  std::string reporting_mta;  // our hostname
  std::string original_qid;
  std::string original_sender;
  std::string envid;  // ENVID of the submission, "" = none
  std::chrono::system_clock::time_point arrival;
  std::chrono::system_clock::time_point now;
  std::vector<DsnRecipient> recipients;
  bool ret_full = false;            // RET=FULL was asked
  std::string original_headers;     // the header section of the original, possibly truncated
  std::string original_message;     // the whole original when it is attached; "" = headers only
  std::uint64_t original_size = 0;  // octets of the original (to say why it is not attached)
  std::string boundary_seed;        // makes the MIME boundary unique (e.g. the new qid)

  bool any(DsnAction a) const;
  // Whether the whole message goes in: a failure report, RET=FULL, and small enough.
  bool attach_full() const {
    return ret_full && any(DsnAction::failed) && original_size <= kDsnFullMessageLimit;
  }
};

// The whole RFC 5322 message (CRLF line endings), ready to be queued.
std::string make_dsn(const DsnInput& in);

// RFC 5322 date, e.g. "Sun, 22 Nov 2026 04:00:00 +0000".
std::string rfc5322_date(std::chrono::system_clock::time_point t);

}  // namespace spoold::daemon
