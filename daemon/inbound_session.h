// daemon/inbound_session.h — one SMTP client of a listener: the sans-IO server engine
// (smtp/server.h) driven over a libuv TCP stream, its timer, and the message it is receiving.
// Rule: after every call into the engine pump() drains its events, sends its output, re-arms the
// one timer from timeout()/timer_epoch() and reads only while neither the engine (waiting for the
// host), the message file (writes behind) nor the client (not reading our replies) is behind.
// The 250 for a message is given only after GroupCommit made it durable.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/uv_handle.h"
#include "common/uv_stream.h"
#include "config/config.h"
#include "daemon/client_rates.h"
#include "daemon/group_commit.h"
#include "daemon/incoming_message.h"
#include "daemon/users_file.h"
#include "dns/dns.h"
#include "smtp/server.h"
#include "smtp/tls_server.h"
#include "spool/spool.h"

namespace spoold::daemon {

// Totals of one listener, for `spoolctl status`.
struct ListenerCounters {
  std::uint64_t connections = 0;     // accepted
  std::uint64_t refused_full = 0;    // 421 at once: max_sessions reached
  std::uint64_t refused_client = 0;  // 421 at once: max_sessions_per_client reached
  std::uint64_t slow_data = 0;       // cut in DATA below min_data_rate
  std::uint64_t messages = 0;        // stored (250 given)
  std::uint64_t bytes = 0;           // of the stored messages
  std::uint64_t rejected = 0;        // recipients refused by policy
  std::uint64_t store_failed = 0;    // 451: the spool could not take a message
  std::uint64_t timeouts = 0;
  std::uint64_t errors_cut = 0;  // sessions ended for too many errors or too much input
  std::uint64_t auth_ok = 0, auth_failed = 0;
  std::uint64_t tls = 0, tls_failed = 0;  // handshakes completed / failed
  std::uint64_t tls_limited = 0;          // sessions not offered TLS: tls.new_sessions_per_minute
};

// What every session of a listener shares.
struct ReceiveContext {
  uv_loop_t* loop = nullptr;
  const spool::Spool* spool = nullptr;
  GroupCommit* commit = nullptr;
  std::shared_ptr<const config::Config> config;
  const config::Listener* listener = nullptr;  // points into config
  std::shared_ptr<const Users> users;          // auth.users_file; nullptr = no AUTH
  std::shared_ptr<SSL_CTX> tls;                // tls.cert_file/key_file; nullptr = no TLS
  dns::Resolver* resolver = nullptr;           // the daemon's, for client names; nullptr = none
  ListenerCounters counters;
  // Full TLS handshakes per client_key() outside relay_from, for tls.new_sessions_per_minute.
  ClientRates tls_rates;
  std::function<void()> on_stored;  // a message is in incoming/: the daemon may pick it up
  struct AuthQueue {                // password checks on the thread pool; shared with their completions
    int running = 0;
    std::deque<std::function<void()>> waiting;
  };
  std::shared_ptr<AuthQueue> auth = std::make_shared<AuthQueue>();
};

class InboundSession {
 public:
  // `tcp` is the accepted connection; on_end(this) runs (later, from the loop) when it is closed.
  InboundSession(ReceiveContext& ctx, uv::Tcp tcp, std::function<void(InboundSession*)> on_end);
  ~InboundSession();
  InboundSession(const InboundSession&) = delete;
  InboundSession& operator=(const InboundSession&) = delete;

  void start();          // names the client (reverse DNS), then begin()
  void refuse_full();    // 421 4.7.0 and close: the listener is full
  void refuse_client();  // 421 4.7.0 and close: this client has max_sessions_per_client already
  const std::string& peer_ip() const { return peer_ip_; }
  // The daemon is stopping: a session between transactions gets 421 and closes at once; one
  // whose message is being stored finishes that first.
  void shutdown();
  bool closing() const { return closing_; }

 private:
  void on_read(int status, std::string_view bytes);
  void pump();
  void handle(smtp::server::Event& e);
  void on_rcpt(const smtp::server::RcptRequest& r);
  void on_auth(const smtp::server::AuthRequest& a);
  void on_begin(const smtp::server::MessageBegin& b);
  void on_message_end(const smtp::server::MessageEnd& m);
  void on_published(const Result<void>& r, const std::string& id);
  void begin();  // banner (or the implicit TLS handshake), then reading
  void refuse_message(const std::string& why);
  void on_ended(const smtp::server::SessionEnded& e);
  void flush_output();
  void write_raw(std::string line);  // a reply of our own (421), through TLS when it runs
  void begin_tls();                  // after the 220 to STARTTLS went out, or at once for implicit TLS
  void on_ciphertext(std::string_view bytes);
  void tls_handshake();
  void send_network();  // what the TLS layer has for the socket
  void sync_timer();
  void sync_reading();
  void sync_host_pause();  // stops or restarts the client's clocks while our own write is behind
  void feed_plain(std::string_view bytes);  // to the engine, counting DATA bytes for min_data_rate
  void sync_data_clock();
  void close_after_output();
  void closed();
  std::string peer_text() const;  // "NAME[IP]" for logs
  void log_reject(const smtp::server::RcptRequest& r, const smtp::server::Verdict& v) const;

  ReceiveContext& ctx_;
  uv::Tcp tcp_;
  uv::Timer timer_;
  std::function<void(InboundSession*)> on_end_;
  std::unique_ptr<smtp::server::ServerEngine> engine_;
  std::string peer_ip_;
  std::string client_name_;   // verified by reverse + forward DNS, else client_name(peer_ip_)
  std::string rate_key_;      // client_key() of a client outside relay_from; "" = not rate-limited
  bool tls_limited_ = false;  // over tls.new_sessions_per_minute when it connected: no TLS offered
  int peer_port_ = 0;
  bool loopback_ = false;
  std::uint64_t armed_epoch_ = ~0ull;
  bool reading_ = false;
  bool closing_ = false;
  bool shutting_down_ = false;
  bool in_pump_ = false;
  std::uint64_t writes_pending_ = 0;
  std::shared_ptr<IncomingMessage> message_;
  std::unique_ptr<smtp::TlsServer> tls_;
  uv::Timer handshake_timer_;
  bool starttls_pending_ = false;    // StartTls came: begin TLS once the 220 is flushed
  smtp::server::Envelope envelope_;  // of the message being received
  std::uint64_t message_size_ = 0;
  // min_data_rate: when the engine entered DATA (uv_now, ms) and the bytes fed since.
  std::optional<std::uint64_t> data_since_;
  std::uint64_t data_bytes_ = 0;
  // Since when (uv_now, ms) reading is paused because the message write is behind (a slow disk):
  // that time is ours, so neither the timeout nor min_data_rate counts it against the client.
  std::optional<std::uint64_t> host_paused_since_;
  smtp::server::State timed_out_in_ = smtp::server::State::connected;  // for the log line
  // Thread-pool completions (the message written, published) check it: the session may be gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spoold::daemon
