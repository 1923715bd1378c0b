// spool/crashpoint.h — test-only crash points between the steps of a multi-step disk update.
// Rule: a no-op unless the build defines SPOOLD_CRASHPOINTS *and* the environment variable
// SPOOLD_CRASH_AT names this point; then the process abort()s on the spot, exactly like a kill -9
// between two system calls. Release builds compile the check out entirely.
#pragma once

#include <string_view>

namespace spoold::spool {

// Call between two steps whose interruption recovery must survive. `name` is "<operation>.<step>".
void crashpoint(std::string_view name);

// True when this build honours crash points (tests use it to check their own setup).
bool crashpoints_enabled();

}  // namespace spoold::spool
