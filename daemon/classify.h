// daemon/classify.h — what an SMTP result means for delivery: pure decisions, tested by table.
// Rules (docs/design.md "Delivery"): a reply that is a verdict on a recipient (any 2xx, 4xx or
// 5xx to RCPT or after the dot) is final for this attempt; a failure before the server gave one (no
// reply, a reset, 421) sends the recipient on to the next address of its next hop in the same
// attempt. A part belongs to one next hop (all its MX hosts, a host list or a relay group), so
// "next address" also walks the next MX host; there is no separate "next hop" case.
#pragma once

#include "smtp/types.h"

namespace spoold::daemon {

enum class Disposition { final, next_address };
const char* to_string(Disposition d);

// One recipient's outcome in a transaction.
Disposition classify(const smtp::Outcome& o);

// How a session ended, as far as the decision below needs it.
struct SessionEnd {
  bool never_ready = false;      // closed before it was ready for a transaction
  bool busy = false;             // closed inside a transaction
  bool cut_by_us = false;        // we cut it (max_connection_time, lock lost): not the server's fault
  bool plaintext = false;        // it was already the plaintext retry
  bool starttls_failed = false;  // the TLS handshake after STARTTLS failed
  bool relay = false;            // a relay destination (its TLS settings are its own, never relaxed)
  bool opportunistic = false;    // delivery.tls is opportunistic
  bool stopping = false;         // the daemon is stopping
};

enum class CloseAction {
  none,             // nothing to hold against the server (a normal close, our own cut)
  plaintext_retry,  // RFC 7435: the same server again at once, without STARTTLS
  server_failed,    // counts as a failure of the server (skipped after connect_attempts of them)
};
const char* to_string(CloseAction a);

CloseAction on_session_end(const SessionEnd& end, const smtp::Outcome& why);

// talk_attempts: the server refused the recipient with a 4xx reply that leaves the session usable
// (not 421), so the transaction may be tried again on the same session. A local reason (no reply
// code) or a possible duplicate never is.
bool worth_talking_again(const smtp::Outcome& o);

// What the parts waiting for a failed server are told. A relay that refuses us before any
// transaction (AUTH 535, TLS required, a 5xx greeting) is a configuration problem on one side or
// the other: deferred (as Postfix's soft bounce does), never bounced. The enhanced code is filled.
smtp::Outcome server_failure(smtp::Outcome why, bool never_ready, bool relay);

}  // namespace spoold::daemon
