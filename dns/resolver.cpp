// dns/resolver.cpp — Resolver: next-hop and client-name lookups as explicit state machines over a
// record layer that caches answers and lets concurrent lookups of one name+type share one query.
// Rules: c-ares callbacks only record answers and queue continuations; continuations and user
// callbacks run from the dispatch timer, outside c-ares, so a user callback may destroy the
// Resolver. Every lookup ends in finish() exactly once (or is cancelled by shutdown()).
#include <fmt/format.h>

#include <cassert>
#include <deque>
#include <map>
#include <optional>
#include <thread>

#include "common/uv_handle.h"
#include "dns/answer.h"
#include "dns/channel.h"
#include "dns/dns.h"
#include "dns/names.h"
#include "dns/record_cache.h"

namespace spoold::dns {

using detail::AnswerKind;
using detail::RecordAnswer;
using detail::RecordType;

class Resolver::Impl {
 public:
  Impl(uv_loop_t* loop, Options options)
      : loop_(loop),
        options_(std::move(options)),
        cache_(options_.max_cache_ttl, options_.negative_cache_ttl, options_.max_cache_entries),
        dispatch_(loop) {}
  ~Impl() { shutdown(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  Result<void> init();
  void shutdown();

  void resolve_next_hops(const std::string& domain, NextHopsCallback cb);
  void resolve_hosts(const std::vector<HostPort>& hosts, NextHopsCallback cb);
  void resolve_client_name(const std::string& ip, ClientNameCallback cb);
  size_t in_flight() const { return lookups_.size() + client_lookups_.size(); }

 private:
  using AnswerPtr = std::shared_ptr<const RecordAnswer>;
  using Waiter = std::function<void(const AnswerPtr&)>;

  enum class LookupKind { mx, static_hosts };
  enum class LookupState { querying_mx, querying_addresses, done };
  static std::string_view to_string(LookupState s);

  struct HostSlot {
    std::string host;
    int preference = 0;
    uint16_t port = 0;
    AnswerPtr a, aaaa;               // filled as answers arrive
    std::optional<Address> literal;  // static hosts given as IP literals need no query
  };
  struct Lookup {
    uint64_t id = 0;
    LookupKind kind = LookupKind::mx;
    LookupState state = LookupState::querying_mx;
    std::string name;  // the domain (MX) or a description of the host list (static)
    NextHopsCallback cb;
    std::vector<HostSlot> hosts;
    size_t pending = 0;  // address queries not yet answered
    bool implicit_mx = false;
  };
  // PTR of the address, then the forward lookup of one PTR name at a time, in answer order.
  struct ClientLookup {
    uint64_t id = 0;
    Address client;       // canonical text, compared with the forward answers' (also canonical) text
    std::string reverse;  // the PTR query name
    ClientNameCallback cb;
    std::vector<std::string> names;  // PTR names; names[next] is being looked up
    size_t next = 0;
    bool temporary = false;  // a forward lookup failed for now: a later try may verify a name
    std::string reasons;     // why each checked name did not verify
  };

  // Record layer.
  void lookup_record(const std::string& name, RecordType type, Waiter waiter);
  void on_record_answer(const std::string& key, RecordType type, int status, const unsigned char* abuf,
                        int alen);
  // Dispatch: everything that may run user code goes through here.
  void defer(std::function<void()> fn);
  void on_dispatch();
  // Next-hop state machine.
  Lookup& new_lookup(LookupKind kind, std::string name, NextHopsCallback cb);
  Lookup* find(uint64_t id);
  void on_mx_answer(uint64_t id, const RecordAnswer& answer);
  void start_address_queries(Lookup& l);
  void on_address_answer(uint64_t id, size_t slot, RecordType type, const AnswerPtr& answer);
  void finish_addresses(Lookup& l);
  NextHops no_usable_host(const Lookup& l) const;
  void fail_later(uint64_t id, Status status, std::string reason);
  void finish(uint64_t id, NextHops result);
  // Client-name state machine.
  ClientLookup* find_client(uint64_t id);
  void on_ptr_answer(uint64_t id, const RecordAnswer& answer);
  void check_next_name(ClientLookup& l);
  void on_forward_answer(uint64_t id, const RecordAnswer& answer);
  void finish_client(uint64_t id, Status status, std::string name, std::string reason);

  uv_loop_t* loop_;
  Options options_;
  std::unique_ptr<detail::Channel> channel_;
  detail::RecordCache cache_;
  std::map<std::string, std::vector<Waiter>> queries_;  // cache key → lookups waiting on it
  std::map<uint64_t, std::unique_ptr<Lookup>> lookups_;
  std::map<uint64_t, std::unique_ptr<ClientLookup>> client_lookups_;
  uint64_t next_id_ = 1;
  std::deque<std::function<void()>> ready_;
  uv::Timer dispatch_;
  bool dispatch_armed_ = false;
  bool shutting_down_ = false;
  std::shared_ptr<char> alive_ = std::make_shared<char>();  // expires when shutdown() starts
  std::mt19937 rng_{std::random_device{}()};
  std::thread::id loop_thread_ = std::this_thread::get_id();  // c-ares and libuv are not thread-safe
};

namespace {

NextHops failed(Status status, std::string reason) {
  NextHops r;
  r.status = status;
  r.reason = std::move(reason);
  return r;
}

NextHops cancelled() {
  return failed(Status::cancelled, "resolver shut down");
}

constexpr std::string_view kUnknown = "unknown";  // Postfix's name for an unverified client

ClientName client_name(Status status, std::string name, std::string reason) {
  return ClientName{status, status == Status::ok ? std::move(name) : std::string(kUnknown),
                    std::move(reason)};
}

Status status_of(AnswerKind kind) {
  switch (kind) {
    case AnswerKind::permanent:
    case AnswerKind::nxdomain:
      return Status::permanent;
    case AnswerKind::cancelled:
      return Status::cancelled;
    default:
      return Status::temporary;
  }
}

}  // namespace

std::string_view Resolver::Impl::to_string(LookupState s) {
  switch (s) {
    case LookupState::querying_mx:
      return "querying_mx";
    case LookupState::querying_addresses:
      return "querying_addresses";
    case LookupState::done:
      return "done";
  }
  return "?";
}

Result<void> Resolver::Impl::init() {
  detail::ChannelOptions co{options_.servers, options_.timeout, options_.tries,
                            options_.max_queries_in_flight};
  auto ch = detail::Channel::create(loop_, co);
  if (!ch) return ch.error();
  channel_ = std::move(ch.value());
  return {};
}

void Resolver::Impl::shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  alive_.reset();  // an on_dispatch() below us on the stack stops at once
  ready_.clear();
  dispatch_.close();
  channel_.reset();  // ares_destroy: callbacks arrive with ARES_EDESTRUCTION and are ignored
  queries_.clear();
  cache_.clear();
  auto lookups = std::move(lookups_);
  lookups_.clear();
  auto client_lookups = std::move(client_lookups_);
  client_lookups_.clear();
  for (auto& [id, l] : lookups) {
    auto cb = std::move(l->cb);
    if (cb) cb(cancelled());  // exactly once; resolve_* from here is cancelled synchronously
  }
  for (auto& [id, l] : client_lookups) {
    auto cb = std::move(l->cb);
    if (cb) cb(client_name(Status::cancelled, "", "resolver shut down"));
  }
}

// ---- record layer ---------------------------------------------------------------------------

void Resolver::Impl::lookup_record(const std::string& name, RecordType type, Waiter waiter) {
  std::string key = detail::RecordCache::key(name, type);
  if (auto hit = cache_.find(key, uv_now(loop_))) {
    defer([waiter = std::move(waiter), hit] { waiter(hit); });
    return;
  }
  auto [it, fresh] = queries_.try_emplace(key);
  it->second.push_back(std::move(waiter));
  if (!fresh) return;  // a query for this name+type is already in flight: share it
  channel_->query(name, static_cast<int>(type),
                  [this, key, type](int status, const unsigned char* abuf, int alen) {
                    on_record_answer(key, type, status, abuf, alen);
                  });
}

// Runs inside c-ares: record and queue only.
void Resolver::Impl::on_record_answer(const std::string& key, RecordType type, int status,
                                      const unsigned char* abuf, int alen) {
  if (shutting_down_) return;
  auto answer = std::make_shared<const RecordAnswer>(detail::parse_answer(type, status, abuf, alen));
  cache_.store(key, answer, uv_now(loop_));
  auto it = queries_.find(key);
  if (it == queries_.end()) return;
  auto waiters = std::move(it->second);
  queries_.erase(it);
  for (auto& w : waiters) defer([w = std::move(w), answer] { w(answer); });
}

// ---- dispatch -------------------------------------------------------------------------------

void Resolver::Impl::defer(std::function<void()> fn) {
  ready_.push_back(std::move(fn));
  if (dispatch_armed_) return;
  dispatch_armed_ = true;
  dispatch_.start(0, 0, [this] { on_dispatch(); });
}

void Resolver::Impl::on_dispatch() {
  dispatch_armed_ = false;
  std::weak_ptr<char> alive = alive_;
  while (!ready_.empty()) {
    auto fn = std::move(ready_.front());
    ready_.pop_front();
    fn();  // may run a user callback that destroys us
    if (alive.expired()) return;
  }
}

// ---- next-hop state machine -----------------------------------------------------------------

Resolver::Impl::Lookup& Resolver::Impl::new_lookup(LookupKind kind, std::string name, NextHopsCallback cb) {
  auto l = std::make_unique<Lookup>();
  l->id = next_id_++;
  l->kind = kind;
  l->name = std::move(name);
  l->cb = std::move(cb);
  return *lookups_.emplace(l->id, std::move(l)).first->second;
}

Resolver::Impl::Lookup* Resolver::Impl::find(uint64_t id) {
  auto it = lookups_.find(id);
  return it == lookups_.end() ? nullptr : it->second.get();
}

void Resolver::Impl::resolve_next_hops(const std::string& domain, NextHopsCallback cb) {
  assert(std::this_thread::get_id() == loop_thread_);
  if (shutting_down_) return cb(cancelled());
  Lookup& l = new_lookup(LookupKind::mx, detail::normalize_name(domain), std::move(cb));
  if (!detail::valid_name(l.name))
    return fail_later(l.id, Status::permanent, fmt::format("invalid domain name \"{}\"", domain));
  l.state = LookupState::querying_mx;
  lookup_record(l.name, RecordType::mx, [this, id = l.id](const AnswerPtr& a) { on_mx_answer(id, *a); });
}

void Resolver::Impl::resolve_hosts(const std::vector<HostPort>& hosts, NextHopsCallback cb) {
  assert(std::this_thread::get_id() == loop_thread_);
  if (shutting_down_) return cb(cancelled());
  std::string names;
  for (const auto& h : hosts) names += (names.empty() ? "" : ", ") + h.host;
  Lookup& l = new_lookup(LookupKind::static_hosts, names, std::move(cb));
  if (hosts.empty()) return fail_later(l.id, Status::permanent, "no hosts given");
  for (size_t i = 0; i < hosts.size(); ++i)
    l.hosts.push_back(
        HostSlot{hosts[i].host, static_cast<int>(i), hosts[i].port, nullptr, nullptr, std::nullopt});
  start_address_queries(l);
}

void Resolver::Impl::on_mx_answer(uint64_t id, const RecordAnswer& answer) {
  Lookup* l = find(id);
  if (!l) return;
  switch (answer.kind) {
    case AnswerKind::ok: {
      MxPlan plan = plan_mx(answer.mx, options_.our_hostname, rng_);
      if (plan.status != Status::ok) return finish(id, failed(plan.status, plan.reason));
      if (plan.hosts.size() > options_.max_mx_hosts) plan.hosts.resize(options_.max_mx_hosts);
      for (auto& h : plan.hosts)
        l->hosts.push_back(HostSlot{h.host, h.preference, options_.mx_port, nullptr, nullptr, std::nullopt});
      return start_address_queries(*l);
    }
    case AnswerKind::nodata:  // RFC 5321 §5.1: no MX → the domain itself, preference 0
      l->implicit_mx = true;
      l->hosts.push_back(HostSlot{l->name, 0, options_.mx_port, nullptr, nullptr, std::nullopt});
      return start_address_queries(*l);
    case AnswerKind::nxdomain:
      return finish(id, failed(Status::permanent, fmt::format("domain {} not found (NXDOMAIN)", l->name)));
    default:
      return finish(id, failed(status_of(answer.kind),
                               fmt::format("MX lookup for {} failed: {}", l->name, answer.reason)));
  }
}

void Resolver::Impl::start_address_queries(Lookup& l) {
  l.state = LookupState::querying_addresses;
  for (size_t i = 0; i < l.hosts.size(); ++i) {
    HostSlot& slot = l.hosts[i];
    if (l.kind == LookupKind::static_hosts) {
      if (auto family = detail::ip_literal_family(slot.host)) {
        slot.literal = Address{slot.host, *family};
        continue;
      }
    }
    std::string name = detail::normalize_name(slot.host);
    if (!detail::valid_name(name)) {  // e.g. an MX naming an IP literal or junk: skip it
      auto bad = std::make_shared<RecordAnswer>();
      bad->kind = AnswerKind::permanent;
      bad->reason = "invalid host name";
      slot.a = slot.aaaa = bad;
      continue;
    }
    l.pending += 2;
    for (RecordType type : {RecordType::a, RecordType::aaaa})
      lookup_record(name, type,
                    [this, id = l.id, i, type](const AnswerPtr& a) { on_address_answer(id, i, type, a); });
  }
  // Nothing to ask (all literals or invalid): finish from the dispatcher, never from the caller.
  if (l.pending == 0)
    defer([this, id = l.id] {
      if (Lookup* found = find(id)) finish_addresses(*found);
    });
}

void Resolver::Impl::on_address_answer(uint64_t id, size_t slot, RecordType type, const AnswerPtr& answer) {
  Lookup* l = find(id);
  if (!l) return;
  (type == RecordType::a ? l->hosts[slot].a : l->hosts[slot].aaaa) = answer;
  if (--l->pending == 0) finish_addresses(*l);
}

void Resolver::Impl::finish_addresses(Lookup& l) {
  NextHops out;
  for (auto& slot : l.hosts) {
    std::vector<Address> addrs;
    if (slot.literal) addrs.push_back(*slot.literal);
    for (const auto& ans : {slot.a, slot.aaaa})
      if (ans && ans->kind == AnswerKind::ok)
        addrs.insert(addrs.end(), ans->addresses.begin(), ans->addresses.end());
    if (addrs.empty()) continue;  // a host without an address is skipped
    out.hops.push_back(NextHop{slot.host, slot.preference, slot.port,
                               order_addresses(std::move(addrs), options_.address_preference, rng_)});
  }
  finish(l.id, out.hops.empty() ? no_usable_host(l) : std::move(out));
}

// Why no host had an address: temporary unless the domain itself provably has none.
NextHops Resolver::Impl::no_usable_host(const Lookup& l) const {
  bool any_temporary = false, any_cancelled = false;
  std::string detail;
  for (const auto& slot : l.hosts) {
    for (const auto& [ans, type] : {std::pair{slot.a, "A"}, std::pair{slot.aaaa, "AAAA"}}) {
      if (!ans) continue;
      any_temporary |= ans->kind == AnswerKind::temporary;
      any_cancelled |= ans->kind == AnswerKind::cancelled;
      detail += fmt::format("{}{} {}: {}", detail.empty() ? "" : "; ", slot.host, type, ans->reason);
    }
  }
  if (any_cancelled) return cancelled();
  if (l.implicit_mx && !any_temporary)
    return failed(Status::permanent, fmt::format("domain {} has no MX and no A/AAAA records", l.name));
  const char* what = l.kind == LookupKind::mx ? (l.implicit_mx ? "domain" : "MX hosts") : "hosts";
  return failed(Status::temporary, fmt::format("no address for {} of {} ({})", what, l.name, detail));
}

void Resolver::Impl::fail_later(uint64_t id, Status status, std::string reason) {
  defer([this, id, status, reason = std::move(reason)] { finish(id, failed(status, reason)); });
}

void Resolver::Impl::finish(uint64_t id, NextHops result) {
  auto it = lookups_.find(id);
  if (it == lookups_.end()) return;
  it->second->state = LookupState::done;
  auto cb = std::move(it->second->cb);
  lookups_.erase(it);
  cb(std::move(result));  // may destroy *this: nothing after this line
}

// ---- client-name state machine -------------------------------------------------------------

Resolver::Impl::ClientLookup* Resolver::Impl::find_client(uint64_t id) {
  auto it = client_lookups_.find(id);
  return it == client_lookups_.end() ? nullptr : it->second.get();
}

void Resolver::Impl::resolve_client_name(const std::string& ip, ClientNameCallback cb) {
  assert(std::this_thread::get_id() == loop_thread_);
  if (shutting_down_) return cb(client_name(Status::cancelled, "", "resolver shut down"));
  auto l = std::make_unique<ClientLookup>();
  l->id = next_id_++;
  l->cb = std::move(cb);
  uint64_t id = l->id;
  auto client = detail::canonical_address(ip);
  auto reverse = client ? reverse_name(client->ip) : std::nullopt;
  if (client) l->client = *client;
  if (reverse) l->reverse = *reverse;
  client_lookups_.emplace(id, std::move(l));
  if (!reverse) {
    std::string why = fmt::format("not an IP address: \"{}\"", ip);
    return defer([this, id, why = std::move(why)] { finish_client(id, Status::permanent, "", why); });
  }
  lookup_record(*reverse, RecordType::ptr, [this, id](const AnswerPtr& a) { on_ptr_answer(id, *a); });
}

void Resolver::Impl::on_ptr_answer(uint64_t id, const RecordAnswer& answer) {
  ClientLookup* l = find_client(id);
  if (!l) return;
  switch (answer.kind) {
    case AnswerKind::ok:
      if (answer.names.empty())
        return finish_client(id, Status::permanent, "", "PTR record names no valid host name");
      l->names.assign(
          answer.names.begin(),
          answer.names.begin() + static_cast<long>(std::min(answer.names.size(), options_.max_ptr_names)));
      return check_next_name(*l);
    case AnswerKind::nodata:
      return finish_client(id, Status::permanent, "", "no PTR record");
    case AnswerKind::nxdomain:
      return finish_client(id, Status::permanent, "", "no PTR record (NXDOMAIN)");
    default:
      return finish_client(id, status_of(answer.kind), "",
                           fmt::format("PTR lookup for {} failed: {}", l->reverse, answer.reason));
  }
}

void Resolver::Impl::check_next_name(ClientLookup& l) {
  if (l.next >= l.names.size())
    return finish_client(l.id, l.temporary ? Status::temporary : Status::permanent, "", l.reasons);
  RecordType type = l.client.family == Family::ipv4 ? RecordType::a : RecordType::aaaa;
  lookup_record(l.names[l.next], type, [this, id = l.id](const AnswerPtr& a) { on_forward_answer(id, *a); });
}

void Resolver::Impl::on_forward_answer(uint64_t id, const RecordAnswer& answer) {
  ClientLookup* l = find_client(id);
  if (!l) return;
  const std::string& name = l->names[l->next];
  std::string why;
  switch (answer.kind) {
    case AnswerKind::ok:
      if (std::find(answer.addresses.begin(), answer.addresses.end(), l->client) != answer.addresses.end())
        return finish_client(id, Status::ok, name, "");
      [[fallthrough]];
    case AnswerKind::nodata:
    case AnswerKind::nxdomain:
    case AnswerKind::permanent:
      why = fmt::format("name '{}' does not resolve to {}", name, l->client.ip);
      break;
    case AnswerKind::cancelled:
      return finish_client(id, Status::cancelled, "", "resolver shut down");
    case AnswerKind::temporary:
      l->temporary = true;
      why = fmt::format("name '{}': {} lookup failed: {}", name,
                        l->client.family == Family::ipv4 ? "A" : "AAAA", answer.reason);
      break;
  }
  l->reasons += (l->reasons.empty() ? "" : "; ") + why;
  ++l->next;
  check_next_name(*l);
}

void Resolver::Impl::finish_client(uint64_t id, Status status, std::string name, std::string reason) {
  auto it = client_lookups_.find(id);
  if (it == client_lookups_.end()) return;
  auto cb = std::move(it->second->cb);
  client_lookups_.erase(it);
  cb(client_name(status, std::move(name), std::move(reason)));  // may destroy *this
}

// ---- public face ----------------------------------------------------------------------------

Result<std::unique_ptr<Resolver>> Resolver::create(uv_loop_s* loop, Options options) {
  auto impl = std::make_unique<Impl>(loop, std::move(options));
  if (auto r = impl->init(); !r) return r.error();
  return std::make_unique<Resolver>(std::move(impl));
}

Resolver::Resolver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Resolver::~Resolver() {
  impl_->shutdown();
}  // callbacks run while the Impl is still whole

void Resolver::resolve_next_hops(const std::string& domain, NextHopsCallback cb) {
  impl_->resolve_next_hops(domain, std::move(cb));
}

void Resolver::resolve_host(const std::string& host, uint16_t port, NextHopsCallback cb) {
  impl_->resolve_hosts({HostPort{host, port}}, std::move(cb));
}

void Resolver::resolve_hosts(const std::vector<HostPort>& hosts, NextHopsCallback cb) {
  impl_->resolve_hosts(hosts, std::move(cb));
}

void Resolver::resolve_client_name(const std::string& ip, ClientNameCallback cb) {
  impl_->resolve_client_name(ip, std::move(cb));
}

size_t Resolver::in_flight() const {
  return impl_->in_flight();
}

}  // namespace spoold::dns
