// tests/dns/rules_test.cpp — the pure parts of dns/ on fixed inputs, no sockets: MX planning
// (order, shuffle, null MX, mail loops), address ordering, host:port parsing, reverse names,
// answer parsing of hand-built packets, and the TTL cache. Table-driven where the cases are data.
#include <ares.h>
#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <set>

#include "dns/answer.h"
#include "dns/dns.h"
#include "dns/names.h"
#include "dns/record_cache.h"

using namespace spoold::dns;
using namespace spoold::dns::detail;

namespace {

std::vector<std::string> hosts(const MxPlan& p) {
  std::vector<std::string> out;
  for (const auto& r : p.hosts) out.push_back(r.host);
  return out;
}

// Builds a DNS response: header, one question (name, type), answers of that owner name.
class Packet {
 public:
  Packet(const std::string& name, int qtype, int rcode = 0) : qtype_(qtype) {
    put16(0x1234);
    put16(0x8180 | rcode);
    put16(1);
    put16(0);  // ANCOUNT, patched by answer()
    put16(0);
    put16(0);
    put_name(name);
    put16(qtype);
    put16(1);
  }
  Packet& answer(int type, uint32_t ttl, const std::vector<unsigned char>& rdata) {
    put16(0xC00C);  // owner: the question name
    return rest_of_answer(type, ttl, rdata);
  }
  Packet& answer_for(const std::string& owner, int type, uint32_t ttl,
                     const std::vector<unsigned char>& rdata) {
    put_name(owner);
    return rest_of_answer(type, ttl, rdata);
  }
  static std::vector<unsigned char> name(const std::string& host) {
    Packet tmp;
    tmp.put_name(host);
    return tmp.bytes_;
  }
  static std::vector<unsigned char> mx(int pref, const std::string& host) {
    Packet tmp;
    tmp.put16(pref);
    tmp.put_name(host);
    return tmp.bytes_;
  }
  const unsigned char* data() const { return bytes_.data(); }
  int size() const { return static_cast<int>(bytes_.size()); }
  std::vector<unsigned char> bytes_;

 private:
  Packet() = default;
  Packet& rest_of_answer(int type, uint32_t ttl, const std::vector<unsigned char>& rdata) {
    put16(type);
    put16(1);
    put32(ttl);
    put16(static_cast<unsigned>(rdata.size()));
    bytes_.insert(bytes_.end(), rdata.begin(), rdata.end());
    ++ancount_;
    bytes_[6] = static_cast<unsigned char>(ancount_ >> 8);
    bytes_[7] = static_cast<unsigned char>(ancount_);
    return *this;
  }
  void put16(unsigned v) {
    bytes_.push_back(static_cast<unsigned char>(v >> 8));
    bytes_.push_back(static_cast<unsigned char>(v));
  }
  void put32(uint32_t v) {
    put16(v >> 16);
    put16(v & 0xFFFF);
  }
  void put_name(const std::string& name) {
    size_t start = 0;
    while (start < name.size()) {
      size_t dot = name.find('.', start);
      if (dot == std::string::npos) dot = name.size();
      bytes_.push_back(static_cast<unsigned char>(dot - start));
      bytes_.insert(bytes_.end(), name.begin() + static_cast<long>(start),
                    name.begin() + static_cast<long>(dot));
      start = dot + 1;
    }
    bytes_.push_back(0);
  }
  int qtype_ = 0;
  unsigned ancount_ = 0;
};

}  // namespace

TEST_CASE("plan_mx sorts by preference and keeps every group in place", "[dns][unit]") {
  std::mt19937 rng(1);
  MxPlan p =
      plan_mx({{"c.example.", 30}, {"a.example", 10}, {"b1.example", 20}, {"b2.example", 20}}, "", rng);
  REQUIRE(p.status == Status::ok);
  REQUIRE(p.hosts.size() == 4);
  CHECK(p.hosts[0].host == "a.example");
  CHECK(p.hosts[3].host == "c.example");  // trailing dot dropped
  std::set<std::string> middle{p.hosts[1].host, p.hosts[2].host};
  CHECK(middle == std::set<std::string>{"b1.example", "b2.example"});
}

