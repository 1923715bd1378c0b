// daemon/daemon_listen.cpp — the daemon's SMTP listeners: started with the daemon (on sockets
// systemd passed, or bound here), stopped with it, reported in `spoolctl status`.
#include <unistd.h>

#include <cstdlib>

#include <fmt/format.h>

#include "config/local_mail.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/socket_activation.h"

namespace spoold::daemon {

namespace {

bool same_addresses(const config::Config& a, const config::Config& b) {
  if (a.listen.size() != b.listen.size()) return false;
  for (std::size_t i = 0; i < a.listen.size(); ++i)
    if (a.listen[i].host != b.listen[i].host || a.listen[i].port != b.listen[i].port) return false;
  return true;
}

}  // namespace

Result<void> Daemon::start_listeners() {
  std::vector<int> inherited = listen_fds(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"), ::getpid());
  ::unsetenv("LISTEN_PID");  // not passed on to anything we run
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (cfg_->listen.empty() && inherited.empty()) return {};
  commit_ = std::make_unique<GroupCommit>(&loop_, *spool_);
  // RFC 5321 §4.5.1: a listener must take mail for postmaster; say so when it would bounce.
  if (auto pm = config::resolve_recipient("postmaster@" + cfg_->hostname, config::local_rules(*cfg_));
      pm.bounces())
    log::warning("mail to postmaster bounces ({}): add an alias for it or set admin_address", pm.reason);
  std::vector<bool> used(inherited.size(), false);
  for (std::size_t i = 0; i < cfg_->listen.size(); ++i) {
    const config::Listener& l = cfg_->listen[i];
    std::optional<int> fd;
    for (std::size_t k = 0; k < inherited.size() && !fd; ++k) {
      auto bound = bound_address(inherited[k]);
      if (!used[k] && bound && serves(*bound, l.host, l.port)) {
        used[k] = true;
        fd = inherited[k];
      }
    }
    auto listener =
        std::make_unique<Listener>(&loop_, *spool_, *commit_, resolver_.get(), cfg_, i, [this] { tick(0); });
    if (auto r = listener->listen(fd); !r) {
      // The shipped config listens on [::1] too; a host without IPv6 still gets its IPv4 listener.
      bool no_ipv6 = r.error().code == UV_EADDRNOTAVAIL || r.error().code == UV_EAFNOSUPPORT;
      if (!no_ipv6 || l.host.find(':') == std::string::npos) return r;
      log::warning("{} (no IPv6 on this host?): not listening there", r.error().message);
      continue;
    }
    listener->on_drained([this] {
      if (stopping_) finish_stop();
    });
    log::info("listening on {}{} (relay from {} networks, at most {} sessions)", l.address,
              fd ? " (socket from systemd)" : "", l.relay_from.size(), l.max_sessions);
    listeners_.push_back(std::move(listener));
  }
  for (std::size_t k = 0; k < inherited.size(); ++k) {
    if (used[k]) continue;
    // Only what is provably a listening socket is closed: a LISTEN_FDS that overstates its
    // count must not close the daemon's own descriptors.
    auto bound = listening_socket(inherited[k]) ? bound_address(inherited[k]) : std::nullopt;
    if (!bound) continue;
    log::warning("socket from systemd ({}:{}) matches no listen entry: closed", bound->ip, bound->port);
    ::close(inherited[k]);
  }
  return {};
}

void Daemon::reload_listeners() {
  if (listeners_.empty() && cfg_->listen.empty()) return;
  if (listeners_.empty() || !same_addresses(*listeners_.front()->shared_config(), *cfg_)) {
    log::warning("reload: listen addresses change only on restart; the listeners keep their settings");
    return;
  }
  for (auto& l : listeners_) l->reload(cfg_);
}

bool Daemon::listeners_idle() const {
  // A publish still running needs no wait: its sessions are gone, and the loop (which the
  // daemon's destructor runs once more) does not end before the pool job does.
  for (const auto& l : listeners_)
    if (l->sessions() > 0) return false;
  return true;
}

control::Json Daemon::listener_status() const {
  using control::Json;
  Json all = Json(Json::Array{});
  for (const auto& l : listeners_) {
    const ListenerCounters& c = l->counters();
    all.push(Json()
                 .set("address", l->config().address)
                 .set("sessions", l->sessions())
                 .set("connections", c.connections)
                 .set("refused_full", c.refused_full)
                 .set("refused_client", c.refused_client)
                 .set("slow_data", c.slow_data)
                 .set("messages", c.messages)
                 .set("bytes", c.bytes)
                 .set("rejected", c.rejected)
                 .set("store_failed", c.store_failed)
                 .set("timeouts", c.timeouts)
                 .set("errors_cut", c.errors_cut)
                 .set("auth_ok", c.auth_ok)
                 .set("auth_failed", c.auth_failed)
                 .set("tls", c.tls)
                 .set("tls_failed", c.tls_failed)
                 .set("tls_limited", c.tls_limited));
  }
  return all;
}

}  // namespace spoold::daemon
