// dns/answer.cpp — c-ares status + raw answer → RecordAnswer. See answer.h.
#include "dns/answer.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <array>
#include <memory>
#include <type_traits>

namespace spoold::dns::detail {

std::string_view to_string(RecordType t) {
  switch (t) {
    case RecordType::a:
      return "A";
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
  }
  return malformed();
}

namespace {

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

}  // namespace

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
    uint32_t ttl = read32(abuf + pos + 4);
    if (ttl & 0x80000000u) ttl = 0;  // RFC 2181 §8: a TTL with the top bit set is read as zero
    long rdlen = read16(abuf + pos + 8);
    pos += 10 + rdlen;
    if (pos > len) return std::nullopt;
    best = best ? std::min(*best, ttl) : ttl;
  }
  return best;
}

}  // namespace spoold::dns::detail