TEST_CASE("plan_mx shuffles equal preferences (both orders occur)", "[dns][unit]") {
  std::set<std::string> firsts;
  for (unsigned seed = 0; seed < 64; ++seed) {
    std::mt19937 rng(seed);
    MxPlan p = plan_mx({{"x.example", 10}, {"y.example", 10}, {"z.example", 5}}, "", rng);
    REQUIRE(p.hosts.at(0).host == "z.example");
    firsts.insert(p.hosts.at(1).host);
  }
  CHECK(firsts == std::set<std::string>{"x.example", "y.example"});
}

TEST_CASE("plan_mx rules on fixed answers", "[dns][unit]") {
  struct Case {
    const char* what;
    std::vector<MxRecord> records;
    std::string self;
    Status status;
    std::vector<std::string> hosts;  // when ok (no equal preferences, so order is fixed)
    const char* reason;
  };
  std::vector<Case> cases = {
      {"null MX (root exchange, pref 0)", {{".", 0}}, "", Status::permanent, {}, "null MX"},
      {"null MX as c-ares spells it", {{"", 0}}, "", Status::permanent, {}, "null MX"},
      {"root mixed with a real host: root ignored",
       {{"", 0}, {"mx.example", 10}},
       "",
       Status::ok,
       {"mx.example"},
       ""},
      {"we are the only MX",
       {{"Me.Example.", 10}},
       "me.example",
       Status::permanent,
       {},
       "MX loops back to us"},
      {"we are the best MX",
       {{"me.example", 5}, {"b.example", 10}},
       "me.example",
       Status::permanent,
       {},
       "MX loops back to us"},
      {"we are in the middle: keep only better hosts",
       {{"a.example", 5}, {"me.example", 10}, {"peer.example", 10}, {"c.example", 20}},
       "me.example",
       Status::ok,
       {"a.example"},
       ""},
      {"we are the last: everything better stays",
       {{"a.example", 5}, {"b.example", 7}, {"me.example", 9}},
       "me.example",
       Status::ok,
       {"a.example", "b.example"},
       ""},
      {"not us: no loop", {{"a.example", 5}}, "mail.example", Status::ok, {"a.example"}, ""},
      {"duplicate host keeps its best preference",
       {{"a.example", 20}, {"b.example", 10}, {"A.example.", 5}},
       "",
       Status::ok,
       {"a.example", "b.example"},
       ""},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    std::mt19937 rng(7);
    MxPlan p = plan_mx(c.records, c.self, rng);
    CHECK(p.status == c.status);
    if (c.status == Status::ok) {
      CHECK(hosts(p) == c.hosts);
    } else {
      CHECK_THAT(p.reason, Catch::Contains(c.reason));
      CHECK(p.hosts.empty());
    }
  }
}

TEST_CASE("order_addresses puts the preferred family first", "[dns][unit]") {
  std::vector<Address> in = {{"127.0.0.1", Family::ipv4}, {"::1", Family::ipv6}, {"127.0.0.2", Family::ipv4}};
  std::mt19937 rng(3);
  auto ips = [](const std::vector<Address>& v) {
    std::vector<std::string> out;
    for (const auto& a : v) out.push_back(a.ip);
    return out;
  };
  CHECK(ips(order_addresses(in, AddressPreference::ipv4, rng)) ==
        std::vector<std::string>{"127.0.0.1", "127.0.0.2", "::1"});
  CHECK(ips(order_addresses(in, AddressPreference::ipv6, rng)) ==
        std::vector<std::string>{"::1", "127.0.0.1", "127.0.0.2"});
  std::set<std::vector<std::string>> seen;
  for (unsigned seed = 0; seed < 64; ++seed) {
    std::mt19937 r(seed);
    seen.insert(ips(order_addresses(in, AddressPreference::any, r)));
  }
  // any: families alternate, starting with either one; within a family DNS order is kept.
  CHECK(seen == std::set<std::vector<std::string>>{{"127.0.0.1", "::1", "127.0.0.2"},
                                                   {"::1", "127.0.0.1", "127.0.0.2"}});
}

