// daemon/delivery.cpp — see delivery.h. A Destination is one next hop (an MX domain, a static host
// list or a relay group); its Conns are pooled SMTP sessions. Connection-level failures (no reply,
// 421) send the part on to the next address; other replies are final for this attempt.
#include "daemon/delivery.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <optional>

#include "daemon/classify.h"
#include "daemon/log.h"
#include "daemon/relay_quota.h"
#include "daemon/smtp_options.h"
#include "daemon/token_bucket.h"
#include "daemon/uv_handle.h"
#include "spool/crashpoint.h"

namespace spoold::daemon {

using Clock = std::chrono::steady_clock;
namespace {

constexpr auto kBadAddressMemory = std::chrono::seconds(60);  // skip a refusing host at most this long
constexpr auto kHopsLifetime = std::chrono::seconds(60);      // re-resolve a destination after this
constexpr auto kDestinationMemory = std::chrono::minutes(5);  // forget an unused destination after this

}  // namespace

// A pooled connection: connecting → idle ⇄ busy → closing. Every change goes through
// Destination::set_state(), which keeps the engine's count of idle connections and traces it.
struct DeliveryEngine::Conn {
  enum class St { connecting, idle, busy, closing };
  static const char* to_string(St s) {
    switch (s) {
      case St::connecting:
        return "connecting";
      case St::idle:
        return "idle";
      case St::busy:
        return "busy";
      case St::closing:
        return "closing";
    }
    return "?";
  }
  DeliveryEngine::Destination* dest = nullptr;
  std::unique_ptr<smtp::Session> session;
  std::string host, ip;
  int port = 25;
  size_t server = 0;  // relay server index (relay destinations only)
  St st = St::connecting;
  Clock::time_point opened = Clock::now();
  int messages = 0;
  bool retire = false;
  bool holds_slot = true;  // counted against delivery.max_sessions (until it starts closing)
  bool plaintext = false;  // the opportunistic retry after a failed TLS handshake: no STARTTLS
  std::string cut;         // why we cut it ourselves ("" = we did not): not the server's failure
  std::uint64_t serial = 0;
  // Connections to one server may carry mail for several destinations (Postfix's connection cache
  // does the same): "ip|port", plus the MX name when the certificate is verified against it.
  // Empty = not shared (relay sessions carry their own TLS and AUTH settings).
  std::string share_key;
  std::optional<Part> current;
  std::optional<Part> next;  // submitted behind current's final dot (RFC 2920 §3.1)
  // Which submission a session callback answers: the callback carries the id it was given, so
  // a result can never be booked to the other part.
  std::uint64_t current_id = 0, next_id = 0, submissions = 0;
  size_t retry_slot = 0;  // where in the queue the next retry of this session's parts goes
  std::unique_ptr<Timer> idle_timer;
  std::unique_ptr<Timer> life_timer;  // max_connection_time, enforced mid-transaction too
  std::string relay() const { return fmt::format("{}[{}]:{}", host, ip, port); }
};

class DeliveryEngine::Destination {
 public:
  // A destination keeps the configuration it was made under (its key's route_index and relay name
  // point into it) for as long as it lives; a reload retires it and new mail goes to a new one.
  Destination(DeliveryEngine& eng, HopKey key)
      : eng_(eng),
        cfg_(eng.config_),
        key_(std::move(key)),
        bucket_(cfg_->delivery.rate_limit),
        rate_timer_(eng.loop_) {
    if (key_.kind == config::RouteKind::relay)
      if (const auto* g = cfg_->relay(key_.name)) quota_ = RelayQuota(*g);
  }

  void enqueue(Part p) {
    last_active_ = Clock::now();
    queue_.push_back(std::move(p));
    pump();
  }

  size_t queued() const { return queue_.size(); }
  size_t sessions() const { return conns_.size(); }
  const HopKey& key() const { return key_; }
  bool waiting() const { return !queue_.empty(); }
  bool blocked() const { return blocked_ && !queue_.empty(); }
  bool empty() const { return queue_.empty() && conns_.empty() && !resolving_; }

  void pump() {
    if (eng_.stopping_) {
      fail_queue(smtp::Outcome{smtp::Status::temporary, 0, "4.3.2", "mail system is shutting down"}, false);
      quit_idle();
      return;
    }
    if (queue_.empty()) return;
    if (!hops_ok_ || Clock::now() > hops_expire_) {
      resolve();
      return;
    }
    for (auto& c : conns_)
      if (c->st == Conn::St::idle && !c->retire && !queue_.empty()) assign(*c);
    open_connections();
  }

  void quit_idle() {
    for (auto& c : conns_)
      if (c->st == Conn::St::idle) begin_quit(*c);
  }

  // Every state change of a connection goes through here, so the engine's count of idle
  // connections (what reclaim_idle() can free) stays exact.
  void set_state(Conn& c, Conn::St st) {
    if (c.st == st) return;
    if (log::enabled(config::LogLevel::debug))
      log::debug("{}: connection #{} {} -> {}", c.relay(), c.serial, Conn::to_string(c.st),
                 Conn::to_string(st));
    if (c.st == Conn::St::idle && eng_.idle_conns_ > 0) --eng_.idle_conns_;
    if (st == Conn::St::idle) ++eng_.idle_conns_;
    c.st = st;
  }

  // In the engine's FIFO of destinations waiting for a global session slot (at most once), and
  // which wait that is (entries of earlier waits in the engine's per-server index are stale).
  bool in_slot_queue = false;
  std::uint64_t slot_wait = 0;
  Clock::time_point last_active() const { return last_active_; }

