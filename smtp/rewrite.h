// smtp/rewrite.h — sender rewriting on the way out (docs/configuration.md `rewrite`): the
// envelope sender override and masquerading (Postfix's masquerade_domains) of the envelope sender
// and of the addresses in From:.
// Rule: pure functions of their inputs; the null sender is never rewritten; a masquerade only ever
// drops leading labels of a domain, so the rewritten text is never longer than the original (the
// SIZE= declared from the stored message stays an upper bound).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spoold::smtp {

// The masquerade of `domain` under `domains` (lower-case names, in order): the first entry that
// is `domain` itself or a parent of it decides — itself: unchanged (nullopt); a parent: that
// parent. Case-insensitive; a trailing dot is ignored; address literals ("[192.0.2.1]") never
// match. nullopt when nothing changes.
std::optional<std::string> masquerade_domain(std::string_view domain,
                                             const std::vector<std::string>& domains);

// "user@host.example.com" → "user@example.com" under ["example.com"]; the local part is kept as
// it is (the domain is after the last '@'). Anything without '@' is returned as it is.
std::string masquerade_address(const std::string& address, const std::vector<std::string>& domains);

// The envelope sender to send: "" (the null sender) stays ""; else envelope_from when set, else
// the sender masqueraded. An explicit envelope_from is used as written, never masqueraded.
std::string rewrite_envelope_sender(const std::string& sender, const std::string& envelope_from,
                                    const std::vector<std::string>& domains);

// Masquerades every address in the text of an address-list header field (its value, after the
// colon; lines may be separated by CR/LF, which count as white space and are kept). Display names,
// quoted strings, comments and domain literals are left alone: only the domain after an '@'
// outside them changes. Returns the new text, or nullopt when nothing changed.
std::optional<std::string> masquerade_field(std::string_view value, const std::vector<std::string>& domains);

}  // namespace spoold::smtp
