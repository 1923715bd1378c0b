// dns/answer.cpp — c-ares status + raw answer → RecordAnswer. See answer.h.
#include "dns/answer.h"

#include <ares.h>
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>

#include <algorithm>
#include <array>
#include <memory>
#include <type_traits>

#include "common/ascii.h"
#include "dns/names.h"

namespace spoold::dns::detail {

std::string_view to_string(RecordType t) {
  switch (t) {
    case RecordType::a:
      return "A";
    case RecordType::ptr:
      return "PTR";
    case RecordType::mx:
      return "MX";
    case RecordType::aaaa:
      return "AAAA";
  }
  return "?";
}

std::string_view to_string(AnswerKind k) {
  switch (k) {
    case AnswerKind::ok:
      return "ok";
    case AnswerKind::nodata:
      return "nodata";
    case AnswerKind::nxdomain:
      return "nxdomain";
    case AnswerKind::temporary:
      return "temporary";
    case AnswerKind::permanent:
      return "permanent";
    case AnswerKind::cancelled:
      return "cancelled";
  }
  return "?";
}

namespace {

RecordAnswer failure(AnswerKind kind, std::string reason) {
  RecordAnswer a;
  a.kind = kind;
  a.reason = std::move(reason);
  return a;
}

// Every status ares_query can report, other than success.
RecordAnswer from_status(int status) {
  switch (status) {
    case ARES_ENODATA:
      return failure(AnswerKind::nodata, "no records of that type (NODATA)");
    case ARES_ENOTFOUND:
      return failure(AnswerKind::nxdomain, "name does not exist (NXDOMAIN)");
    case ARES_ESERVFAIL:
      return failure(AnswerKind::temporary, "server failure (SERVFAIL)");
    case ARES_EREFUSED:
      return failure(AnswerKind::temporary, "query refused (REFUSED)");
    case ARES_ETIMEOUT:
      return failure(AnswerKind::temporary, "timeout");
    // c-ares 1.18 reports a query whose every server said SERVFAIL/REFUSED (or sent ICMP
    // port-unreachable) as ECONNREFUSED: it tries the other servers first, which we want.
    case ARES_ECONNREFUSED:
      return failure(AnswerKind::temporary, "no server answered (SERVFAIL, REFUSED or connection refused)");
    case ARES_EBADNAME:
      return failure(AnswerKind::permanent, "invalid name");
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED:
      return failure(AnswerKind::cancelled, "resolver shut down");
    default:
      return failure(AnswerKind::temporary, ares_strerror(status));
  }
}

// Skips one possibly compressed name starting at `pos`; returns the offset after it or -1.
long skip_name(const unsigned char* buf, long len, long pos) {
  for (int labels = 0; labels < 128; ++labels) {
    if (pos >= len) return -1;
    unsigned c = buf[pos];
    if (c == 0) return pos + 1;
    if ((c & 0xC0) == 0xC0) return pos + 2 <= len ? pos + 2 : -1;  // pointer ends the name here
    if ((c & 0xC0) != 0) return -1;                                // reserved label types
    pos += 1 + c;
  }
  return -1;
}

unsigned read16(const unsigned char* p) {
  return (unsigned{p[0]} << 8) | p[1];
}
uint32_t read32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

RecordAnswer malformed() {
  return failure(AnswerKind::temporary, "malformed answer");
}

uint32_t clamp_ttl(int ttl) {
  return ttl < 0 ? 0u : static_cast<uint32_t>(ttl);
}

RecordAnswer parse_mx(const unsigned char* abuf, int alen) {
  ares_mx_reply* head = nullptr;
  int rc = ares_parse_mx_reply(abuf, alen, &head);
  std::unique_ptr<ares_mx_reply, decltype(&ares_free_data)> owned(head, &ares_free_data);
  if (rc == ARES_ENODATA) return from_status(ARES_ENODATA);
  if (rc != ARES_SUCCESS) return malformed();
  RecordAnswer out;
  for (auto* r = head; r; r = r->next) out.mx.push_back(MxRecord{r->host ? r->host : "", r->priority});
  if (out.mx.empty()) return from_status(ARES_ENODATA);
  out.ttl = min_answer_ttl(abuf, alen).value_or(0);
  return out;
}

template <class Ttl, class ParseFn>
RecordAnswer parse_addresses(const unsigned char* abuf, int alen, Family family, ParseFn parse) {
  std::array<Ttl, 64> ttls{};
  int n = static_cast<int>(ttls.size());
  hostent* host = nullptr;
  int rc = parse(abuf, alen, &host, ttls.data(), &n);
  if (host) ares_free_hostent(host);
  if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && n == 0)) return from_status(ARES_ENODATA);
  if (rc != ARES_SUCCESS) return malformed();
  RecordAnswer out;
  out.ttl = UINT32_MAX;
  for (int i = 0; i < n; ++i) {
    char text[INET6_ADDRSTRLEN] = {};
    int af = family == Family::ipv4 ? AF_INET : AF_INET6;
    const void* raw = nullptr;
    if constexpr (std::is_same_v<Ttl, ares_addrttl>)
      raw = &ttls[i].ipaddr;
    else
      raw = &ttls[i].ip6addr;
    if (!inet_ntop(af, raw, text, sizeof text)) continue;
    Address addr{text, family};
    if (std::find(out.addresses.begin(), out.addresses.end(), addr) == out.addresses.end())
      out.addresses.push_back(std::move(addr));
    out.ttl = std::min(out.ttl, clamp_ttl(ttls[i].ttl));
  }
  if (out.addresses.empty()) return malformed();
  return out;
}

constexpr unsigned kTypeCname = 5;
constexpr unsigned kTypePtr = 12;
constexpr unsigned kClassIn = 1;

