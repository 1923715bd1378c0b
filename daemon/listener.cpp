// daemon/listener.cpp — see listener.h.
#include "daemon/listener.h"

#include <fmt/format.h>

#include "daemon/log.h"
#include "daemon/receive_policy.h"

namespace spoold::daemon {

namespace {

constexpr int kBacklog = 128;

// The error code is libuv's, so the caller can tell a missing address family from a real error.
Result<void> uv_result(int rc, std::string_view what, std::string_view address) {
  if (rc == 0) return {};
  return make_error(fmt::format("listen {}: {}: {}", address, what, uv_strerror(rc)), rc);
}

}  // namespace

Listener::Listener(uv_loop_t* loop, const spool::Spool& spool, GroupCommit& commit, dns::Resolver* resolver,
                   std::shared_ptr<const config::Config> config, std::size_t index,
                   std::function<void()> on_stored)
    : loop_(loop), index_(index), server_(loop), reaper_(loop) {
  ctx_.loop = loop;
  ctx_.resolver = resolver;
  ctx_.spool = &spool;
  ctx_.commit = &commit;
  ctx_.on_stored = std::move(on_stored);
  reconfigure(std::move(config));
}

Listener::~Listener() {
  server_.close();
  sessions_.clear();
  dead_.clear();
}

Result<void> Listener::load_users(const config::Listener& l) {
  if (l.users_file.empty()) {
    ctx_.users.reset();
    return {};
  }
  auto u = daemon::load_users(l.users_file);
  if (!u) return make_error(fmt::format("listen {}: {}", l.address, u.error().message));
  ctx_.users = std::move(*u);
  return {};
}

Result<void> Listener::load_tls(const config::Listener& l) {
  if (!l.tls.enabled()) {
    ctx_.tls.reset();
    return {};
  }
  auto c = smtp::TlsServer::make_context(l.tls.cert_file, l.tls.key_file);
  if (!c) return make_error(fmt::format("listen {}: tls: {}", l.address, c.error().message));
  ctx_.tls = std::move(*c);  // sessions already running keep the context they started with
  return {};
}

void Listener::reconfigure(std::shared_ptr<const config::Config> config) {
  // Sessions read the configuration through ctx_ only (their engine copied its options at
  // start), so running ones see the new hostname and policy from here on.
  ctx_.config = std::move(config);
  ctx_.listener = &ctx_.config->listen[index_];  // the daemon reloads only with the same entries
}

void Listener::reload(std::shared_ptr<const config::Config> config) {
  const config::Listener& l = config->listen[index_];
  if (auto r = load_users(l); !r)
    log::warning("reload: {}; the accounts stay as they were", r.error().message);
  if (auto r = load_tls(l); !r)
    log::warning("reload: {}; the certificate stays as it was", r.error().message);
  reconfigure(std::move(config));
}

Result<void> Listener::listen(std::optional<int> inherited) {
  const config::Listener& l = *ctx_.listener;
  if (auto r = load_users(l); !r) return r;
  if (auto r = load_tls(l); !r) return r;
  if (inherited) {
    if (auto r = uv_result(server_.open(*inherited), "inherited socket", l.address); !r) return r;
  } else {
    sockaddr_storage ss{};
    const std::string host = l.host.empty() ? "::" : l.host;
    int rc = host.find(':') != std::string::npos
                 ? uv_ip6_addr(host.c_str(), l.port, reinterpret_cast<sockaddr_in6*>(&ss))
                 : uv_ip4_addr(host.c_str(), l.port, reinterpret_cast<sockaddr_in*>(&ss));
    if (auto r = uv_result(rc, "address", l.address); !r) return r;
    // "[::]:25" is IPv6 only (so 0.0.0.0:25 may be listed beside it); a port alone is both.
    unsigned flags = !l.host.empty() && host.find(':') != std::string::npos ? UV_TCP_IPV6ONLY : 0;
    rc = server_.bind(reinterpret_cast<const sockaddr*>(&ss), flags);
    if (rc == UV_EAFNOSUPPORT && l.host.empty()) {  // no IPv6 on this host: every IPv4 address
      rc = uv_ip4_addr("0.0.0.0", l.port, reinterpret_cast<sockaddr_in*>(&ss));
      if (rc == 0) rc = server_.bind(reinterpret_cast<const sockaddr*>(&ss));
    }
    if (auto r = uv_result(rc, "bind", l.address); !r) return r;
  }
  int rc = server_.listen(kBacklog, [this](int status) { on_connection(status); });
  return uv_result(rc, "listen", l.address);
}

void Listener::on_connection(int status) {
  if (status < 0) {
    log::warning("listen {}: accept: {}", ctx_.listener->address, uv_strerror(status));
    return;
  }
  uv::Tcp client(loop_);
  if (server_.accept(client) != 0) return;  // the client closes here
  auto s = std::make_unique<InboundSession>(ctx_, std::move(client), [this](InboundSession* p) { ended(p); });
  InboundSession* raw = s.get();
  sessions_.emplace(raw, std::move(s));
  if (stopping_) return raw->shutdown();
  if (sessions_.size() > static_cast<std::size_t>(ctx_.listener->max_sessions)) return raw->refuse_full();
  if (!ctx_.listener->relay_allowed(raw->peer_ip())) {
    std::string key = client_key(raw->peer_ip());
    int& n = per_client_[key];
    if (n >= ctx_.listener->max_sessions_per_client) {
      if (n == 0) per_client_.erase(key);
      return raw->refuse_client();
    }
    ++n;
    counted_.emplace(raw, std::move(key));
  }
  raw->start();
}

void Listener::shutdown() {
  stopping_ = true;
  server_.close();
  std::vector<InboundSession*> all;
  for (auto& [p, s] : sessions_) all.push_back(p);
  for (auto* p : all) p->shutdown();  // may end sessions (ended() only moves them to dead_)
}

void Listener::ended(InboundSession* s) {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return;
  dead_.push_back(std::move(it->second));
  sessions_.erase(it);
  if (auto c = counted_.find(s); c != counted_.end()) {
    if (auto p = per_client_.find(c->second); p != per_client_.end() && --p->second <= 0)
      per_client_.erase(p);
    counted_.erase(c);
  }
  reaper_.start(0, 0, [this] { reap(); });
}

void Listener::reap() {
  dead_.clear();
  if (sessions_.empty() && on_drained_) on_drained_();
}

}  // namespace spoold::daemon
