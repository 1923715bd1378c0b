// smtp/base64.h — RFC 4648 base64 for SASL exchanges (RFC 4954): what AUTH lines carry.
// Rule: pure functions; decoding is strict (only the alphabet, '=' padding only at the end, a
// length that is a multiple of 4), so a malformed AUTH line is refused rather than guessed at.
// Ours rather than OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock so that `sendmail -bs`, which runs
// the server engine, does not load libcrypto at every start.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace spoold::smtp::base64 {

std::string encode(std::string_view data);
// nullopt when `text` is not base64; trailing spaces and tabs are ignored (clients send them).
std::optional<std::string> decode(std::string_view text);

}  // namespace spoold::smtp::base64
