// idna/idna.h — a domain name as DNS and a server without SMTPUTF8 need it: the A-label form
// ("bücher.example" → "xn--bcher-kva.example"), by IDNA2008 with UTS #46 non-transitional
// mapping (what browsers and libidn2 do), on libidn2 (docs/design.md "Libraries" says why).
// Rule: pure functions of untrusted bytes; an ASCII name is returned unchanged, never "fixed".
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace spoold::idna {

// The A-label form of a domain with non-ASCII labels, lower-cased; an ASCII domain (or an address
// literal "[…]") as it is. nullopt when the name is not valid UTF-8 or not a valid IDNA2008 name.
std::optional<std::string> to_ascii(std::string_view domain);

// The address with its domain in A-label form: "jürgen@bücher.example" →
// "jürgen@xn--bcher-kva.example". The local part is never changed (only SMTPUTF8 can carry a
// non-ASCII one); an address without '@', or whose domain does not convert, is returned as is.
std::string ascii_domain(std::string_view address);

bool is_ascii(std::string_view s);

}  // namespace spoold::idna
