// spool/crashpoint.cpp — see crashpoint.h. The environment is read on every call (no cached
// global) so a forked test child can set SPOOLD_CRASH_AT after fork() and before the operation.
#include "spool/crashpoint.h"

#include <cstdlib>

namespace spoold::spool {

#ifdef SPOOLD_CRASHPOINTS
void crashpoint(std::string_view name) {
  const char* at = std::getenv("SPOOLD_CRASH_AT");
  if (at != nullptr && name == at) std::abort();
}
bool crashpoints_enabled() {
  return true;
}
#else
void crashpoint(std::string_view) {}
bool crashpoints_enabled() {
  return false;
}
#endif

}  // namespace spoold::spool