  void withdraw(std::uint64_t token) {
    std::vector<Part> gone;
    for (auto it = queue_.begin(); it != queue_.end();)
      if (it->token == token) {
        gone.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    for (Part& p : gone) {
      std::vector<RecipientResult> rs;
      for (size_t i : p.indices)
        rs.push_back({i, smtp::Outcome{smtp::Status::temporary, 0, "4.3.0", "lock lost"}, "none", false});
      eng_.done_(p.token, std::move(rs));
    }
    // Cut from each connection's own timer, not here: an abort runs callbacks that may reach the
    // caller (and a part behind a dot is cut only once it is the running one).
    for (auto& c : conns_)
      if (carries_withdrawn(*c)) arm_life(*c, 0);
  }

  bool carries_withdrawn(const Conn& c) const {
    return (c.current && eng_.withdrawn(c.current->token)) || (c.next && eng_.withdrawn(c.next->token));
  }

  // The stop grace period is over: a busy session is cut now (its transaction reports every open
  // recipient temporary, flagged as a possible duplicate after the final dot); an idle one QUITs.
  void abort_all() {
    std::vector<Conn*> all;
    for (auto& c : conns_) all.push_back(c.get());
    for (Conn* c : all) {  // each may close (and leave conns_) synchronously
      if (!c->session) continue;
      if (c->st == Conn::St::idle || c->st == Conn::St::closing)
        c->session->quit();
      else
        c->session->abort("mail system is shutting down: stop grace period over");
    }
  }

 private:
  // A hostile domain must not point delivery at this host's own services (or link-local and
  // multicast addresses): such addresses are dropped from an MX answer unless a route names the
  // domain. Returns the dropped addresses for the log, "" when none.
  static std::string drop_restricted(dns::NextHops& h) {
    std::string dropped;
    for (auto& hop : h.hops)
      std::erase_if(hop.addresses, [&](const dns::Address& a) {
        if (!dns::restricted_address(a.ip)) return false;
        dropped += (dropped.empty() ? "" : ", ") + hop.host + "[" + a.ip + "]";
        return true;
      });
    std::erase_if(h.hops, [](const dns::NextHop& hop) { return hop.addresses.empty(); });
    return dropped;
  }

  void resolve() {
    if (resolving_) return;
    resolving_ = true;
    auto cb = [this](dns::NextHops h) {
      resolving_ = false;
      std::string refused;
      if (h.ok() && key_.kind == config::RouteKind::mx && !key_.local_ok) refused = drop_restricted(h);
      if (h.ok() && h.hops.empty()) {
        hops_ok_ = false;
        fail_queue(smtp::Outcome{smtp::Status::permanent, 0, "5.4.4",
                                 "MX points at restricted addresses only (" + refused +
                                     "): refused; a route that names the domain allows it"});
        eng_.maybe_drained();
        return;
      }
      if (!h.ok()) {
        hops_ok_ = false;
        auto status = h.status == dns::Status::permanent ? smtp::Status::permanent : smtp::Status::temporary;
        std::string code = status == smtp::Status::permanent ? "5.1.2" : "4.4.3";
        fail_queue(smtp::Outcome{status, 0, code, h.reason});
        eng_.maybe_drained();
        return;
      }
      hops_ = std::move(h);
      hops_ok_ = true;
      hops_expire_ = Clock::now() + kHopsLifetime;
      pump();
    };
    const auto& cfg = *cfg_;
    if (key_.kind == config::RouteKind::mx) {
      eng_.resolver_.resolve_next_hops(key_.name, cb);
      return;
    }
    std::vector<dns::HostPort> hosts;
    if (key_.kind == config::RouteKind::hosts) {
      const auto& r = cfg.routes.at(key_.route_index);
      for (const auto& h : r.hosts) {
        auto hp = dns::parse_host_port(h, static_cast<uint16_t>(cfg.delivery.port));
        if (hp.ok()) hosts.push_back(*hp);
      }
    } else if (const auto* g = cfg.relay(key_.name)) {
      for (const auto& s : g->servers) hosts.push_back(dns::HostPort{s.host, static_cast<uint16_t>(s.port)});
    }
    eng_.resolver_.resolve_hosts(hosts, cb);
  }

  bool address_skipped(const std::string& key) const {
    return eng_.health_.skipped_since(key, Clock::now()).has_value();
  }

  int connect_attempts() const { return cfg_->delivery.connect_attempts; }

  // Some queued part may still go to this server in its current attempt.
  bool wanted_at(const std::string& key) const {
    return std::any_of(queue_.begin(), queue_.end(),
                       [&](const Part& p) { return !p.attempt.exhausted(key, connect_attempts()); });
  }

  // An open (or opening) connection to this server could still carry mail.
  bool live_conn_to(const std::string& key) const {
    return std::any_of(conns_.begin(), conns_.end(), [&](const auto& c) {
      return c->st != Conn::St::closing && !c->retire && c->session && c->session->alive() &&
             server_key(c->ip, c->port) == key;
    });
  }

  bool ready_conn_to(const std::string& key, const Conn* except) const {
    return std::any_of(conns_.begin(), conns_.end(), [&](const auto& c) {
      return c.get() != except && (c->st == Conn::St::idle || c->st == Conn::St::busy) &&
             server_key(c->ip, c->port) == key;
    });
  }

  // The part can still be delivered in this attempt: some server it has not used up is open to
  // it now or can be connected to.
  bool can_go(const Part& p) {
    for (const auto& h : hops_.hops) {
      bool usable = !relay_server(h) || server_usable(static_cast<size_t>(h.preference));
      for (const auto& a : h.addresses) {
        std::string key = server_key(a.ip, h.port);
        if (p.attempt.exhausted(key, connect_attempts())) continue;
        if (live_conn_to(key) || (usable && !address_skipped(key))) return true;
      }
    }
    return false;
  }

  bool relay_server(const dns::NextHop&) const { return key_.kind == config::RouteKind::relay; }

  bool server_usable(size_t i) { return quota_.usable(i, Clock::now()); }

  struct Pick {
    const dns::NextHop* hop = nullptr;
    const dns::Address* addr = nullptr;
  };

  // The next address to open a connection to: hops in order (a relay group rotates for
  // round_robin), addresses in order, skipping recently failed ones and retired relay servers.
  std::optional<Pick> pick() {
    std::vector<const dns::NextHop*> order;
    for (const auto& h : hops_.hops) order.push_back(&h);
    bool relay = key_.kind == config::RouteKind::relay;
    if (relay && quota_.round_robin() && !order.empty()) {
      // Start at the first hop whose server index is >= rr_next_.
      std::stable_partition(order.begin(), order.end(), [&](const dns::NextHop* h) {
        return static_cast<size_t>(h->preference) >= rr_next_;
      });
    }
    for (const auto* h : order) {
      if (relay && !server_usable(static_cast<size_t>(h->preference))) continue;
      for (const auto& a : h->addresses) {
        std::string key = server_key(a.ip, h->port);
        if (!address_skipped(key) && wanted_at(key)) return Pick{h, &a};
      }
    }
    return std::nullopt;
  }

  // Parts that no server can take in this attempt any more are reported now: deferred (or
  // bounced) with what their servers said when some server was tried, else "not tried" and
  // postponed in their tier until the skipped servers are due again.
  void settle_stuck() {
    std::vector<Part> stuck;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (can_go(*it)) {
        ++it;
        continue;
      }
      stuck.push_back(std::move(*it));
      it = queue_.erase(it);
    }
    for (Part& p : stuck) report_stuck(std::move(p));  // after the walk: a report may queue more
  }

