// dns/answer.h — one DNS answer (MX, A or AAAA) turned into plain data (internal to dns/).
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

enum class RecordType { a = 1, mx = 15, aaaa = 28 };
std::string_view to_string(RecordType t);

// nodata: the name exists, no record of this type; nxdomain: the name does not exist.
enum class AnswerKind { ok, nodata, nxdomain, temporary, permanent, cancelled };
std::string_view to_string(AnswerKind k);

struct RecordAnswer {
  AnswerKind kind = AnswerKind::ok;
  std::string reason;              // short, e.g. "SERVFAIL", "timeout", "malformed answer"
  std::vector<MxRecord> mx;        // kind == ok && type == mx
  std::vector<Address> addresses;  // kind == ok && type == a / aaaa
  uint32_t ttl = 0;                // smallest TTL of the answer records used (ok only)
};

RecordAnswer parse_answer(RecordType type, int ares_status, const unsigned char* abuf, int alen);

// Smallest TTL over the answer section's records (any type, CNAMEs included); nullopt when
// the packet is malformed or has no answer records.
std::optional<uint32_t> min_answer_ttl(const unsigned char* abuf, int alen);

}  // namespace spoold::dns::detail
