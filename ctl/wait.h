// ctl/wait.h — the submission modes that wait for the outcome (sendmail -odi / -odb,
// spoolctl send --mode interactive|background; docs/design.md "Submission modes").
// Rule: the caller hears "sent" only from records of durable outcomes; a message is withdrawn
// only when no attempt of it may have delivered it (never after a deferral past the final dot,
// never while an attempt runs, never once a recipient was sent) — otherwise it stays queued and
// the caller is told so. OutcomeWait is pure (records in, a verdict out) and table-tested.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "control/json.h"
#include "ctl/args.h"

namespace spoold::ctl {

class OutcomeWait {
 public:
  enum class Verdict {
    waiting,   // no attempt has ended with a result yet
    sent,      // every recipient sent
    failed,    // every recipient has its outcome, some failed permanently
    deferred,  // an attempt ended with recipients deferred
  };
  // One record of the watched message: {"event":"delivery", …} or {"event":"attempt", …}.
  Verdict feed(const control::Json& record);

  // The bounced or expired recipients: "<rcpt>: REPLY" each.
  const std::vector<std::string>& failures() const { return failures_; }
  // The reason of the last deferral.
  const std::string& deferral() const { return deferral_; }
  bool any_sent() const { return sent_ > 0; }
  // A deferral after the final dot: the server may have taken the message.
  bool maybe_delivered() const { return maybe_delivered_; }

 private:
  std::vector<std::string> failures_;
  std::string deferral_;
  int sent_ = 0;
  int deferred_in_attempt_ = 0;
  bool maybe_delivered_ = false;
};

// What one waiting submission ends with: the exit code and the lines for stderr.
struct WaitResult {
  int exit_code = 0;
  std::vector<std::string> messages;
};

// How a withdrawal went (the spool's `withdraw` of the message, through the daemon or offline).
struct Withdrawal {
  enum class Kind {
    done,       // removed: nothing had delivered it
    in_flight,  // an attempt holds it (it may deliver it now)
    refused,    // it may have been delivered: a recipient sent, a deferral after the dot
    gone,       // no message with this id in the spool any more (delivered, or renamed meanwhile)
    unknown,    // the daemon did not answer: its own withdrawal may still be running
    failed,     // the spool could not be changed
  } kind = Kind::failed;
  std::string why;
};

// The exit code and messages for a wait that ended with `v` (or timed out: timed_out, v is what
// was seen so far). `withdraw` is called at most once, only when the rule above allows it.
// Exit codes: 0 sent (or left queued, said on stderr), `failed_code` (69 for sendmail, 1 for
// spoolctl) when every recipient has its outcome and one failed permanently, 75 withdrawn. Each
// permanent failure seen is on stderr whatever the end.
WaitResult conclude(SubmitMode mode, const OutcomeWait& w, OutcomeWait::Verdict v, bool timed_out,
                    int failed_code, const std::function<Withdrawal()>& withdraw);

// Writes the drop (named with a queue id of the spool, so its records can be watched before it
// exists) and waits as `mode` says. `drop` is the whole drop file; `prog` names the program on
// stderr. Returns the exit code.
int submit_and_wait(const config::Config& cfg, SubmitMode mode, std::chrono::milliseconds timeout,
                    const std::string& drop, int failed_code, const char* prog);

}  // namespace spoold::ctl
