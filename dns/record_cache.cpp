// dns/record_cache.cpp — see record_cache.h.
#include "dns/record_cache.h"

#include <algorithm>

namespace spoold::dns::detail {

std::string RecordCache::key(const std::string& normalized_name, RecordType type) {
  return std::string(to_string(type)) + ' ' + normalized_name;
}

RecordCache::AnswerPtr RecordCache::find(const std::string& key, uint64_t now_ms) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  if (now_ms >= it->second.expires_ms) {
    entries_.erase(it);
    return nullptr;
  }
  return it->second.answer;
}

void RecordCache::store(const std::string& key, AnswerPtr answer, uint64_t now_ms) {
  uint64_t lifetime = 0;
  switch (answer->kind) {
    case AnswerKind::ok:
      lifetime = std::min<uint64_t>(uint64_t{answer->ttl} * 1000, max_ttl_ms_);
      break;
    case AnswerKind::nodata:
    case AnswerKind::nxdomain:
      lifetime = negative_ttl_ms_;
      break;
    default:
      return;  // failures are retried, not remembered
  }
  if (lifetime == 0 || max_entries_ == 0) return;
  if (entries_.size() >= max_entries_ && !entries_.contains(key)) make_room(now_ms);
  entries_[key] = Entry{std::move(answer), now_ms + lifetime};
}

void RecordCache::make_room(uint64_t now_ms) {
  std::erase_if(entries_, [now_ms](const auto& kv) { return now_ms >= kv.second.expires_ms; });
  // Still full: drop an arbitrary entry. The cache bounds memory; a miss only costs a query.
  if (entries_.size() >= max_entries_) entries_.erase(entries_.begin());
}

}  // namespace spoold::dns::detail