  // The attempt's verdict, but never permanent while some server of the next hop was only skipped
  // (it failed temporarily for other mail and may take this message later).
  smtp::Outcome final_verdict(const Part& p) const {
    smtp::Outcome v = p.attempt.verdict();
    if (v.status != smtp::Status::permanent) return v;
    for (const auto& h : hops_.hops)
      for (const auto& a : h.addresses)
        if (!p.attempt.exhausted(server_key(a.ip, h.port), connect_attempts())) {
          v.status = smtp::Status::temporary;
          if (!v.enhanced.empty()) v.enhanced[0] = '4';
          return v;
        }
    return v;
  }

  void report_stuck(Part p) {
    std::vector<RecipientResult> rs;
    if (p.attempt.any_failure()) {
      smtp::Outcome why = final_verdict(p);
      for (size_t i : p.indices) rs.push_back({i, why, p.attempt.last_relay()});
    } else if (auto skipped = skipped_reason()) {
      for (size_t i : p.indices) {
        RecipientResult r{i, smtp::Outcome{smtp::Status::temporary, 0, "4.4.1", skipped->first}, "none",
                          false};
        r.postpone_s = skipped->second;
        rs.push_back(std::move(r));
      }
    } else {
      for (size_t i : p.indices)
        rs.push_back(
            {i, smtp::Outcome{smtp::Status::temporary, 0, "4.4.1", "no usable next-hop address"}, "none"});
    }
    eng_.done_(p.token, std::move(rs));
  }

  // "not tried: 127.0.0.6:25 failed 12 s ago" for the servers skipped now, and the seconds until
  // the first of them is tried again; nullopt when none is skipped.
  std::optional<std::pair<std::string, std::int64_t>> skipped_reason() const {
    auto now = Clock::now();
    std::string text;
    std::optional<Clock::time_point> first_due;
    int named = 0;
    for (const auto& h : hops_.hops)
      for (const auto& a : h.addresses) {
        std::string key = server_key(a.ip, h.port);
        auto since = eng_.health_.skipped_since(key, now);
        if (!since) continue;
        auto until = eng_.health_.skipped_until(key);
        if (!first_due || until < *first_due) first_due = until;
        if (named++ < 3)
          text +=
              fmt::format("{}{} failed {} s ago", text.empty() ? "not tried: " : ", ", server_display(key),
                          std::chrono::duration_cast<std::chrono::seconds>(now - *since).count());
      }
    if (!first_due) return std::nullopt;
    auto wait = std::chrono::duration_cast<std::chrono::seconds>(*first_due - now).count() + 1;
    return std::make_pair(text, std::max<std::int64_t>(1, wait));
  }

  void open_connections() {
    const auto& d = cfg_->delivery;
    size_t connecting = 0;
    for (auto& c : conns_)
      if (c->st == Conn::St::connecting) ++connecting;
    while (queue_.size() > connecting &&
           conns_.size() < std::min(concurrency_, static_cast<size_t>(d.max_sessions_per_destination))) {
      // At the global limit, an idle pooled connection elsewhere gives up its slot (Postfix keeps
      // idle connections only while nobody else needs the session): without this, 20 idle
      // connections would hold back every other destination until their idle_timeout.
      if (eng_.slots_ >= static_cast<size_t>(d.max_sessions) && !eng_.reclaim_idle(this)) {
        blocked_ = true;  // an idle connection elsewhere will make room (idle())
        eng_.wait_for_slot(this);
        break;
      }
      blocked_ = false;
      auto p = pick();
      if (!p) {
        settle_stuck();
        if (queue_.empty() && conns_.empty()) hops_ok_ = false;  // look the next hop up again next time
        return;
      }
      open(*p->hop, *p->addr);
      ++connecting;
    }
  }

  smtp::SessionOptions session_options(const dns::NextHop& hop, const dns::Address& addr) {
    auto o = daemon::session_options(*cfg_, key_, hop, addr);
    if (!cfg_->delivery.transcript_dir.empty())
      o.transcript_path =
          fmt::format("{}/{}-{}-{}.log", cfg_->delivery.transcript_dir, hop.host, getpid(), ++serial_);
    return o;
  }

