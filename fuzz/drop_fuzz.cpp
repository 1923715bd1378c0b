// fuzz/drop_fuzz.cpp — libFuzzer target for untrusted drop files: the streaming drop-file parser
// and the RFC 5322 address-list parser.
// Rule: no input may crash or read out of bounds; feeding in chunks must give exactly what one
// piece gives; every recipient that comes out is a valid RFC 5321 mailbox.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "spool/drop.h"

using namespace spoold::spool;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  DropLimits lim;
  lim.max_line = 4096;  // small limits reach the limit paths with small inputs
  lim.max_field = 8192;
  lim.max_header_bytes = 64 * 1024;
  lim.max_recipients = 50;
  auto whole = parse_drop(in, lim);

  DropParser chunked(lim);
  std::size_t step = size == 0 ? 1 : 1 + data[0] % 13;
  for (std::size_t pos = 0; pos < size; pos += step) (void)chunked.feed(in.substr(pos, step));
  auto parts = chunked.finish();

  if (whole.ok() != parts.ok()) std::abort();
  if (whole.ok()) {
    if (whole->recipients != parts->recipients || whole->sender != parts->sender ||
        whole->body_offset != parts->body_offset || whole->size != size || parts->size != size ||
        whole->eight_bit != parts->eight_bit)
      std::abort();
    if (whole->recipients.empty() || whole->body_offset > size) std::abort();
    for (const auto& r : whole->recipients)
      if (!valid_mailbox(r)) std::abort();
    if (!whole->sender.empty() && !valid_mailbox(whole->sender)) std::abort();
  } else if (whole.error().message != parts.error().message) {
    std::abort();
  }

  auto list = parse_address_list(in);
  if (list.ok())
    for (const auto& a : *list)
      if (!a.empty() && !valid_mailbox(a)) std::abort();
  return 0;
}
