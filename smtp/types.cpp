// smtp/types.cpp — names of the shared enums, as they appear in logs and config.
#include "smtp/types.h"

namespace spoold::smtp {

std::string_view to_string(Status s) {
  switch (s) {
    case Status::sent:
      return "sent";
    case Status::temporary:
      return "temporary";
    case Status::permanent:
      return "permanent";
  }
  return "?";
}

std::string dsn_code(const Outcome& o) {
  if (!o.enhanced.empty()) return o.enhanced;
  switch (o.status) {
    case Status::sent:
      return "2.0.0";
    case Status::temporary:
      return "4.0.0";
    case Status::permanent:
      return "5.0.0";
  }
  return "4.0.0";
}

std::string_view to_string(TlsPolicy p) {
  switch (p) {
    case TlsPolicy::none:
      return "none";
    case TlsPolicy::opportunistic:
      return "opportunistic";
    case TlsPolicy::required:
      return "required";
    case TlsPolicy::verify:
      return "verify";
  }
  return "?";
}

std::string_view to_string(AuthMechanism m) {
  switch (m) {
    case AuthMechanism::none:
      return "none";
    case AuthMechanism::automatic:
      return "auto";
    case AuthMechanism::plain:
      return "PLAIN";
    case AuthMechanism::login:
      return "LOGIN";
    case AuthMechanism::cram_md5:
      return "CRAM-MD5";
    case AuthMechanism::xoauth2:
      return "XOAUTH2";
  }
  return "?";
}

}  // namespace spoold::smtp
