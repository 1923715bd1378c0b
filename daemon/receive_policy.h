// daemon/receive_policy.h — what the listener decides about a client and its recipients, as pure
// functions (table-tested in tests/daemon/receive_policy_test.cpp).
// Rule: never an open relay. A client outside relay_from that has not authenticated gets
// 554 5.7.1 for every recipient except the local postmaster (RFC 5321 §4.5.1); nothing is
// accepted that the spool could not store as it was given.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "smtp/server.h"

namespace spoold::daemon {

struct RcptContext {
  bool relay_allowed = false;  // the client's address is in relay_from
  bool authenticated = false;  // AUTH succeeded in this session
  std::string hostname;        // ours: postmaster@hostname is local
};

// "postmaster", postmaster@hostname or postmaster@localhost (any case).
bool local_postmaster(std::string_view address, std::string_view hostname);

// The verdict for one RCPT. A UTF-8 address is judged like any other: the engine has already
// required SMTPUTF8 for it, and the spool stores it.
smtp::server::Verdict rcpt_policy(const RcptContext& ctx, std::string_view address);

// The address as it goes into the spool: a bare "postmaster" is qualified with our hostname.
std::string spool_address(std::string_view address, std::string_view hostname);

// The client's name for logs and the Received: field when no verified name is known, Postfix
// style: "localhost" for loopback, else "unknown".
std::string client_name(std::string_view ip);

// Whether a client's name is worth a reverse lookup: not for 127.0.0.1 and ::1, which are
// "localhost" by definition (RFC 6761) and the address most local programs use, so they wait
// for no DNS. Other loopback addresses can have names of their own (Debian's 127.0.1.1).
bool needs_name_lookup(std::string_view ip);

// How an address is shown in Received: and logs: "192.0.2.1", or "IPv6:2001:db8::1" for
// Received: (RFC 5321 §4.1.3) when `received` is set.
std::string client_ip_literal(std::string_view ip, bool received);

// The key a client's sessions are counted under for max_sessions_per_client: its IPv4 address
// (also when it arrives IPv4-mapped, ::ffff:a.b.c.d), or the /64 of an IPv6 address, since one
// IPv6 host usually holds a whole /64. A text that is no address is its own key.
std::string client_key(std::string_view ip);

// Whether a client in DATA is too slow (Postfix's smtpd_min_data_rate with per-request deadlines):
// `elapsed_ms` since the 354, `bytes` received since, against `timeout_ms` plus the time those
// bytes take at `min_rate` bytes a second. min_rate 0: never.
bool data_too_slow(std::uint64_t elapsed_ms, std::uint64_t bytes, std::uint64_t timeout_ms, int min_rate);

}  // namespace spoold::daemon