TEST_CASE("parse_host_port", "[dns][unit]") {
  struct Case {
    const char* text;
    bool ok;
    std::string host;
    uint16_t port;
  };
  std::vector<Case> cases = {
      {"relay.example:587", true, "relay.example", 587},
      {"10.0.0.1:2525", true, "10.0.0.1", 2525},
      {"relay.example", true, "relay.example", 25},
      {"[::1]:2525", true, "::1", 2525},
      {"[::1]", true, "::1", 25},
      {"::1", true, "::1", 25},
      {"host:0", false, "", 0},
      {"host:65536", false, "", 0},
      {"host:", false, "", 0},
      {"host:25x", false, "", 0},
      {":25", false, "", 0},
      {"", false, "", 0},
      {"[::1", false, "", 0},
      {"[::1]x", false, "", 0},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto r = parse_host_port(c.text, 25);
    REQUIRE(r.ok() == c.ok);
    if (c.ok) CHECK(*r == HostPort{c.host, c.port});
  }
}

TEST_CASE("names: normalisation, validity, equality, IP literals", "[dns][unit]") {
  CHECK(normalize_name("MX.Example.COM.") == "mx.example.com");
  CHECK(valid_name("a-b_c.example"));
  CHECK_FALSE(valid_name(""));
  CHECK_FALSE(valid_name("a..b"));
  CHECK_FALSE(valid_name(".a"));
  CHECK_FALSE(valid_name("bad name.example"));
  CHECK_FALSE(
      valid_name("b\xc3\xbc"
                 "cher.example"));  // IDNs must arrive as A-labels
  CHECK(valid_name("xn--bcher-kva.example"));
  CHECK_FALSE(valid_name(std::string(64, 'a') + ".example"));
  CHECK(valid_name(std::string(63, 'a') + ".example"));
  CHECK(same_name("Mail.Example.", "mail.example"));
  CHECK_FALSE(same_name("mail.example", "mail.example.org"));
  CHECK(ip_literal_family("127.0.0.1") == Family::ipv4);
  CHECK(ip_literal_family("::1") == Family::ipv6);
  CHECK_FALSE(ip_literal_family("relay.example").has_value());
}

TEST_CASE("parse_answer maps c-ares statuses to answer kinds", "[dns][unit]") {
  std::map<int, AnswerKind> table = {
      {ARES_ENODATA, AnswerKind::nodata},       {ARES_ENOTFOUND, AnswerKind::nxdomain},
      {ARES_ESERVFAIL, AnswerKind::temporary},  {ARES_EREFUSED, AnswerKind::temporary},
      {ARES_ETIMEOUT, AnswerKind::temporary},   {ARES_ECONNREFUSED, AnswerKind::temporary},
      {ARES_EBADRESP, AnswerKind::temporary},   {ARES_EFORMERR, AnswerKind::temporary},
      {ARES_EBADNAME, AnswerKind::permanent},   {ARES_EDESTRUCTION, AnswerKind::cancelled},
      {ARES_ECANCELLED, AnswerKind::cancelled},
  };
  for (auto [status, kind] : table) {
    INFO(ares_strerror(status));
    CHECK(parse_answer(RecordType::mx, status, nullptr, 0).kind == kind);
  }
}

