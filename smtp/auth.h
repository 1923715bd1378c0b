// smtp/auth.h — the SASL pieces the engine sends for AUTH (RFC 4954): PLAIN (RFC 4616),
// LOGIN, CRAM-MD5 (RFC 2195, HMAC-MD5 from OpenSSL) and XOAUTH2 (base64 in smtp/base64.h).
// Rule: pure functions of their inputs; the caller decides when (never over plaintext unless allowed).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/types.h"

namespace spoold::smtp::auth {

std::string plain_response(std::string_view user, std::string_view password);  // base64("\0user\0pass")
std::string xoauth2_response(std::string_view user, std::string_view token);   // base64 per Google's spec
// base64(user + " " + lowercase hex HMAC-MD5(password, challenge)); challenge already decoded.
std::string cram_md5_response(std::string_view user, std::string_view password, std::string_view challenge);

// `automatic`: the best mechanism the server offers, or none. Over TLS PLAIN is preferred (the
// channel protects it, and it works with every password store); without TLS (only when plaintext
// auth is allowed) CRAM-MD5 first, so the password itself does not cross the wire. XOAUTH2 is
// never chosen automatically: its secret is a token, not a password.
AuthMechanism choose(AuthMechanism wanted, const std::vector<std::string>& offered, bool encrypted);

}  // namespace spoold::smtp::auth