uint32_t record_ttl(const unsigned char* p) {
  uint32_t ttl = read32(p);
  return ttl & 0x80000000u ? 0 : ttl;  // RFC 2181 §8: a TTL with the top bit set is read as zero
}

// Reads the possibly compressed name at `pos` into `out` in presentation form: labels joined by
// '.', A-Z folded, '.', '\\' and bytes outside 0x21..0x7e escaped, so two names are equal exactly
// when their texts are. Returns the offset after the name's bytes at `pos`, or -1 when the name
// runs out of the packet, loops or is longer than 255 octets (RFC 1035 §3.1).
long read_name(const unsigned char* buf, long len, long pos, std::string& out) {
  out.clear();
  long end = -1;  // where the name ends at `pos`: after its first pointer, or after the root label
  long wire = 0;
  for (int jumps = 0; jumps < 128;) {
    if (pos >= len) return -1;
    unsigned c = buf[pos];
    if (c == 0) {
      if (++wire > 255) return -1;
      return end >= 0 ? end : pos + 1;
    }
    if ((c & 0xC0) == 0xC0) {
      if (pos + 2 > len) return -1;
      if (end < 0) end = pos + 2;
      pos = static_cast<long>(((c & 0x3F) << 8) | buf[pos + 1]);
      ++jumps;
      continue;
    }
    if ((c & 0xC0) != 0 || pos + 1 + static_cast<long>(c) > len) return -1;
    wire += 1 + c;
    if (wire > 255) return -1;
    if (!out.empty()) out += '.';
    for (unsigned i = 1; i <= c; ++i) {
      unsigned char b = buf[pos + i];
      if (b == '.' || b == '\\') {
        out += '\\';
        out += static_cast<char>(b);
      } else if (b <= 0x20 || b >= 0x7f) {
        out += fmt::format("\\{:03}", b);
      } else {
        out += ascii_lower(static_cast<char>(b));
      }
    }
    pos += 1 + c;
  }
  return -1;  // a pointer loop
}

RecordAnswer parse_ptr(const unsigned char* abuf, int alen) {
  const long len = alen;
  if (len < 12 || read16(abuf + 4) != 1) return malformed();  // we ask exactly one question
  unsigned ancount = read16(abuf + 6);
  std::string name;
  long pos = read_name(abuf, len, 12, name);
  if (pos < 0 || pos + 4 > len) return malformed();
  pos += 4;                               // QTYPE, QCLASS
  std::vector<std::string> owners{name};  // the question name, then the CNAME targets it leads to
  RecordAnswer out;
  out.ttl = UINT32_MAX;
  bool any_ptr = false;
  for (unsigned i = 0; i < ancount; ++i) {
    pos = read_name(abuf, len, pos, name);
    if (pos < 0 || pos + 10 > len) return malformed();
    unsigned type = read16(abuf + pos), klass = read16(abuf + pos + 2);
    uint32_t ttl = record_ttl(abuf + pos + 4);
    long rdata = pos + 10, rdend = rdata + static_cast<long>(read16(abuf + pos + 8));
    if (rdend > len) return malformed();
    pos = rdend;
    bool ours = std::find(owners.begin(), owners.end(), name) != owners.end();
    if (klass != kClassIn || !ours || (type != kTypePtr && type != kTypeCname)) continue;
    std::string target;
    long after = read_name(abuf, len, rdata, target);
    if (after < 0 || after > rdend) return malformed();
    out.ttl = std::min(out.ttl, ttl);
    if (type == kTypeCname) {
      if (owners.size() < 16) owners.push_back(std::move(target));  // a chain, not a fan-out
      continue;
    }
    any_ptr = true;
    if (valid_host_name(target) && std::find(out.names.begin(), out.names.end(), target) == out.names.end())
      out.names.push_back(std::move(target));
  }
  if (!any_ptr) return from_status(ARES_ENODATA);
  return out;
}

}  // namespace

RecordAnswer parse_answer(RecordType type, int ares_status, const unsigned char* abuf, int alen) {
  if (ares_status != ARES_SUCCESS) return from_status(ares_status);
  if (!abuf || alen <= 0) return malformed();
  switch (type) {
    case RecordType::mx:
      return parse_mx(abuf, alen);
    case RecordType::a:
      return parse_addresses<ares_addrttl>(abuf, alen, Family::ipv4, &ares_parse_a_reply);
    case RecordType::aaaa:
      return parse_addresses<ares_addr6ttl>(abuf, alen, Family::ipv6, &ares_parse_aaaa_reply);
    case RecordType::ptr:
      return parse_ptr(abuf, alen);
  }
  return malformed();
}

std::optional<uint32_t> min_answer_ttl(const unsigned char* abuf, int alen) {
  const long len = alen;
  if (!abuf || len < 12) return std::nullopt;
  unsigned qdcount = read16(abuf + 4), ancount = read16(abuf + 6);
  long pos = 12;
  for (unsigned i = 0; i < qdcount; ++i) {
    pos = skip_name(abuf, len, pos);
    if (pos < 0 || pos + 4 > len) return std::nullopt;
    pos += 4;  // QTYPE, QCLASS
  }
  std::optional<uint32_t> best;
  for (unsigned i = 0; i < ancount; ++i) {
    pos = skip_name(abuf, len, pos);
    if (pos < 0 || pos + 10 > len) return std::nullopt;
    uint32_t ttl = record_ttl(abuf + pos + 4);
    long rdlen = read16(abuf + pos + 8);
    pos += 10 + rdlen;
    if (pos > len) return std::nullopt;
    best = best ? std::min(*best, ttl) : ttl;
  }
  return best;
}

}  // namespace spoold::dns::detail