  // The same server again, without STARTTLS (its hop and address are looked up again: the hops
  // may have been re-resolved meanwhile; a server no longer among them is not contacted).
  void open_plain(const std::string& ip, int port) {
    for (const auto& h : hops_.hops)
      for (const auto& a : h.addresses)
        if (a.ip == ip && h.port == port) return open(h, a, true);
  }

  void open(const dns::NextHop& hop, const dns::Address& addr, bool plaintext = false) {
    auto c = std::make_unique<Conn>();
    Conn* conn = c.get();
    conn->plaintext = plaintext;
    conn->serial = ++eng_.conn_serial_;
    conn->dest = this;
    conn->host = hop.host;
    conn->ip = addr.ip;
    conn->port = hop.port;
    conn->server = static_cast<size_t>(hop.preference);
    conn->share_key = share_key(hop, addr);
    if (key_.kind == config::RouteKind::relay && quota_.round_robin())
      rr_next_ = conn->server + 1 >= quota_.size() ? 0 : conn->server + 1;
    conn->idle_timer = std::make_unique<Timer>(eng_.loop_);
    conn->life_timer = std::make_unique<Timer>(eng_.loop_);
    arm_life(*conn, static_cast<uint64_t>(cfg_->delivery.max_connection_time.count()));
    smtp::SessionCallbacks cbs;
    cbs.on_ready = [this, conn] {
      set_state(*conn, Conn::St::idle);
      eng_.health_.succeeded(server_key(conn->ip, conn->port));
      pump();
      if (conn->st == Conn::St::idle) idle_or_hand_over(*conn);
    };
    // The connection may change destinations while idle (adopt()): dispatch to its current owner.
    cbs.on_closed = [conn](const smtp::Outcome& why) { conn->dest->on_closed(conn, why); };
    cbs.on_next_welcome = [conn] { conn->dest->offer_next(*conn); };
    cbs.on_warning = [conn](std::string_view w) { log::warning("{}: {}", conn->relay(), w); };
    if (spool::crashpoints_enabled())  // test builds: crash between any two SMTP states ("smtp:dot -> ready")
      cbs.on_trace = [](std::string_view t) { spool::crashpoint("smtp:" + std::string(t)); };
    conns_.push_back(std::move(c));
    ++eng_.sessions_;
    ++eng_.slots_;
    auto options = session_options(hop, addr);
    if (plaintext) options.engine.tls = smtp::TlsPolicy::none;
    conn->session = std::make_unique<smtp::Session>(eng_.loop_, std::move(options), std::move(cbs));
  }

  std::string share_key(const dns::NextHop& hop, const dns::Address& addr) const {
    if (key_.kind == config::RouteKind::relay) return "";
    std::string k = server_key(addr.ip, hop.port);
    if (cfg_->delivery.tls == config::TlsPolicy::verify) k += "|" + hop.host;
    return k;
  }

  // A connection with nothing to do here goes, if it can, to a destination that waits for a
  // session slot and delivers to the same server (fan-out to many domains behind a few MX hosts:
  // no new connection per domain). Only from session callbacks, never while pump() walks conns_.
  void idle_or_hand_over(Conn& c) {
    if (!c.share_key.empty() && !c.retire && eng_.someone_blocked(this))
      if (Destination* taker = eng_.taker_for(c.share_key, this)) {
        auto it = std::find_if(conns_.begin(), conns_.end(), [&](const auto& p) { return p.get() == &c; });
        std::unique_ptr<Conn> moving = std::move(*it);
        conns_.erase(it);
        c.idle_timer->stop();
        taker->adopt(std::move(moving));
        return;
      }
    idle(c);
  }

 public:
  // True when this destination waits for a slot and has a part for the server `share`.
  bool wants(const std::string& share) const {
    if (!blocked() || !hops_ok_) return false;
    for (const auto& h : hops_.hops)
      for (const auto& a : h.addresses)
        if (share_key(h, a) == share && !address_skipped(server_key(a.ip, h.port)))
          return wanted_at(server_key(a.ip, h.port));
    return false;
  }

  // The server keys this destination can deliver to (for the engine's index of waiting ones).
  std::vector<std::string> share_keys() const {
    std::vector<std::string> out;
    if (!hops_ok_ || key_.kind == config::RouteKind::relay) return out;
    for (const auto& h : hops_.hops)
      for (const auto& a : h.addresses) out.push_back(share_key(h, a));
    return out;
  }

  // Takes over an idle connection from another destination and uses it at once.
  void adopt(std::unique_ptr<Conn> c) {
    Conn* conn = c.get();
    conn->dest = this;
    for (const auto& h : hops_.hops)  // log it under this destination's name for the server
      for (const auto& a : h.addresses)
        if (share_key(h, a) == conn->share_key) conn->host = h.host;
    conns_.push_back(std::move(c));
    log::debug("{}: connection handed over to {}", conn->relay(), key_.str());
    pump();
    if (conn->st == Conn::St::idle) idle(*conn);
  }

 private:
  // A connection with nothing to do: kept for idle_timeout, unless another destination is waiting
  // for a session slot — then it makes room at once.
  void idle(Conn& c) {
    if (eng_.someone_blocked(this)) {
      begin_quit(c);
      eng_.pump_waiting();
      return;
    }
    arm_idle(c);
  }

  // A connection lives at most max_connection_time (Mail::Spool's DoS bug: a tarpit that answers
  // every command just inside its timeout would otherwise hold a session for hours): then an idle
  // one quits, a connecting or busy one is cut and its parts go back to the queue — except after
  // the final dot, where the server's verdict is awaited (bounded by the dot timeout) first.
  void arm_life(Conn& c, uint64_t ms) {
    Conn* conn = &c;
    // Dispatched to the connection's current owner: an idle one may have been handed over.
    c.life_timer->start(ms, 0, [conn] { conn->dest->on_life_over(*conn); });
  }

