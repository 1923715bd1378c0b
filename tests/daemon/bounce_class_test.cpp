// tests/daemon/bounce_class_test.cpp — classify_bounce by table: RFC 3463 codes first, the reply
// text only where the code says little.
#include <catch2/catch.hpp>

#include "daemon/bounce_class.h"

using namespace spoold::daemon;

TEST_CASE("classify_bounce: hard/soft and a category from the enhanced code and the reply", "[outcome]") {
  struct Row {
    const char *status, *dsn, *reason, *type, *category;
  };
  const Row rows[] = {
      {"sent", "2.0.0", "250 2.0.0 Ok", "none", "none"},
      {"bounced", "5.1.1", "550 5.1.1 <a@x>: Recipient address rejected: User unknown", "hard",
       "mailbox_unknown"},
      {"bounced", "5.1.10", "550 5.1.10 null MX", "hard", "mailbox_unknown"},
      {"bounced", "5.2.1", "550 5.2.1 mailbox disabled", "hard", "mailbox_unknown"},
      {"deferred", "4.2.2", "452 4.2.2 Mailbox full", "soft", "mailbox_full"},
      {"bounced", "5.2.2", "552 5.2.2 over quota", "hard", "mailbox_full"},
      {"bounced", "5.7.1", "554 5.7.1 Relay access denied", "hard", "policy"},
      {"bounced", "5.7.1", "550 5.7.1 Message rejected as spam by Content Filtering", "hard", "policy"},
      {"bounced", "5.0.0", "550 Blocked: listed at zen.spamhaus.org", "hard", "policy"},
      {"bounced", "5.7.26", "550 5.7.26 unauthenticated email is not accepted (DMARC)", "hard", "policy"},
      {"deferred", "4.4.3", "Host or domain name not found (SERVFAIL)", "soft", "dns"},
      {"bounced", "5.1.2", "Host or domain name not found (NXDOMAIN)", "hard", "dns"},
      {"bounced", "5.4.4", "no usable MX host", "hard", "dns"},
      {"deferred", "4.7.5", "TLS handshake failed: certificate verify failed", "soft", "tls"},
      {"deferred", "4.7.4", "STARTTLS required but not offered", "soft", "tls"},
      {"bounced", "5.7.10", "530 5.7.10 Encryption needed", "hard", "tls"},
      {"deferred", "4.0.0", "421 4.0.0 Must issue a STARTTLS command first", "soft", "tls"},
      {"deferred", "4.4.2", "timeout in state dot (after the final dot: possible duplicate)", "soft",
       "timeout"},
      {"deferred", "4.4.1", "connect to 192.0.2.1:25: connection refused", "soft", "timeout"},
      {"expired", "4.4.7", "delivery time expired: 451 4.3.0 mailbox busy", "soft", "timeout"},
      {"deferred", "4.0.0", "421 service not available, connection timeout", "soft", "timeout"},
      {"deferred", "4.3.0", "451 4.3.0 mailbox busy, try later", "soft", "other"},
      {"bounced", "5.6.7", "SMTPUTF8 needed", "hard", "other"},
      {"bounced", "", "garbage reply", "hard", "other"},
      {"bounced", "5.x.y", "550 odd code", "hard", "other"},
  };
  for (const auto& r : rows) {
    INFO(r.status << " " << r.dsn << " " << r.reason);
    BounceClass c = classify_bounce(r.status, r.dsn, r.reason);
    CHECK(std::string(to_string(c.type)) == r.type);
    CHECK(std::string(to_string(c.category)) == r.category);
  }
}
