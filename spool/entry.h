// spool/entry.h — a queue entry's envelope and its on-disk text format (docs/spool-format.md).
// Rule: format_entry() and parse_entry() are exact inverses; every field is escaped so CR, LF,
// NUL or a space can never split a record, and the reader rejects (never truncates) a line that
// is too long, an unknown key, a bad escape or a file without its closing "end" line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "spool/dsn.h"

namespace spoold::spool {

// Version 2 adds the DSN records (dsn-ret, dsn-envid, rcpt-dsn); an entry without any is still
// written as version 1, so an older spoold can read it.
inline constexpr int kEntryFormatVersion = 2;
inline constexpr size_t kMaxEntryLine = 16 * 1024;  // reader refuses longer lines
inline constexpr size_t kMaxReplyText = 2000;       // writer shortens longer reply texts
inline constexpr size_t kMaxEntryBytes = 64 * 1024 * 1024;

enum class RcptState { pending, sent, bounced, expired };
std::string_view to_string(RcptState s);

struct Recipient {
  std::string address;
  RcptState state = RcptState::pending;
  int attempts = 0;
  std::string last_reply;  // the server's reply or our reason, "" before the first attempt
  RecipientDsn dsn;        // RFC 3461 NOTIFY / ORCPT as submitted
  bool final() const { return state != RcptState::pending; }
  bool operator==(const Recipient&) const = default;
};

struct EntryFlags {
  bool missing_date = false;        // add a Date: header when sending
  bool missing_message_id = false;  // add a Message-ID: header when sending
  bool eight_bit = false;           // body has 8-bit bytes (BODY=8BITMIME)
  bool has_bcc = false;             // strip the Bcc: header when sending
  bool warning_sent = false;        // the delay warning went out already
  bool operator==(const EntryFlags&) const = default;
};

struct Entry {
  std::string id;
  std::string sender;  // "" = null sender <>
  std::vector<Recipient> recipients;
  int64_t arrived = 0;        // unix seconds when picked up / enqueued
  int64_t last_attempt = 0;   // unix seconds, 0 = never attempted
  int attempts = 0;           // delivery attempts of the whole message
  uint64_t body_offset = 0;   // where the RFC 5322 message starts in the body file
  uint64_t body_size = 0;     // bytes of the RFC 5322 message
  uint64_t longest_line = 0;  // octets of its longest line; 0 = unknown (written by older daemons)
  EntryFlags flags;
  MessageDsn dsn;      // RFC 3461 RET / ENVID as submitted
  std::string reason;  // why it is in failed/ (empty elsewhere)

  bool all_final() const;
  size_t pending() const;
  bool operator==(const Entry&) const = default;
};

std::string format_entry(const Entry& e);
Result<Entry> parse_entry(std::string_view text);

}  // namespace spoold::spool