  // Also the cut of a connection carrying a message whose lock was lost (withdraw()).
  void on_life_over(Conn& c) {
    if (c.st == Conn::St::closing || !c.session) return;
    auto life = cfg_->delivery.max_connection_time;
    auto age = Clock::now() - c.opened;
    bool lost = carries_withdrawn(c);
    if (!lost && age < life)
      return arm_life(c, static_cast<uint64_t>(
                             std::chrono::duration_cast<std::chrono::milliseconds>(life - age).count()) +
                             1);
    c.retire = true;
    if (c.st == Conn::St::idle) return begin_quit(c);
    if (c.session->after_final_dot()) return arm_life(c, 50);  // look again when the reply came
    c.cut = lost ? "lock lost: another process may own the message" : "max_connection_time reached";
    log::info("{}: {} in a {} session: cut before its final dot", c.relay(), c.cut,
              c.st == Conn::St::busy ? "busy" : "connecting");
    c.session->abort(c.cut);  // may destroy c
  }

  void arm_idle(Conn& c) {
    auto ms = static_cast<uint64_t>(cfg_->delivery.idle_timeout.count());
    Conn* conn = &c;
    c.idle_timer->start(ms, 0, [this, conn] {
      if (conn->st == Conn::St::idle) begin_quit(*conn);
    });
  }

  void begin_quit(Conn& c) {
    set_state(c, Conn::St::closing);
    c.idle_timer->stop();
    release_slot(c);  // a closing connection no longer holds back new ones
    c.session->quit();
  }

  void release_slot(Conn& c) {
    if (!c.holds_slot) return;
    c.holds_slot = false;
    if (eng_.slots_ > 0) --eng_.slots_;
  }

 public:
  // Quits one idle connection of this destination; false when it has none.
  bool quit_one_idle() {
    for (auto& c : conns_)
      if (c->st == Conn::St::idle) {
        begin_quit(*c);
        return true;
      }
    return false;
  }

 private:
  // An idle connection takes the first queued part that has not already failed at its address.
  void assign(Conn& c) {
    if (Clock::now() - c.opened >= cfg_->delivery.max_connection_time) {
      begin_quit(c);  // too old to start another transaction on: retire, a fresh one follows
      return;
    }
    auto part = take_part(c, false);
    if (!part) return;
    c.idle_timer->stop();
    set_state(c, Conn::St::busy);
    send_part(c, std::move(*part));
  }

  // The session just sent a final dot and can carry another message right behind it, so the
  // connection does not sit idle for the round trip to the dot's reply (W4: each of the sessions
  // waited for the 250 and then for the 354). Parts that connecting sessions are about to take
  // are left to them.
  void offer_next(Conn& c) {
    if (eng_.stopping_ || c.st != Conn::St::busy || !c.current || c.next || c.retire || !room_behind_dot(c) ||
        !c.session->can_submit_next())
      return;
    size_t connecting = static_cast<size_t>(std::count_if(
        conns_.begin(), conns_.end(), [](const auto& k) { return k->st == Conn::St::connecting; }));
    if (queue_.size() <= connecting) return;
    auto part = take_part(c, true);
    if (part) send_part(c, std::move(*part));
  }

  // A message behind the dot counts as started now: it must fit the limits that the running one
  // still leaves room for (max_messages_per_connection, max_connection_time, the relay server's
  // message counts, which grow when a transaction ends).
  bool room_behind_dot(const Conn& c) const {
    const auto& d = cfg_->delivery;
    if (d.max_messages_per_connection > 0 && c.messages + 2 > d.max_messages_per_connection) return false;
    if (Clock::now() - c.opened >= d.max_connection_time) return false;
    return key_.kind != config::RouteKind::relay || quota_.room_behind_dot(c.server);
  }

  // The first queued part not yet failed at c's address, if the rate limit allows one now. Behind
  // a dot only parts whose body facts are known from pickup (the session cannot scan there).
  std::optional<Part> take_part(const Conn& c, bool behind_dot) {
    std::string key = server_key(c.ip, c.port);
    auto it = std::find_if(queue_.begin(), queue_.end(), [&](const Part& p) {
      return (!behind_dot || p.longest_line > 0) && !p.attempt.exhausted(key, connect_attempts());
    });
    if (it == queue_.end() || !take_token()) return std::nullopt;
    Part part = std::move(*it);
    queue_.erase(it);
    return part;
  }

  // Submits the part on c: as its transaction, or behind the running one's dot.
  void send_part(Conn& c, Part part) {
    bool behind_dot = c.current.has_value();
    smtp::Transaction t;
    t.sender = part.sender;
    t.recipients = part.recipients;
    t.size = part.size;
    t.missing_date = part.missing_date;
    t.missing_message_id = part.missing_message_id;
    if (part.longest_line > 0)  // known from pickup: no second read of the body before MAIL
      t.body_info = smtp::BodyInfo{part.eight_bit, static_cast<size_t>(part.longest_line), 0};
    smtp::BodySource body;
    int fd = ::open(part.body_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      // The body vanished (deleted by an operator?): nothing to send; report temporary.
      if (!behind_dot) set_state(c, Conn::St::idle);
      std::vector<RecipientResult> rs;
      for (size_t i = 0; i < part.indices.size(); ++i)
        rs.push_back({part.indices[i],
                      smtp::Outcome{smtp::Status::temporary, 0, "4.3.0", "cannot open the stored message"},
                      "none"});
      eng_.done_(part.token, std::move(rs));
      if (!behind_dot) idle(c);
      return;
    }
    body.fd = fd;
    body.offset = part.body_offset;
    std::uint64_t id = ++c.submissions;
    if (behind_dot) {
      c.next = std::move(part);
      c.next_id = id;
    } else {
      c.current = std::move(part);
      c.current_id = id;
      c.retry_slot = 0;
    }
    Conn* conn = &c;
    c.session->submit(std::move(t), std::move(body),
                      [this, conn, id](const smtp::TransactionResult& r) { on_transaction(conn, id, r); });
    ::close(fd);  // the session dup()ed it
  }

