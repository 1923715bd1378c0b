// daemon/destination.h — one next hop of the delivery engine (an MX domain, a static host list or
// a relay group): its queue of message parts, its pool of connections (connection.h), its next-hop
// addresses and their use in the current attempt, its rate limit and a relay group's counts.
// Rules: a part goes to the servers of its next hop in order, each at most `connect_attempts`
// times per attempt (attempt.h); a failure without a verdict sends it to the next address
// (classify.h), anything else is final for this attempt; a destination earns each further session
// with an answered transaction (slow start). Everything runs on the loop thread.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/connection.h"
#include "daemon/delivery.h"
#include "daemon/relay_quota.h"
#include "daemon/token_bucket.h"

namespace spoold::daemon {

class DeliveryEngine::Destination : public SlotBroker::Waiter {
 public:
  // A destination keeps the configuration it was made under (its relay group, limits and timeouts)
  // for as long as it lives; a reload retires it and new mail goes to a new one.
  Destination(DeliveryEngine& eng, HopKey key)
      : eng_(eng),
        cfg_(eng.config_),
        key_(std::move(key)),
        bucket_(key_.policy.rate_limit.value_or(cfg_->delivery.rate_limit)),
        rate_timer_(eng.loop_) {
    if (key_.kind == config::RouteKind::relay)
      if (const auto* g = cfg_->relay(key_.name)) quota_ = RelayQuota(*g);
  }
  ~Destination();
  Destination(const Destination&) = delete;
  Destination& operator=(const Destination&) = delete;

  void enqueue(Part p);

  size_t queued() const { return queue_.size(); }
  size_t sessions() const { return conns_.size(); }
  const HopKey& key() const { return key_; }
  bool waiting() const override { return !queue_.empty(); }
  bool blocked() const override { return blocked_ && !queue_.empty(); }
  bool empty() const { return queue_.empty() && conns_.empty() && !resolving_; }

  void pump() override;

  void quit_idle();

  Clock::time_point last_active() const { return last_active_; }

  void withdraw(std::uint64_t token);

  bool carries_withdrawn(const Conn& c) const;

  // The stop grace period is over: a busy session is cut now (its transaction reports every open
  // recipient temporary, flagged as a possible duplicate after the final dot); an idle one QUITs.
  void abort_all();

 private:
  // A hostile domain must not point delivery at this host's own services (or link-local and
  // multicast addresses): such addresses are dropped from an MX answer unless a route names the
  // domain. Returns the dropped addresses for the log, "" when none.
  static std::string drop_restricted(dns::NextHops& h);

  void resolve();

  bool address_skipped(const std::string& key) const;

  int connect_attempts() const { return cfg_->delivery.connect_attempts; }

  // The route's policy where it sets one, else delivery's.
  config::TlsPolicy tls_policy() const { return key_.policy.tls.value_or(cfg_->delivery.tls); }
  size_t max_sessions() const {
    return static_cast<size_t>(
        key_.policy.max_sessions.value_or(cfg_->delivery.max_sessions_per_destination));
  }

  // The MX site this destination belongs to now (set once its next hops are known): by MX, the
  // set of MX hosts; a host list or relay group is a site of its own. max_sessions() holds for
  // the site's connections together.
  void join_site();
  bool site_room() const { return !site_ || site_->sessions < max_sessions(); }
  void wait_for_site();
  void leave_site_line();
  // Turns for the destinations in s's line while it has room (a seat was given back).
  static void give_turns(MxSite& s);
  // A destination in s's line, other than `except`, with a part an idle connection to `share`
  // could carry now; taken out of the line.
  static Destination* site_taker(MxSite& s, const std::string& share, const Destination* except);
  // This destination has a part for `share` that an idle connection to it could carry now.
  bool takes(const std::string& share) const;
  // Another destination in the line of c's site could use c now.
  bool site_wants(const Conn& c) const;

  // Some queued part may still go to this server in its current attempt.
  bool wanted_at(const std::string& key) const;

  // An open (or opening) connection to this server could still carry mail.
  bool live_conn_to(const std::string& key) const;

  bool ready_conn_to(const std::string& key, const Conn* except) const;

  // The part can still be delivered in this attempt: some server it has not used up is open to
  // it now or can be connected to.
  bool can_go(const Part& p);

  bool relay_server(const dns::NextHop&) const { return key_.kind == config::RouteKind::relay; }

  bool server_usable(size_t i) { return quota_.can_take(i, Clock::now()); }

  // The relay server's setting when it has one, else delivery's.
  int messages_per_connection(const Conn& c) const;
  int talk_attempts(const Conn& c) const;
  const config::RelayServer* relay_server_of(const Conn& c) const;

  struct Pick {
    const dns::NextHop* hop = nullptr;
    const dns::Address* addr = nullptr;
  };

  // The next address to open a connection to: hops in order (a relay group rotates for
  // round_robin), addresses in order, skipping recently failed ones and retired relay servers.
  std::optional<Pick> pick();

  // Parts that no server can take in this attempt any more are reported now: deferred (or
  // bounced) with what their servers said when some server was tried, else "not tried" and
  // postponed in their tier until the skipped servers are due again.
  void settle_stuck();

  // The attempt's verdict, but never permanent while some server of the next hop was only skipped
  // (it failed temporarily for other mail and may take this message later).
  smtp::Outcome final_verdict(const Part& p) const;

  void report_stuck(const Part& p);

  // The route's fallback_relay takes a part this next hop could not deliver in this attempt
  // without any verdict on its recipients (`why`: what happened here): the part goes to that relay
  // group's destination, with a fresh attempt there. False when the route has none (or the
  // engine stops): the caller reports the part as it would have.
  bool fall_back(const Part& p, const std::string& why);

