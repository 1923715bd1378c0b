// smtp/types.cpp — the names of smtp's own enums, as they appear in logs; the RFC 3463 fallback codes.
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

std::string line_safe_name(std::string name) {
  std::erase_if(name, [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c <= 0x20 || c >= 0x7f;
  });
  if (name.empty()) name = "localhost";
  return name;
}

}  // namespace spoold::smtp
