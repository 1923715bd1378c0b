// dns/record_cache.h — answers per (name, type), kept for their TTL (internal to dns/).
// Rule: positive answers live min(TTL, max_ttl); NXDOMAIN/NODATA live negative_ttl; failures
// (SERVFAIL, timeout, …) are never cached. The clock is passed in, so the cache is pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "dns/answer.h"

namespace spoold::dns::detail {

class RecordCache {
 public:
  using AnswerPtr = std::shared_ptr<const RecordAnswer>;

  RecordCache(std::chrono::seconds max_ttl, std::chrono::seconds negative_ttl, size_t max_entries)
      : max_ttl_ms_(static_cast<uint64_t>(max_ttl.count()) * 1000),
        negative_ttl_ms_(static_cast<uint64_t>(negative_ttl.count()) * 1000),
        max_entries_(max_entries) {}

  static std::string key(const std::string& normalized_name, RecordType type);

  // The live answer for key at now_ms, or null.
  AnswerPtr find(const std::string& key, uint64_t now_ms);
  void store(const std::string& key, AnswerPtr answer, uint64_t now_ms);
  size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }

 private:
  struct Entry {
    AnswerPtr answer;
    uint64_t expires_ms;
  };
  void make_room(uint64_t now_ms);

  uint64_t max_ttl_ms_;
  uint64_t negative_ttl_ms_;
  size_t max_entries_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace spoold::dns::detail