  bool take_token() {
    if (bucket_.take(Clock::now())) return true;
    if (!rate_timer_.active()) rate_timer_.start(bucket_.wait_ms(), 0, [this] { pump(); });
    return false;
  }

  // Session callbacks come in submission order: the running part first, then the one behind it.
  // A part refused behind the dot (the session's conditions changed) leaves the running one be.
  void on_transaction(Conn* c, std::uint64_t id, const smtp::TransactionResult& r) {
    Part part;
    if (c->current && c->current_id == id) {
      part = std::move(*c->current);
      c->current = std::exchange(c->next, std::nullopt);
      c->current_id = c->next_id;
      ++c->messages;
      note_server_message(*c);
    } else if (c->next && c->next_id == id) {
      part = std::move(*c->next);
      c->next.reset();
    } else {
      return;  // answers nothing we sent (cannot happen)
    }
    if (c->current && eng_.withdrawn(c->current->token)) arm_life(*c, 0);  // now running: cut it
    std::vector<RecipientResult> done;
    Part retry = part;
    retry.recipients.clear();
    retry.indices.clear();
    retry.failed_on = c->serial;
    bool answered = false;
    for (size_t i = 0; i < r.recipients.size() && i < part.indices.size(); ++i) {
      const auto& o = r.recipients[i].outcome;
      if (classify(o) == Disposition::next_address) {  // no verdict: another server may, in this attempt
        if (retry.indices.empty()) retry.attempt.failed(server_key(c->ip, c->port), o, c->relay());
        retry.recipients.push_back(part.recipients[i]);
        retry.indices.push_back(part.indices[i]);
        continue;
      }
      answered = true;
      smtp::Outcome out = o;
      out.enhanced = smtp::dsn_code(o);
      done.push_back({part.indices[i], out, c->relay()});
    }
    if (eng_.withdrawn(part.token)) {  // its lock was lost: nothing of it is ours to report or retry
      done.clear();
      for (size_t i : part.indices)
        done.push_back({i, smtp::Outcome{smtp::Status::temporary, 0, "4.3.0", "lock lost"}, "none", false});
      retry.indices.clear();
    }
    if (!retry.indices.empty() && !can_go(retry)) {  // no server left for it in this attempt
      smtp::Outcome why = final_verdict(retry);
      for (size_t i : retry.indices) done.push_back({i, why, c->relay()});
    } else if (!retry.indices.empty()) {  // ahead of the queue, in the order the parts were sent
      queue_.insert(queue_.begin() + static_cast<std::ptrdiff_t>(std::min(c->retry_slot, queue_.size())),
                    std::move(retry));
      ++c->retry_slot;
    }
    // Slow start (Postfix's destination concurrency): a destination earns each further session
    // with a transaction its server answered, so a tarpit holds one session, not its whole share.
    if (answered) grow_concurrency();
    if (!done.empty()) eng_.done_(part.token, std::move(done));
    // The token may have ended the last part of a message; the engine itself is still alive.
    if (c->current) return;  // the part behind the dot is running: still busy, limits judged after it
    const auto& d = cfg_->delivery;
    if ((d.max_messages_per_connection > 0 && c->messages >= d.max_messages_per_connection) ||
        Clock::now() - c->opened >= d.max_connection_time)
      c->retire = true;
    if (!c->session->alive()) return;  // on_closed follows
    if (c->retire) {
      begin_quit(*c);
      pump();
      return;
    }
    set_state(*c, Conn::St::idle);
    pump();
    if (c->st == Conn::St::idle) idle_or_hand_over(*c);
  }

  void note_server_message(Conn& c) {
    if (key_.kind == config::RouteKind::relay && quota_.message_done(c.server, Clock::now())) c.retire = true;
  }

  void on_closed(Conn* c, const smtp::Outcome& why) {
    SessionEnd end;
    end.never_ready = c->st == Conn::St::connecting;
    end.busy = c->st == Conn::St::busy;
    end.cut_by_us = !c->cut.empty();
    end.plaintext = c->plaintext;
    end.starttls_failed = c->session && c->session->starttls_failed();
    end.relay = key_.kind == config::RouteKind::relay;
    end.opportunistic = cfg_->delivery.tls == config::TlsPolicy::opportunistic;
    end.stopping = eng_.stopping_;
    CloseAction action = on_session_end(end, why);
    log::debug("{}: session closed after {} messages ({}: {}): {}", c->relay(), c->messages,
               smtp::to_string(why.status), why.text, to_string(action));
    std::optional<std::pair<std::string, int>> fallback;
    if (action == CloseAction::plaintext_retry) {
      log::info("{}: {}; trying again without TLS (tls: opportunistic)", c->relay(), why.text);
      fallback = std::make_pair(c->ip, c->port);
    } else if (action == CloseAction::server_failed) {
      record_failure(*c, why, end.never_ready);
    }
    // The session ended without a transaction result (should not happen): defer the parts.
    for (auto* slot : {&c->current, &c->next}) {
      if (!*slot) continue;
      Part p = std::move(**slot);
      slot->reset();
      std::vector<RecipientResult> rs;
      for (size_t i : p.indices)
        rs.push_back({i, why.status == smtp::Status::sent ? smtp::Outcome{} : why, "none"});
      eng_.done_(p.token, std::move(rs));
    }
    auto it = std::find_if(conns_.begin(), conns_.end(), [&](const auto& p) { return p.get() == c; });
    // Destroying the Session from inside its own callback is allowed (smtp/session.h).
    std::unique_ptr<Conn> dying = std::move(*it);
    conns_.erase(it);
    set_state(*dying, Conn::St::closing);  // a server may close an idle connection itself
    release_slot(*dying);
    dying.reset();
    // Before session_closed(): the slot just freed is this server's retry, not anyone else's.
    if (fallback && wanted_at(server_key(fallback->first, fallback->second)))
      open_plain(fallback->first, fallback->second);
    eng_.session_closed();
    pump();
    eng_.maybe_drained();
  }

