// daemon/destination.cpp — see destination.h.
#include "daemon/destination.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "daemon/classify.h"
#include "daemon/log.h"
#include "daemon/smtp_options.h"
#include "smtp/rewrite.h"
#include "spool/crashpoint.h"

namespace spoold::daemon {

namespace {

constexpr auto kBadAddressMemory = std::chrono::seconds(60);  // skip a refusing host at most this long
constexpr auto kHopsLifetime = std::chrono::seconds(60);      // re-resolve a destination after this
// talk_attempts: the pause before a refused transaction is tried again on its session. Long
// enough for a server's momentary condition (a busy mailbox lock, a queue-file limit) to pass,
// short enough not to hold a pooled session idle for long.
constexpr std::uint64_t kTalkPauseMs = 1000;

}  // namespace

DeliveryEngine::Destination::~Destination() {
  leave_site_line();
}

void DeliveryEngine::Destination::join_site() {
  std::string name = key_.str();
  if (key_.kind == config::RouteKind::mx) {
    std::vector<std::string> hosts;
    for (const auto& h : hops_.hops) hosts.push_back(h.host);
    name = "mx-site:" + mx_site_name(std::move(hosts), key_.route);
  }
  if (site_ && site_->name == name) return;
  leave_site_line();  // its MX records changed: the old site's line is no longer its own
  site_ = eng_.site(name);
}

void DeliveryEngine::Destination::wait_for_site() {
  if (site_waits_ || !site_) return;
  site_waits_ = true;
  site_->waiting.push_back(this);
  // An idle connection of the site would otherwise keep its seat until its idle_timeout: this
  // destination takes it over, or it is closed to make room. Only walked while some connection
  // is idle at all.
  if (eng_.slots_.idle() == 0) return;
  for (auto& [_, d] : eng_.dests_) {
    if (d.get() == this || d->site_ != site_) continue;
    for (auto& c : d->conns_) {
      if (c->state() != Conn::St::idle || c->retire) continue;
      if (!c->share_key.empty() && takes(c->share_key)) {
        leave_site_line();
        return d->hand_over(*c, *this);  // ends the walk: d's connections changed
      }
      return d->begin_quit(*c);  // its seat comes back when it is gone (give_turns())
    }
  }
}

bool DeliveryEngine::Destination::site_wants(const Conn& c) const {
  const auto& site = c.seat.site();
  if (!site || c.share_key.empty() || c.retire) return false;
  return std::any_of(site->waiting.begin(), site->waiting.end(), [&](const SlotBroker::Waiter* w) {
    return w != this && static_cast<const Destination*>(w)->takes(c.share_key);
  });
}

void DeliveryEngine::Destination::leave_site_line() {
  if (site_waits_ && site_) std::erase(site_->waiting, static_cast<SlotBroker::Waiter*>(this));
  site_waits_ = false;
}

void DeliveryEngine::Destination::give_turns(MxSite& s) {
  for (size_t n = s.waiting.size(); n > 0 && !s.waiting.empty(); --n) {
    auto* d = static_cast<Destination*>(s.waiting.front());
    if (!d->site_room()) break;
    s.waiting.pop_front();
    d->site_waits_ = false;
    if (d->waiting()) d->pump();  // opens what the room allows, or queues up again
  }
}

auto DeliveryEngine::Destination::site_taker(MxSite& s, const std::string& share, const Destination* except)
    -> Destination* {
  for (auto it = s.waiting.begin(); it != s.waiting.end(); ++it) {
    auto* d = static_cast<Destination*>(*it);
    if (d == except || !d->takes(share)) continue;
    s.waiting.erase(it);
    d->site_waits_ = false;
    return d;
  }
  return nullptr;
}

void DeliveryEngine::Destination::enqueue(Part p) {
  last_active_ = Clock::now();
  queue_.push_back(std::move(p));
  pump();
}

void DeliveryEngine::Destination::pump() {
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
    if (c->state() == Conn::St::idle && !c->retire && !queue_.empty()) assign(*c);
  open_connections();
}

void DeliveryEngine::Destination::quit_idle() {
  for (auto& c : conns_)
    if (c->state() == Conn::St::idle) begin_quit(*c);
}

void DeliveryEngine::Destination::withdraw(std::uint64_t token) {
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

bool DeliveryEngine::Destination::carries_withdrawn(const Conn& c) const {
  return (c.current && eng_.withdrawn(c.current->token)) || (c.next && eng_.withdrawn(c.next->token)) ||
         std::any_of(c.talks.begin(), c.talks.end(),
                     [&](const auto& t) { return eng_.withdrawn(t.part.token); });
}

const config::RelayServer* DeliveryEngine::Destination::relay_server_of(const Conn& c) const {
  if (key_.kind != config::RouteKind::relay) return nullptr;
  const auto* g = cfg_->relay(key_.name);
  return g && c.server < g->servers.size() ? &g->servers[c.server] : nullptr;
}

int DeliveryEngine::Destination::messages_per_connection(const Conn& c) const {
  const auto* s = relay_server_of(c);
  return s && s->max_messages_per_connection ? *s->max_messages_per_connection
                                             : cfg_->delivery.max_messages_per_connection;
}

int DeliveryEngine::Destination::talk_attempts(const Conn& c) const {
  const auto* s = relay_server_of(c);
  return s && s->talk_attempts ? *s->talk_attempts : cfg_->delivery.talk_attempts;
}

void DeliveryEngine::Destination::abort_all() {
  std::vector<Conn*> all;
  for (auto& c : conns_) all.push_back(c.get());
  for (Conn* c : all) {  // each may close (and leave conns_) synchronously
    if (!c->session) continue;
    if (c->state() == Conn::St::idle || c->state() == Conn::St::closing)
      c->session->quit();
    else
      c->session->abort("mail system is shutting down: stop grace period over");
  }
}

std::string DeliveryEngine::Destination::drop_restricted(dns::NextHops& h) {
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

void DeliveryEngine::Destination::resolve() {
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
      // A domain that does not exist is not unreachable: no fallback for it.
      if (status == smtp::Status::temporary && key_.policy.fallback_relay) {
        std::deque<Part> parts = std::exchange(queue_, {});
        for (Part& p : parts)
          if (!fall_back(p, h.reason)) queue_.push_back(std::move(p));
      }
      fail_queue(smtp::Outcome{status, 0, code, h.reason});
      eng_.maybe_drained();
      return;
    }
    hops_ = std::move(h);
    hops_ok_ = true;
    hops_expire_ = Clock::now() + kHopsLifetime;
    join_site();
    pump();
  };
  const auto& cfg = *cfg_;
  if (key_.kind == config::RouteKind::mx) {
    eng_.resolver_.resolve_next_hops(key_.name, cb);
    return;
  }
  std::vector<dns::HostPort> hosts;
  if (key_.kind == config::RouteKind::hosts) {
    for (const auto& h : key_.hosts) {
      auto hp = dns::parse_host_port(h, static_cast<uint16_t>(cfg.delivery.port));
      if (hp.ok()) hosts.push_back(*hp);
    }
  } else if (const auto* g = cfg.relay(key_.name)) {
    for (const auto& s : g->servers) hosts.push_back(dns::HostPort{s.host, static_cast<uint16_t>(s.port)});
  }
  eng_.resolver_.resolve_hosts(hosts, cb);
}

bool DeliveryEngine::Destination::address_skipped(const std::string& key) const {
  return eng_.health_.skipped_since(key, Clock::now()).has_value();
}

bool DeliveryEngine::Destination::wanted_at(const std::string& key) const {
  return std::any_of(queue_.begin(), queue_.end(),
                     [&](const Part& p) { return !p.attempt.exhausted(key, connect_attempts()); });
}

bool DeliveryEngine::Destination::live_conn_to(const std::string& key) const {
  return std::any_of(conns_.begin(), conns_.end(), [&](const auto& c) {
    return c->state() != Conn::St::closing && !c->retire && c->session && c->session->alive() &&
           server_key(c->ip, c->port) == key;
  });
}

bool DeliveryEngine::Destination::ready_conn_to(const std::string& key, const Conn* except) const {
  return std::any_of(conns_.begin(), conns_.end(), [&](const auto& c) {
    return c.get() != except && (c->state() == Conn::St::idle || c->state() == Conn::St::busy) &&
           server_key(c->ip, c->port) == key;
  });
}

bool DeliveryEngine::Destination::can_go(const Part& p) {
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

auto DeliveryEngine::Destination::pick() -> std::optional<Pick> {
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

void DeliveryEngine::Destination::settle_stuck() {
  std::vector<Part> stuck;
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (can_go(*it)) {
      ++it;
      continue;
    }
    stuck.push_back(std::move(*it));
    it = queue_.erase(it);
  }
  for (const Part& p : stuck) report_stuck(p);  // after the walk: a report may queue more
}

smtp::Outcome DeliveryEngine::Destination::final_verdict(const Part& p) const {
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

bool DeliveryEngine::Destination::fall_back(const Part& p, const std::string& why) {
  const auto& name = key_.policy.fallback_relay;
  if (!name || eng_.stopping_ || eng_.withdrawn(p.token)) return false;
  // The engine's configuration, not this destination's: after a reload the group may be gone.
  if (!eng_.config_->relay(*name)) return false;
  Part moved = p;
  moved.key = HopKey{};
  moved.key.kind = config::RouteKind::relay;
  moved.key.name = *name;
  moved.attempt = AttemptLog{};
  moved.failed_on = 0;
  moved.talks = 0;
  log::info("{}: {} unreachable ({}): {} recipient(s) to fallback relay {}", p.qid, key_.str(), why,
            p.indices.size(), *name);
  eng_.submit(std::move(moved));
  return true;
}

void DeliveryEngine::Destination::report_stuck(const Part& p) {
  std::vector<RecipientResult> rs;
  if (p.attempt.any_failure()) {
    smtp::Outcome why = final_verdict(p);
    if (fall_back(p, why.text)) return;
    for (size_t i : p.indices) rs.push_back({i, why, p.attempt.last_relay()});
  } else if (auto skipped = skipped_reason()) {
    if (fall_back(p, skipped->first)) return;
    for (size_t i : p.indices) {
      RecipientResult r{i, smtp::Outcome{smtp::Status::temporary, 0, "4.4.1", skipped->first}, "none", false};
      r.postpone_s = skipped->second;
      rs.push_back(std::move(r));
    }
  } else {
    if (fall_back(p, "no usable next-hop address")) return;
    for (size_t i : p.indices)
      rs.push_back(
          {i, smtp::Outcome{smtp::Status::temporary, 0, "4.4.1", "no usable next-hop address"}, "none"});
  }
  eng_.done_(p.token, std::move(rs));
}

std::optional<std::pair<std::string, std::int64_t>> DeliveryEngine::Destination::skipped_reason() const {
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
        text += fmt::format("{}{} failed {} s ago", text.empty() ? "not tried: " : ", ", server_display(key),
                            std::chrono::duration_cast<std::chrono::seconds>(now - *since).count());
    }
  if (!first_due) return std::nullopt;
  auto wait = std::chrono::duration_cast<std::chrono::seconds>(*first_due - now).count() + 1;
  return std::make_pair(text, std::max<std::int64_t>(1, wait));
}

void DeliveryEngine::Destination::open_connections() {
  size_t connecting = 0;
  for (auto& c : conns_)
    if (c->state() == Conn::St::connecting) ++connecting;
  while (queue_.size() > connecting && conns_.size() < std::min(concurrency_, max_sessions())) {
    // The other domains of its MX site hold the site's sessions: a seat given back, or an idle
    // connection of the site handed over, gives it its turn (give_turns(), idle_or_hand_over()).
    if (!site_room()) {
      wait_for_site();
      break;
    }
    // At the global limit, an idle pooled connection elsewhere gives up its slot (Postfix keeps
    // idle connections only while nobody else needs the session): without this, 20 idle
    // connections would hold back every other destination until their idle_timeout.
    if (eng_.slots_.full() && !eng_.reclaim_idle(this)) {
      blocked_ = true;  // an idle connection elsewhere will make room (idle())
      eng_.slots_.wait(*this);
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

smtp::SessionOptions DeliveryEngine::Destination::session_options(const dns::NextHop& hop,
                                                                  const dns::Address& addr) {
  auto o = daemon::session_options(*cfg_, key_, hop, addr);
  if (!cfg_->delivery.transcript_dir.empty())
    o.transcript_path =
        fmt::format("{}/{}-{}-{}.log", cfg_->delivery.transcript_dir, hop.host, getpid(), ++serial_);
  return o;
}

void DeliveryEngine::Destination::open_plain(const std::string& ip, int port) {
  for (const auto& h : hops_.hops)
    for (const auto& a : h.addresses)
      if (a.ip == ip && h.port == port) return open(h, a, true);
}

void DeliveryEngine::Destination::open(const dns::NextHop& hop, const dns::Address& addr, bool plaintext) {
  auto c = std::make_unique<Conn>(eng_.slots_, ++eng_.conn_serial_);
  Conn* conn = c.get();
  conn->plaintext = plaintext;
  conn->dest = this;
  conn->host = hop.host;
  conn->ip = addr.ip;
  conn->port = hop.port;
  conn->server = static_cast<size_t>(hop.preference);
  conn->share_key = share_key(hop, addr);
  conn->seat = SiteSeat(site_);
  if (key_.kind == config::RouteKind::relay && quota_.round_robin())
    rr_next_ = conn->server + 1 >= quota_.size() ? 0 : conn->server + 1;
  conn->idle_timer = std::make_unique<uv::Timer>(eng_.loop_);
  conn->life_timer = std::make_unique<uv::Timer>(eng_.loop_);
  conn->talk_timer = std::make_unique<uv::Timer>(eng_.loop_);
  arm_life(*conn, static_cast<uint64_t>(cfg_->delivery.max_connection_time.count()));
  smtp::SessionCallbacks cbs;
  cbs.on_ready = [this, conn] {
    conn->enter(Conn::St::idle);
    eng_.health_.succeeded(server_key(conn->ip, conn->port));
    pump();
    if (conn->state() == Conn::St::idle) idle_or_hand_over(*conn);
  };
  // The connection may change destinations while idle (adopt()): dispatch to its current owner.
  cbs.on_closed = [conn](const smtp::Outcome& why) { conn->dest->on_closed(conn, why); };
  cbs.on_next_welcome = [conn] { conn->dest->offer_next(*conn); };
  cbs.on_warning = [conn](std::string_view w) { log::warning("{}: {}", conn->relay(), w); };
  if (spool::crashpoints_enabled())  // test builds: crash between any two SMTP states ("smtp:dot -> ready")
    cbs.on_trace = [](std::string_view t) { spool::crashpoint("smtp:" + std::string(t)); };
  conns_.push_back(std::move(c));
  ++eng_.sessions_;
  auto options = session_options(hop, addr);
  if (plaintext) options.engine.tls = smtp::TlsPolicy::none;
  conn->session = std::make_unique<smtp::Session>(eng_.loop_, std::move(options), std::move(cbs));
}

std::string DeliveryEngine::Destination::share_key(const dns::NextHop& hop, const dns::Address& addr) const {
  if (key_.kind == config::RouteKind::relay) return "";
  std::string k = server_key(addr.ip, hop.port);
  if (tls_policy() == config::TlsPolicy::verify) k += "|" + hop.host;
  // A route with a policy of its own (TLS, source address, limits) shares connections only among
  // its own next hops.
  if (key_.route >= 0) k += "|route" + std::to_string(key_.route);
  return k;
}

void DeliveryEngine::Destination::hand_over(Conn& c, Destination& taker) {
  auto it = std::find_if(conns_.begin(), conns_.end(), [&](const auto& p) { return p.get() == &c; });
  std::unique_ptr<Conn> moving = std::move(*it);
  conns_.erase(it);
  c.idle_timer->stop();
  taker.adopt(std::move(moving));
}

void DeliveryEngine::Destination::idle_or_hand_over(Conn& c) {
  if (!c.share_key.empty() && !c.retire && eng_.slots_.someone_blocked(this))
    if (auto* taker = static_cast<Destination*>(eng_.slots_.taker_for(c.share_key, this)))
      // Not into a full site of another name (one server behind two sets of MX hosts).
      if (taker->site_ == c.seat.site() || taker->site_room()) return hand_over(c, *taker);
  // Other domains of its MX site wait for a seat: the one that can use this connection takes it;
  // when none can, it is closed to make room (this destination has nothing for it now).
  if (const auto site = c.seat.site(); site && !c.share_key.empty() && !c.retire) {
    if (auto* taker = site_taker(*site, c.share_key, this)) return hand_over(c, *taker);
    if (queue_.empty() &&
        std::any_of(site->waiting.begin(), site->waiting.end(),
                    [this](const SlotBroker::Waiter* w) { return w != this && w->waiting(); }))
      return begin_quit(c);
  }
  idle(c);
}

bool DeliveryEngine::Destination::wants(const std::string& share) const {
  return blocked() && takes(share);
}

bool DeliveryEngine::Destination::takes(const std::string& share) const {
  if (!hops_ok_ || queue_.empty()) return false;
  for (const auto& h : hops_.hops)
    for (const auto& a : h.addresses)
      if (share_key(h, a) == share && !address_skipped(server_key(a.ip, h.port)))
        return wanted_at(server_key(a.ip, h.port));
  return false;
}

std::vector<std::string> DeliveryEngine::Destination::servers() const {
  std::vector<std::string> out;
  if (!hops_ok_ || key_.kind == config::RouteKind::relay) return out;
  for (const auto& h : hops_.hops)
    for (const auto& a : h.addresses) out.push_back(share_key(h, a));
  return out;
}

void DeliveryEngine::Destination::adopt(std::unique_ptr<Conn> c) {
  Conn* conn = c.get();
  conn->dest = this;
  // A connection shared across sites (one server behind two MX sets) counts where it works now.
  std::shared_ptr<MxSite> left;
  if (site_ && conn->seat.site() != site_) {
    left = conn->seat.site();
    conn->seat = SiteSeat(site_);
  }
  for (const auto& h : hops_.hops)  // log it under this destination's name for the server
    for (const auto& a : h.addresses)
      if (share_key(h, a) == conn->share_key) conn->host = h.host;
  conns_.push_back(std::move(c));
  log::debug("{}: connection handed over to {}", conn->relay(), key_.str());
  pump();
  if (conn->state() == Conn::St::idle) idle(*conn);
  if (left) give_turns(*left);
}

void DeliveryEngine::Destination::idle(Conn& c) {
  if (eng_.slots_.someone_blocked(this)) {
    begin_quit(c);
    eng_.pump_waiting();
    return;
  }
  arm_idle(c);
}

void DeliveryEngine::Destination::arm_life(Conn& c, uint64_t ms) {
  Conn* conn = &c;
  // Dispatched to the connection's current owner: an idle one may have been handed over.
  c.life_timer->start(ms, 0, [conn] { conn->dest->on_life_over(*conn); });
}

void DeliveryEngine::Destination::on_life_over(Conn& c) {
  if (c.state() == Conn::St::closing || !c.session) return;
  auto life = cfg_->delivery.max_connection_time;
  auto age = Clock::now() - c.opened;
  bool lost = carries_withdrawn(c);
  if (!lost && age < life)
    return arm_life(
        c,
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(life - age).count()) + 1);
  c.retire = true;
  if (c.state() == Conn::St::idle) return begin_quit(c);
  if (c.session->after_final_dot()) return arm_life(c, 50);  // look again when the reply came
  c.cut = lost ? "lock lost: another process may own the message" : "max_connection_time reached";
  log::info("{}: {} in a {} session: cut before its final dot", c.relay(), c.cut,
            c.state() == Conn::St::busy ? "busy" : "connecting");
  c.session->abort(c.cut);  // may destroy c
}

void DeliveryEngine::Destination::arm_idle(Conn& c) {
  auto ms = static_cast<uint64_t>(cfg_->delivery.idle_timeout.count());
  Conn* conn = &c;
  c.idle_timer->start(ms, 0, [this, conn] {
    if (conn->state() == Conn::St::idle) begin_quit(*conn);
  });
}

void DeliveryEngine::Destination::begin_quit(Conn& c) {
  c.enter(Conn::St::closing);  // gives back its slot: no longer holds back new connections
  c.idle_timer->stop();
  c.session->quit();
}

bool DeliveryEngine::Destination::quit_one_idle() {
  for (auto& c : conns_)
    if (c->state() == Conn::St::idle) {
      begin_quit(*c);
      return true;
    }
  return false;
}

void DeliveryEngine::Destination::assign(Conn& c) {
  if (Clock::now() - c.opened >= cfg_->delivery.max_connection_time) {
    begin_quit(c);  // too old to start another transaction on: retire, a fresh one follows
    return;
  }
  if (key_.kind == config::RouteKind::relay && !quota_.can_take(c.server, Clock::now())) {
    begin_quit(c);  // the server's counts are full (with what other connections carry): next one
    return;
  }
  auto part = take_part(c, false);
  if (!part) return;
  c.idle_timer->stop();
  c.enter(Conn::St::busy);
  send_part(c, std::move(*part));
}

void DeliveryEngine::Destination::offer_next(Conn& c) {
  if (eng_.stopping_ || c.state() != Conn::St::busy || !c.current || c.next || !c.talks.empty() || c.retire ||
      !room_behind_dot(c) || !c.session->can_submit_next() || site_wants(c))
    return;
  size_t connecting = static_cast<size_t>(std::count_if(
      conns_.begin(), conns_.end(), [](const auto& k) { return k->state() == Conn::St::connecting; }));
  if (queue_.size() <= connecting) return;
  auto part = take_part(c, true);
  if (part) send_part(c, std::move(*part));
}

bool DeliveryEngine::Destination::room_behind_dot(const Conn& c) {
  const auto& d = cfg_->delivery;
  int per_connection = messages_per_connection(c);
  if (per_connection > 0 && c.messages + 2 > per_connection) return false;
  if (Clock::now() - c.opened >= d.max_connection_time) return false;
  // The running message is taken already: this asks for room for one more.
  return key_.kind != config::RouteKind::relay || quota_.can_take(c.server, Clock::now());
}

std::optional<Part> DeliveryEngine::Destination::take_part(const Conn& c, bool behind_dot) {
  std::string key = server_key(c.ip, c.port);
  auto it = std::find_if(queue_.begin(), queue_.end(), [&](const Part& p) {
    return (!behind_dot || p.longest_line > 0) && !p.attempt.exhausted(key, connect_attempts());
  });
  if (it == queue_.end() || !take_token()) return std::nullopt;
  Part part = std::move(*it);
  queue_.erase(it);
  return part;
}

void DeliveryEngine::Destination::send_part(Conn& c, Part part) {
  bool behind_dot = c.current.has_value();
  smtp::Transaction t;
  config::Rewrite rw = part.rewrite;
  if (key_.kind == config::RouteKind::relay)
    if (const auto* g = cfg_->relay(key_.name); g && c.server < g->servers.size())
      rw = rw.with(g->servers[c.server].rewrite);
  t.sender = smtp::rewrite_envelope_sender(part.sender, rw.envelope_from, rw.masquerade_domains);
  t.masquerade = std::move(rw.masquerade_domains);
  t.recipients = part.recipients;
  t.size = part.size;
  t.missing_date = part.missing_date;
  t.missing_message_id = part.missing_message_id;
  t.dsn_ret = part.dsn_ret;
  t.dsn_envid = part.dsn_envid;
  t.dsn_notify = part.dsn_notify;
  t.dsn_orcpt = part.dsn_orcpt;
  if (part.longest_line > 0)  // known from pickup: no second read of the body before MAIL
    t.body_info = smtp::BodyInfo{part.eight_bit, static_cast<size_t>(part.longest_line), 0};
  smtp::BodySource body;
  int fd = ::open(part.body_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // The body vanished (deleted by an operator?): nothing to send; report temporary.
    if (!behind_dot) {
      give_up_talk(c);  // an idle connection holds no refused recipients
      c.enter(Conn::St::idle);
    }
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
  if (key_.kind == config::RouteKind::relay) {
    quota_.take(c.server);  // counted from now, so that other connections leave room for it
    ++c.quota_held;
  }
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

bool DeliveryEngine::Destination::take_token() {
  if (bucket_.take(Clock::now())) return true;
  if (!rate_timer_.active()) rate_timer_.start(bucket_.wait_ms(), 0, [this] { pump(); });
  return false;
}

void DeliveryEngine::Destination::on_transaction(Conn* c, std::uint64_t id,
                                                 const smtp::TransactionResult& r) {
  auto part = take_answered(*c, id);
  if (!part) return;  // answers nothing we sent (cannot happen)
  for (const auto& note : r.notes) log::info("{}: {}: {}", part->qid, c->relay(), note);
  if (c->current && eng_.withdrawn(c->current->token)) arm_life(*c, 0);  // now running: cut it
  Sorted sorted = sort_results(*c, *part, r);
  settle_quota(*c, sorted.answered);
  keep_for_talk(*c, *part, sorted.done);
  if (!sorted.retry.indices.empty() && !can_go(sorted.retry)) {  // no server left for it in this attempt
    smtp::Outcome why = final_verdict(sorted.retry);
    if (!fall_back(sorted.retry, why.text))
      for (size_t i : sorted.retry.indices) sorted.done.push_back({i, why, c->relay()});
  } else if (!sorted.retry.indices.empty()) {  // ahead of the queue, in the order the parts were sent
    queue_.insert(queue_.begin() + static_cast<std::ptrdiff_t>(std::min(c->retry_slot, queue_.size())),
                  std::move(sorted.retry));
    ++c->retry_slot;
  }
  // Slow start (Postfix's destination concurrency): a destination earns each further session
  // with a transaction its server answered, so a tarpit holds one session, not its whole share.
  if (sorted.answered) grow_concurrency();
  if (!sorted.done.empty()) eng_.done_(part->token, std::move(sorted.done));
  // The token may have ended the last part of a message; the engine itself is still alive.
  if (!c->current) {
    after_transaction(*c);
  } else if (sorted.answered) {
    // The part behind the dot runs: still busy. The session it earned opens now, or a session
    // that pipelines every message behind the previous dot would be the only one, however slow
    // its server.
    pump();
  }
}

std::optional<Part> DeliveryEngine::Destination::take_answered(Conn& c, std::uint64_t id) {
  if (c.current && c.current_id == id) {
    Part part = std::move(*c.current);
    c.current = std::exchange(c.next, std::nullopt);
    c.current_id = c.next_id;
    ++c.messages;
    return part;
  }
  if (c.next && c.next_id == id) {
    Part part = std::move(*c.next);
    c.next.reset();
    return part;
  }
  return std::nullopt;
}

auto DeliveryEngine::Destination::sort_results(const Conn& c, const Part& part,
                                               const smtp::TransactionResult& r) -> Sorted {
  Sorted out;
  out.retry = part;
  out.retry.recipients.clear();
  out.retry.indices.clear();
  out.retry.dsn_notify.clear();  // per recipient: rebuilt with the subset below, never left misaligned
  out.retry.dsn_orcpt.clear();
  out.retry.failed_on = c.serial;
  if (eng_.withdrawn(part.token)) {  // its lock was lost: nothing of it is ours to report or retry
    for (size_t i : part.indices)
      out.done.push_back({i, smtp::Outcome{smtp::Status::temporary, 0, "4.3.0", "lock lost"}, "none", false});
    for (const auto& rr : r.recipients)
      if (classify(rr.outcome) != Disposition::next_address) out.answered = true;
    return out;
  }
  for (size_t i = 0; i < r.recipients.size() && i < part.indices.size(); ++i) {
    const auto& o = r.recipients[i].outcome;
    if (classify(o) == Disposition::next_address) {  // no verdict: another server may, in this attempt
      if (out.retry.indices.empty()) out.retry.attempt.failed(server_key(c.ip, c.port), o, c.relay());
      out.retry.recipients.push_back(part.recipients[i]);
      out.retry.indices.push_back(part.indices[i]);
      out.retry.dsn_notify.push_back(i < part.dsn_notify.size() ? part.dsn_notify[i] : "");
      out.retry.dsn_orcpt.push_back(i < part.dsn_orcpt.size() ? part.dsn_orcpt[i] : "");
      continue;
    }
    out.answered = true;
    smtp::Outcome verdict = o;
    verdict.enhanced = smtp::dsn_code(o);
    out.done.push_back({part.indices[i], verdict, c.relay()});
  }
  return out;
}

// The connection finished its last submitted part: it retires at its limits, else takes more
// work or goes idle (or to a destination that waits for this server).
void DeliveryEngine::Destination::after_transaction(Conn& c) {
  const auto& d = cfg_->delivery;
  int per_connection = messages_per_connection(c);
  if ((per_connection > 0 && c.messages >= per_connection) ||
      Clock::now() - c.opened >= d.max_connection_time)
    c.retire = true;
  if (!c.session->alive()) return;                         // on_closed follows
  if (!c.talks.empty() && !c.retire && !eng_.stopping_) {  // busy still: the same recipients after the pause
    Conn* conn = &c;
    c.talk_timer->start(kTalkPauseMs, 0, [conn] { conn->dest->talk_again(*conn); });
    return;
  }
  give_up_talk(c);
  if (c.retire) {
    begin_quit(c);
    pump();
    return;
  }
  c.enter(Conn::St::idle);
  // Another domain of the site waits for a seat: it gets this connection before this
  // destination's next part (which queues up in the site's line), so one big backlog cannot
  // hold every seat of a provider while a small domain waits.
  if (site_wants(c)) {
    idle_or_hand_over(c);
    pump();
    return;
  }
  pump();
  if (c.state() == Conn::St::idle) idle_or_hand_over(c);
}

void DeliveryEngine::Destination::settle_quota(Conn& c, bool answered) {
  if (key_.kind != config::RouteKind::relay || c.quota_held == 0) return;
  --c.quota_held;
  if (quota_.settle(c.server, answered, Clock::now())) c.retire = true;
}

void DeliveryEngine::Destination::keep_for_talk(Conn& c, const Part& part,
                                                std::vector<RecipientResult>& done) {
  if (part.talks + 1 >= talk_attempts(c) || c.retire || eng_.stopping_ || eng_.withdrawn(part.token) ||
      !c.session->alive())
    return;
  Part again = part;
  again.recipients.clear();
  again.indices.clear();
  again.dsn_notify.clear();
  again.dsn_orcpt.clear();
  again.talks = part.talks + 1;
  std::vector<RecipientResult> verdicts;
  std::erase_if(done, [&](const RecipientResult& r) {
    if (!worth_talking_again(r.outcome)) return false;
    auto at = std::find(part.indices.begin(), part.indices.end(), r.index);
    if (at == part.indices.end()) return false;
    auto i = static_cast<size_t>(at - part.indices.begin());
    again.recipients.push_back(part.recipients[i]);
    again.indices.push_back(r.index);
    again.dsn_notify.push_back(i < part.dsn_notify.size() ? part.dsn_notify[i] : "");
    again.dsn_orcpt.push_back(i < part.dsn_orcpt.size() ? part.dsn_orcpt[i] : "");
    verdicts.push_back(r);
    return true;
  });
  if (again.indices.empty()) return;
  log::info(
      "{}: {}: {} recipient(s) refused with {} {}; trying again on this session in {} ms (try {} of {})",
      part.qid, c.relay(), again.indices.size(), verdicts.front().outcome.code,
      verdicts.front().outcome.enhanced, kTalkPauseMs, again.talks + 1, talk_attempts(c));
  c.talks.push_back({std::move(again), std::move(verdicts)});
}

void DeliveryEngine::Destination::talk_again(Conn& c) {
  if (c.talks.empty()) return;
  bool can = !eng_.stopping_ && !c.retire && c.state() == Conn::St::busy && !c.current && c.session &&
             c.session->alive() && c.session->idle() && !eng_.withdrawn(c.talks.front().part.token) &&
             Clock::now() - c.opened < cfg_->delivery.max_connection_time &&
             (key_.kind != config::RouteKind::relay || quota_.can_take(c.server, Clock::now()));
  if (!can) {
    give_up_talk(c);
    after_transaction(c);
    return;
  }
  if (!bucket_.take(Clock::now())) {  // a further try is a message like any other for rate_limit
    Conn* conn = &c;
    c.talk_timer->start(bucket_.wait_ms(), 0, [conn] { conn->dest->talk_again(*conn); });
    return;
  }
  Part p = std::move(c.talks.front().part);
  c.talks.pop_front();
  send_part(c, std::move(p));
}

void DeliveryEngine::Destination::give_up_talk(Conn& c) {
  c.talk_timer->stop();
  auto talks = std::move(c.talks);
  c.talks.clear();
  for (auto& [p, rs] : talks) {
    if (eng_.withdrawn(p.token)) {  // its lock was lost: nothing of it is ours to report
      rs.clear();
      for (size_t i : p.indices)
        rs.push_back({i, smtp::Outcome{smtp::Status::temporary, 0, "4.3.0", "lock lost"}, "none", false});
    }
    eng_.done_(p.token, std::move(rs));
  }
}

void DeliveryEngine::Destination::on_closed(Conn* c, const smtp::Outcome& why) {
  SessionEnd end;
  end.never_ready = c->state() == Conn::St::connecting;
  // In the pause before a talk_attempts try the connection is busy with no transaction running:
  // a server closing it then is no failure in a transaction.
  end.busy = c->state() == Conn::St::busy && !c->talk_timer->active();
  end.cut_by_us = !c->cut.empty();
  end.plaintext = c->plaintext;
  end.starttls_failed = c->session && c->session->starttls_failed();
  end.relay = key_.kind == config::RouteKind::relay;
  end.opportunistic = tls_policy() == config::TlsPolicy::opportunistic;
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
  give_up_talk(*c);
  while (c->quota_held > 0) settle_quota(*c, false);
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
  std::shared_ptr<MxSite> site = dying->seat.site();
  dying.reset();  // gives back its slots (a server may close an idle connection itself)
  // Before session_closed(): the slot just freed is this server's retry, not anyone else's.
  if (fallback && wanted_at(server_key(fallback->first, fallback->second)))
    open_plain(fallback->first, fallback->second);
  eng_.session_closed();
  if (site) give_turns(*site);
  pump();
  eng_.maybe_drained();
}

void DeliveryEngine::Destination::record_failure(const Conn& c, smtp::Outcome why, bool never_ready) {
  std::string key = server_key(c.ip, c.port);
  std::string relay =
      c.session && c.session->connected() ? c.relay() : "none";  // docs/design.md: none = no connection
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

Clock::duration DeliveryEngine::Destination::bad_server_memory() const {
  Clock::duration memory = kBadAddressMemory;
  for (const auto& t : cfg_->queue.tiers)
    if (t.delay.count() > 0) memory = std::min<Clock::duration>(memory, t.delay / 2);
  return std::max<Clock::duration>(memory, std::chrono::seconds(1));
}

void DeliveryEngine::Destination::grow_concurrency() {
  concurrency_ = std::min(concurrency_ + 1, max_sessions());
}

void DeliveryEngine::Destination::fail_queue(const smtp::Outcome& why, bool attempted,
                                             const std::string& relay) {
  while (!queue_.empty()) {
    Part p = std::move(queue_.front());
    queue_.pop_front();
    std::vector<RecipientResult> rs;
    for (size_t i : p.indices) rs.push_back({i, why, relay, attempted});
    eng_.done_(p.token, std::move(rs));
  }
}

}  // namespace spoold::daemon
