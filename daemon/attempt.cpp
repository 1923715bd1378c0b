// daemon/attempt.cpp — see attempt.h.
#include "daemon/attempt.h"

namespace spoold::daemon {

void AttemptLog::failed(const std::string& server, const smtp::Outcome& why, const std::string& relay) {
  ++failures_[server];
  last_ = why;
  last_relay_ = relay;
  if (why.status != smtp::Status::permanent) any_temporary_ = true;
}

bool AttemptLog::exhausted(const std::string& server, int connect_attempts) const {
  return failures(server) >= std::max(1, connect_attempts);
}

int AttemptLog::failures(const std::string& server) const {
  auto it = failures_.find(server);
  return it == failures_.end() ? 0 : it->second;
}

smtp::Outcome AttemptLog::verdict() const {
  smtp::Outcome o = last_;
  if (o.status == smtp::Status::sent) {  // a failure is never a success
    o.status = smtp::Status::temporary;
    o.enhanced = "4.0.0";
  }
  if (o.status == smtp::Status::permanent && any_temporary_) {
    o.status = smtp::Status::temporary;
    if (!o.enhanced.empty()) o.enhanced[0] = '4';
  }
  if (o.enhanced.empty()) o.enhanced = o.status == smtp::Status::permanent ? "5.0.0" : "4.0.0";
  return o;
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
