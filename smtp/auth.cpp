// smtp/auth.cpp — see auth.h.
#include "smtp/auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "smtp/base64.h"

namespace spoold::smtp::auth {

std::string plain_response(std::string_view user, std::string_view password) {
  std::string msg;
  msg += '\0';
  msg += user;
  msg += '\0';
  msg += password;
  return base64::encode(msg);
}

std::string xoauth2_response(std::string_view user, std::string_view token) {
  std::string msg = "user=";
  msg += user;
  msg +=
      "\x01"
      "auth=Bearer ";
  msg += token;
  msg += "\x01\x01";
  return base64::encode(msg);
}

std::string cram_md5_response(std::string_view user, std::string_view password, std::string_view challenge) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_md5(), password.data(), static_cast<int>(password.size()),
       reinterpret_cast<const unsigned char*>(challenge.data()), challenge.size(), mac, &len);
  static const char* hex = "0123456789abcdef";
  std::string msg(user);
  msg += ' ';
  for (unsigned int i = 0; i < len; ++i) {
    msg += hex[mac[i] >> 4];
    msg += hex[mac[i] & 15];
  }
  return base64::encode(msg);
}

AuthMechanism choose(AuthMechanism wanted, const std::vector<std::string>& offered, bool encrypted) {
  auto has = [&](std::string_view name) {
    return std::find(offered.begin(), offered.end(), name) != offered.end();
  };
  if (wanted == AuthMechanism::none) return AuthMechanism::none;
  if (wanted != AuthMechanism::automatic) return has(sasl_name(wanted)) ? wanted : AuthMechanism::none;
  const AuthMechanism tls_order[] = {AuthMechanism::plain, AuthMechanism::login, AuthMechanism::cram_md5};
  const AuthMechanism clear_order[] = {AuthMechanism::cram_md5, AuthMechanism::plain, AuthMechanism::login};
  for (AuthMechanism m : encrypted ? tls_order : clear_order)
    if (has(sasl_name(m))) return m;
  return AuthMechanism::none;
}

}  // namespace spoold::smtp::auth
