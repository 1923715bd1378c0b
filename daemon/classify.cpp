// daemon/classify.cpp — see classify.h.
#include "daemon/classify.h"

namespace spoold::daemon {

const char* to_string(Disposition d) {
  switch (d) {
    case Disposition::final:
      return "final";
    case Disposition::next_address:
      return "next address";
  }
  return "?";
}

const char* to_string(CloseAction a) {
  switch (a) {
    case CloseAction::none:
      return "none";
    case CloseAction::plaintext_retry:
      return "plaintext retry";
    case CloseAction::server_failed:
      return "server failed";
  }
  return "?";
}

Disposition classify(const smtp::Outcome& o) {
  // A possible duplicate (the connection died after the final dot) must not go to another server
  // in the same attempt: the first may have delivered it.
  bool no_verdict = o.status == smtp::Status::temporary && (o.code == 0 || o.code == 421);
  return no_verdict && !o.possible_duplicate ? Disposition::next_address : Disposition::final;
}

CloseAction on_session_end(const SessionEnd& end, const smtp::Outcome& why) {
  if (end.cut_by_us) return CloseAction::none;
  if (end.never_ready && !end.plaintext && end.starttls_failed && !end.relay && end.opportunistic &&
      !end.stopping)
    return CloseAction::plaintext_retry;
  // A session that died inside a transaction (a timeout, a reset, a 421) says the server is as
  // broken as one that never got ready: the parts still queued for it are deferred at once instead
  // of each waiting out the same timeout.
  bool died_busy = end.busy && why.status == smtp::Status::temporary && (why.code == 0 || why.code == 421);
  if (why.status != smtp::Status::sent && (end.never_ready || died_busy)) return CloseAction::server_failed;
  return CloseAction::none;
}

smtp::Outcome server_failure(smtp::Outcome why, bool never_ready, bool relay) {
  why.enhanced = smtp::dsn_code(why);
  if (never_ready && relay && why.status == smtp::Status::permanent) {
    why.status = smtp::Status::temporary;
    why.enhanced[0] = '4';
  }
  return why;
}

bool worth_talking_again(const smtp::Outcome& o) {
  return o.status == smtp::Status::temporary && o.code >= 400 && o.code < 500 && o.code != 421 &&
         !o.possible_duplicate;
}

}  // namespace spoold::daemon
