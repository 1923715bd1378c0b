// dns/answer.h — one DNS answer (MX, A, AAAA or PTR) turned into plain data (internal to dns/).
// Pure: bytes and a c-ares status in, a RecordAnswer out; no sockets, no loop. Rule: every
// c-ares status maps to exactly one AnswerKind, and a malformed answer is temporary, never a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dns/dns.h"

namespace spoold::dns::detail {

enum class RecordType { a = 1, ptr = 12, mx = 15, aaaa = 28 };
std::string_view to_string(RecordType t);

// nodata: the name exists, no record of this type; nxdomain: the name does not exist.
enum class AnswerKind { ok, nodata, nxdomain, temporary, permanent, cancelled };
std::string_view to_string(AnswerKind k);

struct RecordAnswer {
  AnswerKind kind = AnswerKind::ok;
  std::string reason;              // short, e.g. "SERVFAIL", "timeout", "malformed answer"
  std::vector<MxRecord> mx;        // kind == ok && type == mx
  std::vector<Address> addresses;  // kind == ok && type == a / aaaa
  // kind == ok && type == ptr: the distinct PTR names that are valid host names (names.h),
  // lower-case, in answer order. May be empty: PTR records whose every name was junk.
  std::vector<std::string> names;
  uint32_t ttl = 0;  // smallest TTL of the answer records used (ok only)
};

// PTR answers are read here, not by ares_parse_ptr_reply: it would fail the whole answer for one
// bad name, where a hostile reverse zone's junk names are only skipped. PTR records count when
// their owner is the question name or a CNAME target reached from it (RFC 2317 classless
// delegation answers 4.3.2.1.in-addr.arpa with a CNAME into the delegated zone).
RecordAnswer parse_answer(RecordType type, int ares_status, const unsigned char* abuf, int alen);

// Smallest TTL over the answer section's records (any type, CNAMEs included); nullopt when
// the packet is malformed or has no answer records.
std::optional<uint32_t> min_answer_ttl(const unsigned char* abuf, int alen);

}  // namespace spoold::dns::detail
