// fuzz/entry_fuzz.cpp — libFuzzer target for the queue-entry reader (entries may sit on a shared
// NFS spool written by another host or damaged by hand).
// Rule: no input may crash; whatever the reader accepts, the writer writes back in a form the
// reader accepts again and that is a fixed point (format(parse(format(e))) == format(e)).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "spool/entry.h"

using namespace spoold::spool;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto e = parse_entry(in);
  if (!e.ok()) return 0;
  std::string once = format_entry(*e);
  auto again = parse_entry(once);
  if (!again.ok()) std::abort();
  if (format_entry(*again) != once) std::abort();
  if (again->recipients.size() != e->recipients.size() || again->id != e->id || again->sender != e->sender)
    std::abort();
  return 0;
}
