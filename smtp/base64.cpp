// smtp/base64.cpp — see base64.h.
#include "smtp/base64.h"

#include <array>
#include <cstdint>

namespace spoold::smtp::base64 {

namespace {

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::uint8_t kInvalid = 0xff;

constexpr std::array<std::uint8_t, 256> decode_table() {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = kInvalid;
  for (std::size_t i = 0; i < kAlphabet.size(); ++i)
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::uint8_t>(i);
  return t;
}
constexpr auto kDecode = decode_table();

}  // namespace

std::string encode(std::string_view data) {
  std::string out;
  out.reserve(4 * ((data.size() + 2) / 3));
  std::size_t i = 0;
  auto byte = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(data[k])); };
  for (; i + 3 <= data.size(); i += 3) {
    std::uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t left = data.size() - i;
  if (left == 0) return out;
  std::uint32_t v = byte(i) << 16 | (left == 2 ? byte(i + 1) << 8 : 0);
  out += kAlphabet[v >> 18 & 63];
  out += kAlphabet[v >> 12 & 63];
  out += left == 2 ? kAlphabet[v >> 6 & 63] : '=';
  out += '=';
  return out;
}

std::optional<std::string> decode(std::string_view text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (pad == 1 && text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const std::size_t digits = last ? 4 - pad : 4;
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      std::uint32_t d = 0;
      if (k < digits) {
        d = kDecode[static_cast<unsigned char>(text[i + k])];
        if (d == kInvalid) return std::nullopt;  // '=' too: padding only at the very end
      }
      v = v << 6 | d;
    }
    out += static_cast<char>(v >> 16 & 0xff);
    if (digits > 2) out += static_cast<char>(v >> 8 & 0xff);
    if (digits > 3) out += static_cast<char>(v & 0xff);
  }
  return out;
}

}  // namespace spoold::smtp::base64