TEST_CASE("parse_answer reads MX and address answers with their smallest TTL", "[dns][unit]") {
  Packet mx("example.test", 15);
  mx.answer(15, 600, Packet::mx(20, "b.example.test")).answer(15, 300, Packet::mx(10, "a.example.test"));
  RecordAnswer a = parse_answer(RecordType::mx, ARES_SUCCESS, mx.data(), mx.size());
  REQUIRE(a.kind == AnswerKind::ok);
  REQUIRE(a.mx.size() == 2);
  CHECK(a.ttl == 300);
  CHECK(min_answer_ttl(mx.data(), mx.size()) == 300u);

  Packet nullmx("example.test", 15);
  nullmx.answer(15, 60, Packet::mx(0, ""));
  RecordAnswer n = parse_answer(RecordType::mx, ARES_SUCCESS, nullmx.data(), nullmx.size());
  REQUIRE(n.kind == AnswerKind::ok);
  REQUIRE(n.mx.size() == 1);
  std::mt19937 rng(1);
  CHECK(plan_mx(n.mx, "", rng).status == Status::permanent);

  Packet v4("h.test", 1);
  v4.answer(1, 120, {127, 0, 0, 1}).answer(1, 90, {127, 0, 0, 2}).answer(1, 90, {127, 0, 0, 1});
  RecordAnswer ad = parse_answer(RecordType::a, ARES_SUCCESS, v4.data(), v4.size());
  REQUIRE(ad.kind == AnswerKind::ok);
  CHECK(ad.addresses == std::vector<Address>{{"127.0.0.1", Family::ipv4}, {"127.0.0.2", Family::ipv4}});
  CHECK(ad.ttl == 90);

  Packet v6("h.test", 28);
  std::vector<unsigned char> loop6(16, 0);
  loop6[15] = 1;
  v6.answer(28, 0x80000001u, loop6);  // top bit set: RFC 2181 says treat as 0
  RecordAnswer ad6 = parse_answer(RecordType::aaaa, ARES_SUCCESS, v6.data(), v6.size());
  REQUIRE(ad6.kind == AnswerKind::ok);
  CHECK(ad6.addresses.at(0) == Address{"::1", Family::ipv6});
  CHECK(min_answer_ttl(v6.data(), v6.size()) == 0u);
}

TEST_CASE("parse_answer survives malformed packets", "[dns][unit]") {
  Packet mx("example.test", 15);
  mx.answer(15, 600, Packet::mx(20, "b.example.test"));
  // Every truncation of a valid answer is either a temporary failure or (never) a crash.
  for (int len = 0; len < mx.size(); ++len) {
    INFO(len);
    RecordAnswer a = parse_answer(RecordType::mx, ARES_SUCCESS, mx.data(), len);
    CHECK(a.kind != AnswerKind::ok);
    CHECK_FALSE(min_answer_ttl(mx.data(), len).has_value());
  }
  // A compression pointer loop in the answer name.
  std::vector<unsigned char> evil = mx.bytes_;
  size_t owner = evil.size() - (2 + 2 + 2 + 4 + 2 + 2 + 16);
  evil[owner] = 0xC0;
  evil[owner + 1] = static_cast<unsigned char>(owner);
  RecordAnswer e = parse_answer(RecordType::mx, ARES_SUCCESS, evil.data(), static_cast<int>(evil.size()));
  CHECK(e.kind == AnswerKind::temporary);
}

TEST_CASE("RecordCache keeps answers for min(TTL, cap) and negatives briefly", "[dns][unit]") {
  using namespace std::chrono_literals;
  RecordCache cache(60s, 5s, 3);
  auto make = [](AnswerKind kind, uint32_t ttl) {
    auto a = std::make_shared<RecordAnswer>();
    a->kind = kind;
    a->ttl = ttl;
    return a;
  };
  cache.store("short", make(AnswerKind::ok, 10), 1000);
  cache.store("long", make(AnswerKind::ok, 3600), 1000);
  cache.store("neg", make(AnswerKind::nxdomain, 3600), 1000);
  cache.store("fail", make(AnswerKind::temporary, 3600), 1000);
  cache.store("zero", make(AnswerKind::ok, 0), 1000);
  CHECK(cache.find("fail", 1000) == nullptr);
  CHECK(cache.find("zero", 1000) == nullptr);
  CHECK(cache.find("short", 10999) != nullptr);
  CHECK(cache.find("short", 11000) == nullptr);
  CHECK(cache.find("neg", 5999) != nullptr);
  CHECK(cache.find("neg", 6000) == nullptr);
  CHECK(cache.find("long", 60999) != nullptr);
  CHECK(cache.find("long", 61000) == nullptr);  // capped at 60 s

  RecordCache small(60s, 5s, 2);
  small.store("a", make(AnswerKind::ok, 10), 0);
  small.store("b", make(AnswerKind::ok, 10), 0);
  small.store("c", make(AnswerKind::ok, 10), 0);
  CHECK(small.size() == 2);
  CHECK(small.find("c", 0) != nullptr);
  CHECK(RecordCache::key("mx.example", RecordType::aaaa) != RecordCache::key("mx.example", RecordType::a));
}

