// daemon/delivery.h — the delivery engine: per-next-hop destinations, each with a queue of message
// parts and a pool of SMTP sessions, under the global and per-destination session limits and a
// per-destination rate limit (token bucket).
// Rule: the engine only carries parts and reports per-recipient outcomes through PartDone; it never
// touches the spool (the scheduler records outcomes durably). Everything runs on the loop thread.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/uv_handle.h"
#include "config/config.h"
#include "daemon/address_health.h"
#include "daemon/attempt.h"
#include "daemon/mx_site.h"
#include "daemon/router.h"
#include "daemon/slot_broker.h"
#include "dns/dns.h"
#include "smtp/smtp.h"

namespace spoold::daemon {

// One message's recipients for one next hop. The engine owns it until PartDone.
struct Part {
  std::string qid;
  std::string sender;
  std::vector<std::string> recipients;  // addresses, in the order of `indices`
  std::vector<size_t> indices;          // positions in the queue entry
  std::string body_path;                // the stored message
  std::uint64_t body_offset = 0;
  std::uint64_t size = 0;
  bool eight_bit = false;
  std::uint64_t longest_line = 0;                  // 0 = unknown: the session scans the body before MAIL
  std::string missing_date, missing_message_id;    // header values to add, "" = present
  std::string dsn_ret, dsn_envid;                  // the entry's RFC 3461 requests (smtp::Transaction)
  std::vector<std::string> dsn_notify, dsn_orcpt;  // per recipient, in the order of `indices`
  HopKey key;
  config::Rewrite rewrite;      // the global and the route's; a relay server's applies on top
  AttemptLog attempt;           // connection-level failures of this part in this attempt
  std::uint64_t failed_on = 0;  // the connection whose failure it has counted already
  int talks = 0;                // tries on one session after a 4xx so far (talk_attempts)
  std::uint64_t token = 0;      // the caller's handle, returned in PartDone
};

struct RecipientResult {
  size_t index = 0;  // position in the queue entry
  smtp::Outcome outcome;
  std::string relay = "none";  // "HOST[IP]:PORT" or "none"
  bool attempted = true;       // false: never tried (shutdown); the entry is left as it was
  // With attempted == false: every server was skipped for recent failures; the entry is due again
  // in this many seconds in its tier (no attempt counted, no tier move), the log line says why.
  std::int64_t postpone_s = 0;
};

using PartDone = std::function<void(std::uint64_t token, std::vector<RecipientResult> results)>;

struct DestinationStats {
  std::string hop;
  size_t sessions = 0;
  size_t queued = 0;
};

class DeliveryEngine {
 public:
  DeliveryEngine(uv_loop_t* loop, std::shared_ptr<const config::Config> config, dns::Resolver& resolver,
                 PartDone done);
  ~DeliveryEngine();
  DeliveryEngine(const DeliveryEngine&) = delete;
  DeliveryEngine& operator=(const DeliveryEngine&) = delete;

  void submit(Part part);
  // Config reload: new mail goes by the new settings; destinations that are busy finish what they
  // hold under the configuration they were made with (each keeps a snapshot), then are forgotten.
  void reconfigure(std::shared_ptr<const config::Config> config);
  // Graceful stop: no new sessions; queued parts are failed as temporary ("shutting down"); idle
  // sessions QUIT; running transactions finish. `drained` runs when no session is left.
  void shutdown(std::function<void()> drained);
  // Hard stop after the grace period: abort every session (their parts end temporary).
  void abort_all();
  // The message's lock was lost (another daemon may own it now): its queued parts end not
  // attempted, and a session carrying it is cut before its final dot. After the dot the server's
  // verdict is awaited (the outcome cannot be recorded then; at-least-once allows the repeat).
  void withdraw(std::uint64_t token);
  bool withdrawn(std::uint64_t token) const { return withdrawn_.count(token) > 0; }
  void forget_withdrawn(std::uint64_t token) { withdrawn_.erase(token); }

  size_t sessions() const { return sessions_; }
  size_t queued() const;
  std::vector<DestinationStats> stats() const;

  class Destination;
  class Conn;

 private:
  friend class Destination;
  void pump_waiting();
  void session_closed();
  bool reclaim_idle(Destination* except);
  void maybe_drained();
  void collect_idle();
  void collect_retired();
  // The MX site of that name, shared by every destination (and retired one) that names it.
  std::shared_ptr<MxSite> site(const std::string& name);

  uv_loop_t* loop_;
  std::shared_ptr<const config::Config> config_;
  static constexpr std::string_view kRetiredPrefix = "retired#";
  std::uint64_t retired_ = 0;
  std::set<std::uint64_t> withdrawn_;  // messages whose lock was lost (withdraw())
  std::uint64_t conn_serial_ = 0;
  dns::Resolver& resolver_;
  PartDone done_;
  // Sessions counted against delivery.max_sessions (closing ones are not), the idle ones, and the
  // destinations that wait for a slot. Before dests_: their connections give slots back as they die.
  SlotBroker slots_;
  std::map<std::string, std::unique_ptr<Destination>> dests_;
  std::map<std::string, std::weak_ptr<MxSite>> sites_;  // kept alive by destinations and connections
  size_t sessions_ = 0;  // every open session, closing ones included (stop waits for these)
  std::unique_ptr<uv::Timer> collect_timer_;  // forgets destinations unused for a while
  std::unique_ptr<uv::Timer> retire_timer_;   // forgets retired destinations once they are empty
  bool stopping_ = false;
  std::function<void()> drained_;
  // Servers ("ip|port") that failed recently, skipped by every destination for a while.
  AddressHealth health_;
};

}  // namespace spoold::daemon