  // "not tried: 127.0.0.6:25 failed 12 s ago" for the servers skipped now, and the seconds until
  // the first of them is tried again; nullopt when none is skipped.
  std::optional<std::pair<std::string, std::int64_t>> skipped_reason() const;

  void open_connections();

  smtp::SessionOptions session_options(const dns::NextHop& hop, const dns::Address& addr);

  // The same server again, without STARTTLS (its hop and address are looked up again: the hops
  // may have been re-resolved meanwhile; a server no longer among them is not contacted).
  void open_plain(const std::string& ip, int port);

  void open(const dns::NextHop& hop, const dns::Address& addr, bool plaintext = false);

  std::string share_key(const dns::NextHop& hop, const dns::Address& addr) const;

  // A connection with nothing to do here goes, if it can, to a destination that waits for a
  // session slot and delivers to the same server (fan-out to many domains behind a few MX hosts:
  // no new connection per domain). Only from session callbacks, never while pump() walks conns_.
  void idle_or_hand_over(Conn& c);
  void hand_over(Conn& c, Destination& taker);

 public:
  // True when this destination waits for a slot and has a part for the server `share`.
  bool wants(const std::string& share) const override;

  // The server keys this destination can deliver to (for the broker's index of waiting ones).
  std::vector<std::string> servers() const override;

  // Takes over an idle connection from another destination and uses it at once.
  void adopt(std::unique_ptr<Conn> c);

 private:
  // A connection with nothing to do: kept for idle_timeout, unless another destination is waiting
  // for a session slot — then it makes room at once.
  void idle(Conn& c);

  // A connection lives at most max_connection_time (Mail::Spool's DoS bug: a tarpit that answers
  // every command just inside its timeout would otherwise hold a session for hours): then an idle
  // one quits, a connecting or busy one is cut and its parts go back to the queue — except after
  // the final dot, where the server's verdict is awaited (bounded by the dot timeout) first.
  void arm_life(Conn& c, uint64_t ms);

  // Also the cut of a connection carrying a message whose lock was lost (withdraw()).
  void on_life_over(Conn& c);

  void arm_idle(Conn& c);

  void begin_quit(Conn& c);

 public:
  // Quits one idle connection of this destination; false when it has none.
  bool quit_one_idle();

 private:
  // An idle connection takes the first queued part that has not already failed at its address.
  void assign(Conn& c);

  // The session just sent a final dot and can carry another message right behind it, so the
  // connection does not sit idle for the round trip to the dot's reply (W4: each of the sessions
  // waited for the 250 and then for the 354). Parts that connecting sessions are about to take
  // are left to them.
  void offer_next(Conn& c);

  // A message behind the dot counts as started now: it must fit the limits that the running one
  // still leaves room for (max_messages_per_connection, max_connection_time, the relay server's
  // message counts, which grow when a transaction ends).
  bool room_behind_dot(const Conn& c);

  // The first queued part not yet failed at c's address, if the rate limit allows one now. Behind
  // a dot only parts whose body facts are known from pickup (the session cannot scan there).
  std::optional<Part> take_part(const Conn& c, bool behind_dot);

  // Submits the part on c: as its transaction, or behind the running one's dot.
  void send_part(Conn& c, Part part);

  bool take_token();

  // Session callbacks come in submission order: the running part first, then the one behind it.
  // A part refused behind the dot (the session's conditions changed) leaves the running one be.
  void on_transaction(Conn* c, std::uint64_t id, const smtp::TransactionResult& r);

  // The part that result `id` answers, taken off the connection (the one behind the dot, if any,
  // becomes the running one).
  std::optional<Part> take_answered(Conn& c, std::uint64_t id);

  // A transaction's recipients: those with a verdict are done; those without one (a failure
  // before the server judged them) go on to another address in this attempt, as `retry`.
  struct Sorted {
    std::vector<RecipientResult> done;
    Part retry;
    bool answered = false;  // the server judged some recipient (slow start counts it)
  };
  Sorted sort_results(const Conn& c, const Part& part, const smtp::TransactionResult& r);

  void after_transaction(Conn& c);

  // Takes the recipients of `done` that the server refused with a 4xx (worth_talking_again()) into
  // c.talks when c's talk_attempts allow another try of them on this session.
  void keep_for_talk(Conn& c, const Part& part, std::vector<RecipientResult>& done);
  // The pause after a refused transaction is over: the first refused recipients again on this
  // session, or the verdicts of all of them reported when the session can no longer carry them.
  void talk_again(Conn& c);
  void give_up_talk(Conn& c);

  // The relay quota's message of this transaction ends: counted when the server judged it.
  void settle_quota(Conn& c, bool answered);

  void on_closed(Conn* c, const smtp::Outcome& why);

  // A server failed before giving a verdict: skipped for a while after connect_attempts such
  // failures in a row, and used up for every part waiting here in this attempt (they were all
  // waiting for it) unless another connection to it works (then it only refused or lost one
  // connection more: the working ones go on).
  void record_failure(const Conn& c, smtp::Outcome why, bool never_ready);

  // How long a failing server is skipped: half the shortest retry delay at most, so that a retry
  // that comes due (due times are whole seconds) finds the server tried again, not remembered.
  Clock::duration bad_server_memory() const;

  void grow_concurrency();

  void fail_queue(const smtp::Outcome& why, bool attempted = true, const std::string& relay = "none");

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
  uv::Timer rate_timer_;
  RelayQuota quota_;  // relay destinations: the message counts of each server
  std::shared_ptr<MxSite> site_;
  bool site_waits_ = false;  // in site_'s line
  size_t rr_next_ = 0;
  unsigned serial_ = 0;
  Clock::time_point last_active_ = Clock::now();  // last part queued here (for collect_idle())
};

}  // namespace spoold::daemon
