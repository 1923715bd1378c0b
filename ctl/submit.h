// ctl/submit.h — `sendmail`: read a message from stdin, build an envelope-first drop file, and put
// it into the spool's incoming/ durably (tmp/ → fsync → rename → fsync(dir)).
// Rule: sendmail exits 0 only once the drop is durable. Every problem with the message itself
// (no recipient, a bad address, too big) is found here, before anything is written, and is an
// Error with code 65 (EX_DATAERR); a spool that cannot take the file is code 75 (EX_TEMPFAIL).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/header_fields.h"
#include "common/result.h"
#include "spool/dsn.h"

namespace spoold::ctl {

inline constexpr int kExUsage = 64;
inline constexpr int kExDataErr = 65;
inline constexpr int kExTempFail = 75;

// Reads fd to EOF, or up to a line holding only "." (LF or CRLF) unless ignore_dots. More than
// max_size bytes is an EX_DATAERR error (reading stops there); so is an unreadable stdin.
Result<std::string> read_message(int fd, bool ignore_dots, uint64_t max_size);

struct SubmitOptions {
  std::optional<std::string> sender;    // -f; nullopt = default_sender (or the headers with -t)
  std::vector<std::string> recipients;  // command-line words (each may hold a comma list)
  bool extract = false;                 // -t
  std::string full_name;                // -F
  std::string default_sender;           // user@hostname of the caller
  std::string qualify_domain;           // appended to addresses without '@' ("root" → root@host)
  uint64_t max_message_size = 50ull * 1024 * 1024;
  spool::MessageDsn dsn;   // -R / -V
  std::string dsn_notify;  // -N, for every recipient
};

struct Submission {
  std::string sender;  // "" = null sender
  std::vector<std::string> recipients;
  std::string drop;  // the whole drop file: envelope lines, empty line, message
};

// Builds the drop. The message gets a From: header when it has none (with -F's display name), a
// leading mbox "From " line is dropped, and the result is checked with the spool's own parser.
Result<Submission> build_submission(std::string message, const SubmitOptions& opts);

// Writes the drop into <spool_dir>/incoming/ under `name`, else a fresh one
// ("sendmail.<time>.<unique>"), and returns the name; a queue id of the spool as the name is kept
// as the message's id at pickup. The file is created mode 0600 in tmp/ and is owned by whoever
// runs this (see ctl/privileges.h for who that is). Errors carry kExTempFail.
Result<std::string> write_drop(const std::string& spool_dir, std::string_view drop, std::string name = "");

// The RFC 5322 header fields -t reads (names lower-cased, values unfolded): those the drop parser
// reads, by the one unfolding of common/header_fields.h. Named here for tests and fuzz targets.
using spoold::header_fields;
using spoold::HeaderField;

}  // namespace spoold::ctl
