// control/protocol.h — what spoold and spoolctl agree on for the control socket (docs/control-protocol.md).
// One request per line, one response per line, both JSON objects:
//   → {"cmd":"status"}            ← {"ok":true, ...}
//   → {"cmd":"flush","tier":1}    ← {"ok":false,"error":"..."}
// Rule: ctl/ and daemon/ both depend on this; neither depends on the other.
#pragma once

#include <chrono>
#include <string>

#include "common/result.h"
#include "control/json.h"

namespace spoold::control {

// Longest request or response line accepted; a peer sending more is cut off.
inline constexpr size_t kMaxLine = 4 * 1024 * 1024;

Json ok_response();
Json error_response(const std::string& message);

// Blocking client call used by spoolctl: connect, send one line, read one line.
// Fails (with errno in Error::code) when the socket is absent or nobody listens (ECONNREFUSED/ENOENT).
Result<Json> call(const std::string& socket_path, const Json& request,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace spoold::control
