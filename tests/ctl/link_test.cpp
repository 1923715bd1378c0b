// tests/ctl/link_test.cpp — the spoolctl binary (sendmail) starts without shared C++ libraries when
// built with SPOOLD_STATIC_CTL (ctl/CMakeLists.txt): its DT_NEEDED entries, read from the ELF file.
// Rule: a libstdc++.so next to the linked-in libstdc++ would be two C++ runtimes in one process,
// and a shared yaml-cpp or fmt would bring libstdc++.so back; either must fail here, not in use.
#include <catch2/catch.hpp>

#include <elf.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/support/fixtures.h"

namespace {

// The DT_NEEDED names of a 64-bit little-endian ELF file (what ld.so loads before main).
std::vector<std::string> needed(const std::string& file) {
  std::string img = spoold::test::read_file(file);
  REQUIRE(img.size() > sizeof(Elf64_Ehdr));
  Elf64_Ehdr eh;
  std::memcpy(&eh, img.data(), sizeof eh);
  REQUIRE(std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0);
  REQUIRE(eh.e_ident[EI_CLASS] == ELFCLASS64);
  std::vector<Elf64_Shdr> sections(eh.e_shnum);
  REQUIRE(eh.e_shoff + sections.size() * sizeof(Elf64_Shdr) <= img.size());
  std::memcpy(sections.data(), img.data() + eh.e_shoff, sections.size() * sizeof(Elf64_Shdr));
  std::vector<std::string> out;
  for (const auto& sh : sections) {
    if (sh.sh_type != SHT_DYNAMIC) continue;
    REQUIRE(sh.sh_link < sections.size());
    const Elf64_Shdr& strtab = sections[sh.sh_link];
    REQUIRE(sh.sh_offset + sh.sh_size <= img.size());
    for (std::size_t off = 0; off + sizeof(Elf64_Dyn) <= sh.sh_size; off += sizeof(Elf64_Dyn)) {
      Elf64_Dyn d;
      std::memcpy(&d, img.data() + sh.sh_offset + off, sizeof d);
      if (d.d_tag == DT_NULL) break;
      if (d.d_tag == DT_NEEDED) {
        REQUIRE(strtab.sh_offset + d.d_un.d_val < img.size());
        out.emplace_back(img.c_str() + strtab.sh_offset + d.d_un.d_val);
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("spoolctl loads no shared C++ library (sendmail starts once per message)", "[link]") {
  auto libs = needed(std::string(SPOOLD_BINARY_DIR) + "/ctl/spoolctl");
  std::string all;
  for (const auto& l : libs) all += l + " ";
  INFO("DT_NEEDED: " << all);
  CHECK(all.find("libc.so") != std::string::npos);  // the reader works: libc is always there
#if SPOOLD_STATIC_CTL
  // libcrypto too: `sendmail -bs` runs the server engine, whose base64 is ours (smtp/base64.h).
  for (const char* shared : {"libstdc++", "libyaml-cpp", "libfmt", "libgcc_s", "libcrypto", "libssl"})
    CHECK(all.find(shared) == std::string::npos);
#else
  WARN("SPOOLD_STATIC_CTL is off in this build: spoolctl uses the shared C++ libraries");
#endif
}
