// ctl/privileges.h — whose files spoolctl and sendmail write (docs/spoolctl.md, "Permissions").
// Files in the spool must belong to the spool's owner: spoold refuses drop files of other uids and
// cannot read entries it does not own. So:
//   * run by root on a spool owned by another user, we become that user (uid, gid, groups) before
//     touching the spool;
//   * installed set-uid to the spool owner (the qmail-queue model), the privilege is put aside at
//     start, taken up only around the write of a drop file, and given up for good by every
//     command other than submitting mail.
// Rule: privilege is held for as short a time as possible and never while reading input the
// caller controls (stdin, a config file named by the caller).
#pragma once

#include <string>

#include "common/result.h"

namespace spoold::ctl {

// First thing in main(): remembers a set-uid identity and stops using it for now.
void setuid_init();
// True when the binary runs set-uid to someone other than the caller (and the caller is not root).
bool setuid_active();
// Gives up the set-uid identity for good (all commands except sendmail/send).
Result<void> drop_setuid();

// Uses the saved set-uid identity while alive (no-op when not set-uid).
class Elevated {
 public:
  Elevated();
  ~Elevated();
  Elevated(const Elevated&) = delete;
  Elevated& operator=(const Elevated&) = delete;
  bool ok() const { return ok_; }

 private:
  bool ok_ = true;
  bool changed_ = false;
};

// As root, and spool_dir exists and belongs to another uid: become that uid for good. No-op otherwise.
Result<void> become_spool_owner(const std::string& spool_dir);

}  // namespace spoold::ctl
