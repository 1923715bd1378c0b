// daemon/smtp_options.h — the configuration of one SMTP session, from the daemon's config: the one
// place config/ types become smtp/ types (timeouts, a relay server's `tls`), tested by table. The
// TLS policy and the AUTH mechanism are one type in both (common/delivery_policy.h): passed as is.
// Rule: a relay server's own `tls`, `verify` and `auth` replace delivery.tls for its sessions; AUTH
// may go in plaintext only to a server configured with `tls: none`.
#pragma once

#include "config/config.h"
#include "daemon/router.h"
#include "dns/dns.h"
#include "smtp/session.h"

namespace spoold::daemon {

smtp::Timeouts to_smtp(const config::Timeouts& t);

// Everything but the transcript path (the caller names the file).
smtp::SessionOptions session_options(const config::Config& cfg, const HopKey& key, const dns::NextHop& hop,
                                     const dns::Address& addr);

}  // namespace spoold::daemon