  // A server failed before giving a verdict: skipped for a while after connect_attempts such
  // failures in a row, and used up for every part waiting here in this attempt (they were all
  // waiting for it) unless another connection to it works (then it only refused or lost one
  // connection more: the working ones go on).
  void record_failure(const Conn& c, smtp::Outcome why, bool never_ready) {
    std::string key = server_key(c.ip, c.port);
    std::string relay =
        c.session && c.session->connected() ? c.relay() : "none";  // DESIGN.md: none = no connection
    why = server_failure(std::move(why), never_ready, key_.kind == config::RouteKind::relay);
    eng_.health_.failed(key, Clock::now(), connect_attempts(), bad_server_memory());
    if (concurrency_ > 1) --concurrency_;
    if (!ready_conn_to(key, &c))
      for (Part& p : queue_)
        if (p.failed_on != c.serial && !p.attempt.exhausted(key, connect_attempts()))
          p.attempt.failed(key, why, relay);
    log::info("{}: {} (try {} of {}): {}", c.relay(), never_ready ? "connection failed" : "session failed",
              queue_.empty() ? 1 : queue_.front().attempt.failures(key), connect_attempts(), why.text);
  }

  // How long a failing server is skipped: half the shortest retry delay at most, so that a retry
  // that comes due (due times are whole seconds) finds the server tried again, not remembered.
  Clock::duration bad_server_memory() const {
    Clock::duration memory = kBadAddressMemory;
    for (const auto& t : cfg_->queue.tiers)
      if (t.delay.count() > 0) memory = std::min<Clock::duration>(memory, t.delay / 2);
    return std::max<Clock::duration>(memory, std::chrono::seconds(1));
  }

  void grow_concurrency() {
    concurrency_ =
        std::min(concurrency_ + 1, static_cast<size_t>(cfg_->delivery.max_sessions_per_destination));
  }

  void fail_queue(const smtp::Outcome& why, bool attempted = true, const std::string& relay = "none") {
    while (!queue_.empty()) {
      Part p = std::move(queue_.front());
      queue_.pop_front();
      std::vector<RecipientResult> rs;
      for (size_t i : p.indices) rs.push_back({i, why, relay, attempted});
      eng_.done_(p.token, std::move(rs));
    }
  }

