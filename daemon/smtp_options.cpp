// daemon/smtp_options.cpp — see smtp_options.h.
#include "daemon/smtp_options.h"

namespace spoold::daemon {

smtp::Timeouts to_smtp(const config::Timeouts& t) {
  smtp::Timeouts s;
  s.connect = t.connect;
  s.greeting = t.greeting;
  s.ehlo = t.ehlo;
  s.starttls = t.ehlo;
  s.auth = t.ehlo;
  s.mail = t.mail;
  s.rcpt = t.rcpt;
  s.data = t.data;
  s.block = t.block;
  s.dot = t.dot;
  s.rset = t.mail;
  s.quit = t.mail;
  return s;
}

smtp::SessionOptions session_options(const config::Config& cfg, const HopKey& key, const dns::NextHop& hop,
                                     const dns::Address& addr) {
  smtp::SessionOptions o;
  o.ip = addr.ip;
  o.port = hop.port;
  o.bind_address = key.policy.bind_address.value_or(cfg.delivery.bind_address).for_peer(addr.ip);
  o.engine.ehlo_name = cfg.hostname;
  o.engine.tls = key.policy.tls.value_or(cfg.delivery.tls);
  o.engine.timeouts = to_smtp(cfg.delivery.timeouts);
  o.engine.envelope_limit = static_cast<size_t>(cfg.delivery.envelope_limit);
  o.tls_host = hop.host;
  o.ca_file = cfg.delivery.ca_file;
  if (key.kind == config::RouteKind::relay) {
    const auto* g = cfg.relay(key.name);
    size_t i = static_cast<size_t>(hop.preference);
    if (g && i < g->servers.size()) {
      const auto& s = g->servers[i];
      switch (s.tls) {
        case config::RelayTls::none:
          o.engine.tls = smtp::TlsPolicy::none;
          break;
        case config::RelayTls::starttls:
          o.engine.tls = s.verify ? smtp::TlsPolicy::verify : smtp::TlsPolicy::required;
          break;
        case config::RelayTls::smtps:
          o.engine.implicit_tls = true;
          o.engine.tls = s.verify ? smtp::TlsPolicy::verify : smtp::TlsPolicy::required;
          break;
      }
      if (s.auth) {
        o.engine.auth.mechanism = s.auth->mechanism;
        o.engine.auth.user = s.auth->user;
        o.engine.auth.secret = s.auth->secret;
        o.engine.auth.allow_plaintext = s.tls == config::RelayTls::none;
      }
    }
  }
  return o;
}

}  // namespace spoold::daemon
