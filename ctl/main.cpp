// ctl/main.cpp — one binary, four names: spoolctl, sendmail, mailq, newaliases (by the basename
// of argv[0]).
// Rule: what a command printed is only printed once stdout took it; a full disk or a closed pipe
// is an error (EX_IOERR), never exit 0 with the output lost (coreutils' close_stdout does the same).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "ctl/app.h"
#include "ctl/privileges.h"

namespace {

constexpr int kExIoErr = 74;  // sysexits.h EX_IOERR

int run(const std::vector<std::string>& args, const char* argv0) {
  switch (spoold::ctl::personality_of(argv0)) {
    case spoold::ctl::Personality::sendmail:
      return spoold::ctl::sendmail_main(args);
    case spoold::ctl::Personality::mailq:
      return spoold::ctl::mailq_main(args);
    case spoold::ctl::Personality::newaliases:
      return spoold::ctl::newaliases_main(args);
    case spoold::ctl::Personality::spoolctl:
      break;
  }
  return spoold::ctl::spoolctl_main(args);
}

}  // namespace

int main(int argc, char** argv) {
  spoold::ctl::setuid_init();
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  const char* name = argc > 0 ? argv[0] : "spoolctl";
  int rc = 0;
  try {
    rc = run(args, name);
  } catch (const std::system_error& e) {  // fmt::print reports a failed write by throwing
    std::fprintf(stderr, "%s: cannot write the output: %s\n", name, e.what());
    return kExIoErr;
  }
  errno = 0;
  bool failed = std::fflush(stdout) != 0 || std::ferror(stdout) != 0;
  if (failed) {
    int e = errno;
    std::fprintf(stderr, "%s: cannot write the output: %s\n", name,
                 e != 0 ? std::strerror(e) : "write error");
    return rc == 0 ? kExIoErr : rc;
  }
  return rc;
}
