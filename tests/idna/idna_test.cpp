// tests/idna/idna_test.cpp — the A-label form of domains and addresses (idna/idna.h), table-tested.
// Built into smtp_unit_test (tests/smtp/CMakeLists.txt): smtp links idna, and one Catch binary
// fewer keeps the build light.
#include <catch2/catch.hpp>

#include <optional>
#include <string>

#include "idna/idna.h"

using spoold::idna::ascii_domain;
using spoold::idna::to_ascii;

TEST_CASE("to_ascii: U-labels become A-labels, ASCII names stay as they are", "[idna]") {
  struct Row {
    std::string in;
    std::optional<std::string> out;
  };
  const Row rows[] = {
      {"example.org", "example.org"},
      {"Example.ORG", "Example.ORG"},  // ASCII is not touched, not even its case
      {"[127.0.0.1]", "[127.0.0.1]"},
      {"b\xc3\xbc"
       "cher.example",
       "xn--bcher-kva.example"},
      {"B\xc3\x9c"
       "CHER.example",
       "xn--bcher-kva.example"},  // UTS #46 maps upper case
      {"b\x75\xcc\x88"
       "cher.example",
       "xn--bcher-kva.example"},  // u + combining diaeresis: NFC
      {"\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95", "xn--fsqu00a.xn--0zwm56d"},  // 例子.测试
      {"fa\xc3\x9f.de", "xn--fa-hia.de"},  // non-transitional: ß stays ß (not "fass.de")
      {"b\xc3\xbc"
       "cher.example.",
       "xn--bcher-kva.example."},  // the root dot is kept
      {"b\xc3\xbc"
       "cher..example",
       std::nullopt},  // empty label
      {"b\xff"
       "cher.example",
       std::nullopt},                                             // not UTF-8
      {std::string("b\xc3\xbc\0x.example", 12), std::nullopt},    // NUL
      {"\xe2\x98\x83-.example", std::nullopt},                    // hyphen at a label's end
      {std::string(70, 'a') + "\xc3\xbc.example", std::nullopt},  // a label over 63 octets
      // Full-width '>' and ideographic space map to ASCII '>' and ' ' under UTS #46: refused, or
      // "x> NOTIFY=NEVER" could reach a command line.
      {"x\xef\xbc\x9e\xe3\x80\x80\xef\xbc\xae.example", std::nullopt},
      {"a\xef\xbc\xbf"
       "b.example",
       std::nullopt},  // full-width '_' maps to '_', not LDH
  };
  for (const auto& r : rows) {
    INFO(r.in);
    CHECK(to_ascii(r.in) == r.out);
  }
}

TEST_CASE("ascii_domain: only the domain of an address changes", "[idna]") {
  CHECK(ascii_domain("j\xc3\xbcrgen@b\xc3\xbc"
                     "cher.example") == "j\xc3\xbcrgen@xn--bcher-kva.example");
  CHECK(ascii_domain("ann@example.org") == "ann@example.org");
  CHECK(ascii_domain("\"a@b\"@b\xc3\xbc"
                     "cher.example") == "\"a@b\"@xn--bcher-kva.example");
  CHECK(ascii_domain("no-at-sign") == "no-at-sign");
  CHECK(ascii_domain("x@b\xff.example") == "x@b\xff.example");  // does not convert: left for DNS to refuse
  CHECK(ascii_domain("") == "");
}