TEST_CASE("restricted addresses: this host, this network, link-local, multicast; private ranges are not",
          "[dns][rules]") {
  struct Row {
    const char* ip;
    bool restricted;
  };
  const Row rows[] = {
      {"127.0.0.1", true},
      {"127.1.2.3", true},
      {"0.0.0.0", true},
      {"0.1.2.3", true},
      {"169.254.1.1", true},
      {"224.0.0.1", true},
      {"239.255.255.255", true},
      {"255.255.255.255", true},
      {"240.0.0.1", true},
      {"::1", true},
      {"::", true},
      {"fe80::1", true},
      {"febf::1", true},
      {"ff02::1", true},
      {"::ffff:127.0.0.1", true},
      {"::ffff:169.254.0.1", true},
      {"not-an-ip", true},
      {"", true},
      {"10.0.0.1", false},
      {"192.168.1.1", false},
      {"172.16.0.1", false},
      {"192.0.2.7", false},
      {"128.0.0.1", false},
      {"126.255.255.255", false},
      {"169.253.0.1", false},
      {"223.255.255.255", false},
      {"2001:db8::1", false},
      {"fec0::1", false},
      {"::2", false},
      {"::ffff:192.0.2.1", false},
      {"fd00::1", false},
  };
  for (const Row& r : rows) {
    INFO(r.ip);
    CHECK(spoold::dns::restricted_address(r.ip) == r.restricted);
  }
}

