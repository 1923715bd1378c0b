// daemon/local_mail.h — mail to this host's own names (a bare name, name@hostname,
// name@localhost) before it is routed: aliases and admin_address say where it goes
// (config/local_mail.h); what has nowhere to go bounces at once, without a connection.
// Rule: pure and idempotent — an entry expanded once expands to itself again (an expansion holds
// only non-local mailboxes), so a crash between expanding and writing the entry changes nothing.
#pragma once

#include <string>
#include <vector>

#include "config/local_mail.h"
#include "daemon/delivery.h"
#include "spool/entry.h"

namespace spoold::daemon {

// Replaces each pending local recipient of `entry` by its expansion (duplicates of recipients
// already in the entry dropped); returns the outcomes of the local recipients that bounce
// (5.1.1 no local delivery, 5.4.6 alias loop), indexed into the changed entry.
std::vector<RecipientResult> expand_local(spool::Entry& entry, const config::LocalRules& rules);

}  // namespace spoold::daemon
