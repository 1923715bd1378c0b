// spool/dsn.h — RFC 3461 delivery status notification requests as the spool keeps them: the MAIL
// FROM parameters RET and ENVID for a message, NOTIFY and ORCPT for each recipient. They come in
// with the submission (the listener, an envelope-first drop) and stay in the entry for the
// delivery side and the bounce writer.
// Rule: only canonical, validated values are stored; parsing a drop line refuses an unknown or
// repeated parameter or a malformed value, never drops it silently.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace spoold::spool {

struct MessageDsn {
  std::string ret;    // "FULL", "HDRS" or "" (not given)
  std::string envid;  // ENVID, xtext-decoded: 1 to 100 printable ASCII characters; "" = none
  bool empty() const { return ret.empty() && envid.empty(); }
  bool operator==(const MessageDsn&) const = default;
};

struct RecipientDsn {
  std::string notify;  // "NEVER", or SUCCESS, FAILURE, DELAY joined by ',' in that order; "" = not given
  std::string orcpt;   // ORCPT "addr-type;address", the address xtext-decoded; "" = none
  bool empty() const { return notify.empty() && orcpt.empty(); }
  bool operator==(const RecipientDsn&) const = default;
};

// A NOTIFY value (any case) in canonical form: "never" → "NEVER", "delay,Success" →
// "SUCCESS,DELAY". An error for an empty list, an unknown or repeated keyword, or NEVER with others.
Result<std::string> canonical_notify(std::string_view value);
// Checks of stored values (the entry reader refuses others).
bool valid_ret(std::string_view ret);
bool valid_envid(std::string_view envid);
bool valid_orcpt(
    std::string_view orcpt);  // addr-type ";" address, no CR/LF/NUL, ≤ 500 characters xtext-encoded

// The parameters after the address of a drop's "MAIL FROM:<…>" / "RCPT TO:<…>" line, in SMTP
// syntax: "RET=HDRS ENVID=abc+2Bdef", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.com".
Result<MessageDsn> parse_mail_params(std::string_view params);
Result<RecipientDsn> parse_rcpt_params(std::string_view params);
// The same, written back (" RET=HDRS ENVID=…", with a leading space; "" when nothing is set).
std::string format_mail_params(const MessageDsn& d);
std::string format_rcpt_params(const RecipientDsn& d);

}  // namespace spoold::spool