TEST_CASE("reverse_name: in-addr.arpa for IPv4 (also IPv4-mapped), nibbles for IPv6", "[dns][unit]") {
  struct Row {
    std::string ip;
    std::optional<std::string> name;
  };
  const Row rows[] = {
      {"127.0.0.2", "2.0.0.127.in-addr.arpa"},
      {"192.0.2.10", "10.2.0.192.in-addr.arpa"},
      {"0.0.0.0", "0.0.0.0.in-addr.arpa"},
      {"255.255.255.255", "255.255.255.255.in-addr.arpa"},
      {"::ffff:192.0.2.10", "10.2.0.192.in-addr.arpa"},
      {"::FFFF:127.0.0.2", "2.0.0.127.in-addr.arpa"},
      {"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
      {"2001:DB8:0:0:0:0:0:1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
      {"fd00::2", "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"},
      {"::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"},
      {"abcd:ef01:2345:6789:abcd:ef01:2345:6789",
       "9.8.7.6.5.4.3.2.1.0.f.e.d.c.b.a.9.8.7.6.5.4.3.2.1.0.f.e.d.c.b.a.ip6.arpa"},
      {"::ffff:0:1", "1.0.0.0.in-addr.arpa"},  // ::ffff:0.0.0.1
      {"::ffff:0:0:1",
       "1.0.0.0.0.0.0.0.0.0.0.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"},  // not mapped
      {"", std::nullopt},
      {"client.example", std::nullopt},
      {"127.0.0", std::nullopt},
      {"127.0.0.256", std::nullopt},
      {"1.2.3.4 ", std::nullopt},
      {std::string("1.2.3.4\0junk", 12), std::nullopt},
      {"[::1]", std::nullopt},
      {"fe80::1%eth0", std::nullopt},
      {"2001:db8::1::2", std::nullopt},
  };
  for (const Row& r : rows) {
    INFO(r.ip);
    CHECK(reverse_name(r.ip).value_or("(none)") == r.name.value_or("(none)"));
  }
  CHECK(reverse_name("::1")->size() == 64 + 8);  // 32 nibbles and dots, "ip6.arpa"
}

TEST_CASE("canonical_address and valid_host_name", "[dns][unit]") {
  CHECK(canonical_address("127.0.0.2") == Address{"127.0.0.2", Family::ipv4});
  CHECK(canonical_address("::FFFF:127.0.0.2") == Address{"127.0.0.2", Family::ipv4});
  CHECK(canonical_address("2001:DB8:0::0:1") == Address{"2001:db8::1", Family::ipv6});
  CHECK_FALSE(canonical_address("localhost").has_value());

  struct Row {
    std::string name;
    bool valid;
  };
  const Row rows[] = {
      {"client.example", true},
      {"mail-1.example", true},
      {"xn--bcher-kva.example", true},
      {"localhost", true},
      {"1host.example", true},
      {"1.2.3.example", true},
      {std::string(63, 'a') + ".example", true},
      {"", false},
      {"-a.example", false},
      {"a-.example", false},
      {"a..example", false},
      {".example", false},
      {"example.", false},  // names arrive normalized
      {"under_score.example", false},
      {"sp ace.example", false},
      {"a\\.b.example", false},  // an escaped dot inside a label
      {"b\xc3\xbc"
       "cher.example",
       false},
      {"1.2.3.4", false},  // would pass for an address in "NAME[IP]"
      {"1234", false},
      {std::string(64, 'a') + ".example", false},
  };
  for (const Row& r : rows) {
    INFO(r.name);
    CHECK(valid_host_name(r.name) == r.valid);
  }
  std::string longest;
  while (longest.size() < 253) longest += longest.empty() ? "a" : ".a";  // 127 labels, 253 octets
  CHECK(longest.size() == 253);
  CHECK(valid_host_name(longest));
  CHECK_FALSE(valid_host_name(longest + "a"));
}

TEST_CASE("parse_answer reads PTR names: valid host names only, lower-case, once each", "[dns][unit]") {
  const std::string q = "2.0.0.127.in-addr.arpa";
  Packet p(q, 12);
  p.answer(12, 600, Packet::name("Client2.Test"))
      .answer(12, 300, Packet::name("bad_name.test"))
      .answer(12, 900, Packet::name("client2.test"))
      .answer(12, 700, Packet::name("1.2.3.4"))
      .answer(12, 800, Packet::name("other.test"));
  RecordAnswer a = parse_answer(RecordType::ptr, ARES_SUCCESS, p.data(), p.size());
  REQUIRE(a.kind == AnswerKind::ok);
  CHECK(a.names == std::vector<std::string>{"client2.test", "other.test"});
  CHECK(a.ttl == 300);  // every PTR record of the owner counts, the skipped ones too

  SECTION("a name compressed against the question") {
    Packet c(q, 12);
    std::vector<unsigned char> rdata = {4,   'h',  'o',       's',
                                        't', 0xC0, 12 + 2 + 2};  // "host" + "0.127.in-addr.arpa"
    c.answer(12, 60, rdata);
    RecordAnswer ca = parse_answer(RecordType::ptr, ARES_SUCCESS, c.data(), c.size());
    REQUIRE(ca.kind == AnswerKind::ok);
    CHECK(ca.names == std::vector<std::string>{"host.0.127.in-addr.arpa"});
  }
  SECTION("only junk names: ok, but no name") {
    Packet j(q, 12);
    j.answer(12, 60, Packet::name("-x.test")).answer(12, 60, {5, 'a', '.', 'b', ' ', 'c', 0});
    RecordAnswer ja = parse_answer(RecordType::ptr, ARES_SUCCESS, j.data(), j.size());
    CHECK(ja.kind == AnswerKind::ok);
    CHECK(ja.names.empty());
  }
  SECTION("a label holding a dot is not two labels") {
    Packet d(q, 12);
    d.answer(12, 60, {9, 'e', 'v', 'i', 'l', '.', 't', 'e', 's', 't', 0});
    CHECK(parse_answer(RecordType::ptr, ARES_SUCCESS, d.data(), d.size()).names.empty());
  }
  SECTION("RFC 2317: the PTR sits at the CNAME target; records of other owners are ignored") {
    Packet c(q, 12);
    c.answer(5, 120, Packet::name("2.0/25.0.0.127.in-addr.arpa"))
        .answer_for("2.0/25.0.0.127.in-addr.arpa", 12, 60, Packet::name("classless.test"))
        .answer_for("3.0.0.127.in-addr.arpa", 12, 60, Packet::name("stranger.test"));
    RecordAnswer ca = parse_answer(RecordType::ptr, ARES_SUCCESS, c.data(), c.size());
    REQUIRE(ca.kind == AnswerKind::ok);
    CHECK(ca.names == std::vector<std::string>{"classless.test"});
    CHECK(ca.ttl == 60);

    Packet only_cname(q, 12);
    only_cname.answer(5, 120, Packet::name("2.0/25.0.0.127.in-addr.arpa"));
    CHECK(parse_answer(RecordType::ptr, ARES_SUCCESS, only_cname.data(), only_cname.size()).kind ==
          AnswerKind::nodata);
  }
  SECTION("c-ares statuses map as for the other types") {
    CHECK(parse_answer(RecordType::ptr, ARES_ENOTFOUND, nullptr, 0).kind == AnswerKind::nxdomain);
    CHECK(parse_answer(RecordType::ptr, ARES_ENODATA, nullptr, 0).kind == AnswerKind::nodata);
    CHECK(parse_answer(RecordType::ptr, ARES_ESERVFAIL, nullptr, 0).kind == AnswerKind::temporary);
    CHECK(parse_answer(RecordType::ptr, ARES_ETIMEOUT, nullptr, 0).kind == AnswerKind::temporary);
  }
  CHECK(RecordCache::key(q, RecordType::ptr) == "PTR " + q);
}

TEST_CASE("parse_answer survives malformed PTR answers", "[dns][unit]") {
  const std::string q = "2.0.0.127.in-addr.arpa";
  Packet p(q, 12);
  p.answer(12, 600, Packet::name("client2.test"));
  for (int len = 0; len < p.size(); ++len) {
    INFO(len);
    RecordAnswer a = parse_answer(RecordType::ptr, ARES_SUCCESS, p.data(), len);
    CHECK(a.kind == AnswerKind::temporary);
    CHECK(a.names.empty());
  }
  auto parse = [](const std::vector<unsigned char>& bytes) {
    return parse_answer(RecordType::ptr, ARES_SUCCESS, bytes.data(), static_cast<int>(bytes.size()));
  };
  const size_t rdata = p.bytes_.size() - Packet::name("client2.test").size();
  SECTION("a pointer loop in the PTR name") {
    std::vector<unsigned char> evil = p.bytes_;
    evil[rdata] = 0xC0;
    evil[rdata + 1] = static_cast<unsigned char>(rdata);
    CHECK(parse(evil).kind == AnswerKind::temporary);
  }
  SECTION("a pointer past the end") {
    std::vector<unsigned char> evil = p.bytes_;
    evil[rdata] = 0xFF;
    evil[rdata + 1] = 0xFF;
    CHECK(parse(evil).kind == AnswerKind::temporary);
  }
  SECTION("a name running past its RDATA") {
    std::vector<unsigned char> evil = p.bytes_;
    evil[rdata - 1] = 3;  // RDLENGTH 3: the 14-byte name stays inside the packet, not the record
    CHECK(parse(evil).kind == AnswerKind::temporary);
  }
  SECTION("more answers claimed than present") {
    std::vector<unsigned char> evil = p.bytes_;
    evil[7] = 2;
    CHECK(parse(evil).kind == AnswerKind::temporary);
  }
  SECTION("no question") {
    std::vector<unsigned char> evil = p.bytes_;
    evil[5] = 0;
    CHECK(parse(evil).kind == AnswerKind::temporary);
  }
  SECTION("a name over 255 octets through pointers") {
    // Five labels of 63 octets: each one in bounds, the whole name over 255 (RFC 1035 §3.1).
    Packet big(q, 12);
    std::vector<unsigned char> label(1, 63);
    label.insert(label.end(), 63, 'a');
    std::vector<unsigned char> rd;
    for (int i = 0; i < 5; ++i) rd.insert(rd.end(), label.begin(), label.end());
    rd.push_back(0);
    big.answer(12, 60, rd);
    CHECK(parse(big.bytes_).kind == AnswerKind::temporary);
  }
}
