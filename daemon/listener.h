// daemon/listener.h — one `listen:` entry: a listening TCP socket (bound here or inherited from
// systemd) and its sessions (inbound_session.h).
// Rule: at most max_sessions sessions, and max_sessions_per_client from one client outside
// relay_from; a connection beyond that gets 421 at once and is closed, so a flood of clients
// costs a write each and never grows memory, and one client cannot take every session. Sessions are destroyed
// on the loop iteration after they close, never from inside their own callbacks.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "common/result.h"
#include "common/uv_handle.h"
#include "common/uv_stream.h"
#include "daemon/inbound_session.h"

namespace spoold::daemon {

class Listener {
 public:
  // `resolver` (may be null: clients are then not looked up) must outlive every session.
  Listener(uv_loop_t* loop, const spool::Spool& spool, GroupCommit& commit, dns::Resolver* resolver,
           std::shared_ptr<const config::Config> config, std::size_t index, std::function<void()> on_stored);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Listens on `inherited` (a socket from systemd, taken over) or binds the configured address.
  Result<void> listen(std::optional<int> inherited);
  // The daemon is stopping: no new connections; sessions end as InboundSession::shutdown() says.
  void shutdown();
  std::size_t sessions() const { return sessions_.size(); }
  const ListenerCounters& counters() const { return ctx_.counters; }
  const config::Listener& config() const { return *ctx_.listener; }
  const std::shared_ptr<const config::Config>& shared_config() const { return ctx_.config; }
  // A reload: new sessions use the new settings of the same entry (same index).
  void reconfigure(std::shared_ptr<const config::Config> config);
  // (Re)reads auth.users_file; on an error the accounts stay as they were.
  Result<void> load_users(const config::Listener& l);
  // (Re)reads tls.cert_file/key_file (a renewed certificate is taken on reload); on an error the
  // old context stays.
  Result<void> load_tls(const config::Listener& l);
  // A reload with the same listen addresses: its own entry's accounts, certificate and settings.
  void reload(std::shared_ptr<const config::Config> config);
  // Runs when the last session is gone (the daemon waits for it when stopping).
  void on_drained(std::function<void()> fn) { on_drained_ = std::move(fn); }

 private:
  void on_connection(int status);
  void ended(InboundSession* s);
  void reap();

  uv_loop_t* loop_;
  std::size_t index_;
  ReceiveContext ctx_;
  uv::Tcp server_;
  std::map<InboundSession*, std::unique_ptr<InboundSession>> sessions_;
  // Sessions per client_key() of clients outside relay_from, for max_sessions_per_client; a
  // session counted here is in counted_ with its key.
  std::map<std::string, int> per_client_;
  std::map<InboundSession*, std::string> counted_;
  std::vector<std::unique_ptr<InboundSession>> dead_;
  uv::Timer reaper_;
  bool stopping_ = false;
  std::function<void()> on_drained_;
};

}  // namespace spoold::daemon
