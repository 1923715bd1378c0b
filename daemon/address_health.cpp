// daemon/address_health.cpp — see address_health.h.
#include "daemon/address_health.h"

#include <fmt/format.h>

namespace spoold::daemon {

std::string server_key(const std::string& ip, int port) {
  return fmt::format("{}|{}", ip, port);
}

void AddressHealth::failed(const std::string& server, Clock::time_point now, int threshold,
                           Clock::duration memory) {
  Health& h = servers_[server];
  h.failed_at = now;
  if (++h.in_a_row >= std::max(1, threshold)) {
    h.until = now + memory;
    h.in_a_row = 0;
  }
}

void AddressHealth::succeeded(const std::string& server) {
  servers_.erase(server);
}

std::optional<Clock::time_point> AddressHealth::skipped_since(const std::string& server,
                                                              Clock::time_point now) const {
  auto it = servers_.find(server);
  if (it == servers_.end() || now >= it->second.until) return std::nullopt;
  return it->second.failed_at;
}

Clock::time_point AddressHealth::skipped_until(const std::string& server) const {
  auto it = servers_.find(server);
  return it == servers_.end() ? Clock::time_point{} : it->second.until;
}

void AddressHealth::forget_expired(Clock::time_point now) {
  // A server not skipped now and quiet for a minute is forgotten (its count of failures in a row
  // too): hostile DNS can name any number of addresses.
  std::erase_if(servers_, [now](const auto& kv) {
    return now >= kv.second.until && now - kv.second.failed_at >= std::chrono::minutes(1);
  });
}

std::string server_display(const std::string& server) {
  auto bar = server.rfind('|');
  if (bar == std::string::npos) return server;
  std::string ip = server.substr(0, bar), port = server.substr(bar + 1);
  return ip.find(':') != std::string::npos ? "[" + ip + "]:" + port : ip + ":" + port;
}

}  // namespace spoold::daemon