  DeliveryEngine& eng_;
  std::shared_ptr<const config::Config> cfg_;  // the snapshot this destination was made under
  HopKey key_;
  std::deque<Part> queue_;
  std::vector<std::unique_ptr<Conn>> conns_;
  bool resolving_ = false;
  bool blocked_ = false;    // waits for a global session slot
  size_t concurrency_ = 1;  // sessions allowed now (slow start, see grow_concurrency())
  bool hops_ok_ = false;
  dns::NextHops hops_;
  Clock::time_point hops_expire_{};
  TokenBucket bucket_;
  Timer rate_timer_;
  RelayQuota quota_;  // relay destinations: the message counts of each server
  size_t rr_next_ = 0;
  unsigned serial_ = 0;
  Clock::time_point last_active_ = Clock::now();  // last part queued here (for collect_idle())
};

DeliveryEngine::DeliveryEngine(uv_loop_t* loop, std::shared_ptr<const config::Config> config,
                               dns::Resolver& resolver, PartDone done)
    : loop_(loop),
      config_(std::move(config)),
      resolver_(resolver),
      done_(std::move(done)),
      collect_timer_(std::make_unique<Timer>(loop)),
      retire_timer_(std::make_unique<Timer>(loop)) {
  auto every = static_cast<uint64_t>(std::chrono::milliseconds(kDestinationMemory).count());
  collect_timer_->start(every, every, [this] { collect_idle(); });
  collect_timer_->unref();  // never keeps the loop alive on its own
}

DeliveryEngine::~DeliveryEngine() = default;

void DeliveryEngine::submit(Part part) {
  std::string k = part.key.str();
  auto it = dests_.find(k);
  if (it == dests_.end()) it = dests_.emplace(k, std::make_unique<Destination>(*this, part.key)).first;
  it->second->enqueue(std::move(part));
}

void DeliveryEngine::reconfigure(std::shared_ptr<const config::Config> config) {
  config_ = std::move(config);
  // Idle destinations are rebuilt with the new routes. Busy ones keep their own configuration
  // and finish what they hold under another name, so new mail for the same key goes to a new
  // destination made under the new configuration; they are forgotten once empty.
  std::vector<std::unique_ptr<Destination>> busy;
  for (auto it = dests_.begin(); it != dests_.end();) {
    if (it->second->empty() && !it->second->in_slot_queue) {
      forget_waiting(it->second.get());
      it = dests_.erase(it);
    } else if (it->first.rfind(kRetiredPrefix, 0) != 0) {
      busy.push_back(std::move(it->second));
      it = dests_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& d : busy)
    dests_.emplace(fmt::format("{}{}|{}", kRetiredPrefix, ++retired_, d->key().str()), std::move(d));
  if (!busy.empty() && !retire_timer_->active())
    retire_timer_->start(1000, 1000, [this] { collect_retired(); });
}

// Not from a destination's callbacks (it may be the one destroyed): from its own timer.
void DeliveryEngine::collect_retired() {
  bool left = false;
  for (auto it = dests_.begin(); it != dests_.end();) {
    bool retired = it->first.rfind(kRetiredPrefix, 0) == 0;
    if (retired && it->second->empty() && !it->second->in_slot_queue) {
      forget_waiting(it->second.get());
      it = dests_.erase(it);
      continue;
    }
    left = left || retired;
    ++it;
  }
  if (!left) retire_timer_->stop();
}

void DeliveryEngine::shutdown(std::function<void()> drained) {
  stopping_ = true;
  collect_timer_->stop();
  drained_ = std::move(drained);
  for (auto& [_, d] : dests_) d->pump();
  maybe_drained();
}

void DeliveryEngine::abort_all() {
  for (auto& [_, d] : dests_) d->abort_all();
}

void DeliveryEngine::withdraw(std::uint64_t token) {
  withdrawn_.insert(token);
  std::vector<Destination*> all;
  for (auto& [_, d] : dests_) all.push_back(d.get());
  for (Destination* d : all) d->withdraw(token);
}

size_t DeliveryEngine::queued() const {
  size_t n = 0;
  for (const auto& [_, d] : dests_) n += d->queued();
  return n;
}

std::vector<DestinationStats> DeliveryEngine::stats() const {
  std::vector<DestinationStats> out;
  for (const auto& [k, d] : dests_)
    if (d->sessions() || d->queued()) out.push_back({k, d->sessions(), d->queued()});
  return out;
}

void DeliveryEngine::session_closed() {
  if (sessions_ > 0) --sessions_;
  pump_waiting();
}

// With hundreds of destinations (fan-out), anything that walks every destination per session
// event is quadratic: these look only at the destinations that wait for a slot, in the order
// they started waiting, and walk the destinations for an idle connection only when there is one.
bool DeliveryEngine::reclaim_idle(Destination* except) {
  if (idle_conns_ == 0) return false;
  for (auto& [_, d] : dests_)
    if (d.get() != except && d->quit_one_idle()) return true;
  return false;
}

void DeliveryEngine::wait_for_slot(Destination* d) {
  if (d->in_slot_queue) return;
  d->in_slot_queue = true;
  ++d->slot_wait;
  slot_queue_.push_back(d);
  for (auto& k : d->share_keys()) waiting_by_server_[k].push_back({d, d->slot_wait});
}

DeliveryEngine::Destination* DeliveryEngine::taker_for(const std::string& share, const Destination* except) {
  auto it = waiting_by_server_.find(share);
  if (it == waiting_by_server_.end()) return nullptr;
  auto& q = it->second;
  // An entry is current only for the wait it was made for; older ones are dropped as they are
  // met. A taker goes to the back (round robin among the destinations behind one server).
  for (size_t n = q.size(); n > 0; --n) {
    Waiting w = q.front();
    q.pop_front();
    bool current = w.d->in_slot_queue && w.d->slot_wait == w.wait;
    if (!current) continue;
    q.push_back(w);
    if (w.d != except && w.d->wants(share)) return w.d;
  }
  if (q.empty()) waiting_by_server_.erase(it);
  return nullptr;
}

void DeliveryEngine::forget_waiting(const Destination* d) {
  for (auto it = waiting_by_server_.begin(); it != waiting_by_server_.end();) {
    auto& q = it->second;
    q.erase(std::remove_if(q.begin(), q.end(), [d](const Waiting& w) { return w.d == d; }), q.end());
    it = q.empty() ? waiting_by_server_.erase(it) : std::next(it);
  }
}

bool DeliveryEngine::someone_blocked(const Destination* except) {
  while (!slot_queue_.empty() && !slot_queue_.front()->blocked()) {  // drop those no longer waiting
    slot_queue_.front()->in_slot_queue = false;
    slot_queue_.pop_front();
  }
  for (size_t i = 0; i < slot_queue_.size() && i < 2; ++i)
    if (slot_queue_[i] != except && slot_queue_[i]->blocked()) return true;
  return false;
}

void DeliveryEngine::pump_waiting() {
  if (stopping_) return;
  // Each pump either takes a slot or queues the destination again at the back: one round at most.
  for (size_t n = slot_queue_.size(); n > 0 && !slot_queue_.empty(); --n) {
    if (slots_ >= static_cast<size_t>(config_->delivery.max_sessions) && idle_conns_ == 0) break;
    Destination* d = slot_queue_.front();
    slot_queue_.pop_front();
    d->in_slot_queue = false;
    if (d->waiting()) d->pump();
  }
}

void DeliveryEngine::collect_idle() {
  // A destination nobody has used for a while costs memory and nothing else: forget it (its DNS
  // answer stays in the resolver's cache). Relay groups are kept: they count messages per server
  // (max_messages is a lifetime cap).
  auto now = Clock::now();
  health_.forget_expired(now);
  for (auto it = dests_.begin(); it != dests_.end();) {
    Destination& d = *it->second;
    bool old = now - d.last_active() > kDestinationMemory;
    if (d.empty() && old && !d.in_slot_queue && d.key().kind != config::RouteKind::relay) {
      forget_waiting(&d);
      it = dests_.erase(it);
    } else {
      ++it;
    }
  }
}

void DeliveryEngine::maybe_drained() {
  if (!stopping_ || !drained_ || sessions_ > 0) return;
  auto fn = std::move(drained_);
  drained_ = nullptr;
  fn();
}

}  // namespace spoold::daemon
