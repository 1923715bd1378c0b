// fuzz/dns_answer_fuzz.cpp — libFuzzer target for what a DNS server sends: one answer packet
// parsed as MX, A, AAAA and PTR (dns/answer.cpp reads PTR records and CNAME chains itself).
// Rule: no input may crash, read out of bounds or loop; a PTR answer's names are valid host
// names, lower-case and distinct; an ok answer's addresses are IP literals.
#include <ares.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "dns/answer.h"
#include "dns/names.h"

using namespace spoold::dns;
using namespace spoold::dns::detail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* buf = reinterpret_cast<const unsigned char*>(data);
  int len = static_cast<int>(size > 65535 ? 65535 : size);
  for (RecordType t : {RecordType::mx, RecordType::a, RecordType::aaaa, RecordType::ptr}) {
    RecordAnswer r = parse_answer(t, ARES_SUCCESS, buf, len);
    if (r.kind != AnswerKind::ok) continue;
    if (t == RecordType::ptr) {
      std::set<std::string> seen;
      for (const auto& n : r.names) {
        if (!valid_host_name(n) || normalize_name(n) != n) std::abort();
        if (!seen.insert(n).second) std::abort();
      }
    }
    // Each address an IP literal (an AAAA record may hold an IPv4-mapped one: kept as written,
    // dns::restricted_address() judges it by its IPv4 address).
    for (const auto& a : r.addresses)
      if (!canonical_address(a.ip)) std::abort();
  }
  (void)min_answer_ttl(buf, len);
  return 0;
}
