// daemon/mx_site.cpp — see mx_site.h.
#include "daemon/mx_site.h"

#include <algorithm>
#include <cctype>

namespace spoold::daemon {

std::string mx_site_name(std::vector<std::string> hosts, int route) {
  for (auto& h : hosts) {
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (!h.empty() && h.back() == '.') h.pop_back();
  }
  std::sort(hosts.begin(), hosts.end());
  hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
  std::string name;
  for (const auto& h : hosts) name += (name.empty() ? "" : ",") + h;
  if (route >= 0) name += "#" + std::to_string(route);
  return name;
}

}  // namespace spoold::daemon
