// ctl/main.cpp — one binary, three names: spoolctl, sendmail, mailq (by the basename of argv[0]).
#include <string>
#include <vector>

#include "ctl/app.h"
#include "ctl/privileges.h"

int main(int argc, char** argv) {
  spoold::ctl::setuid_init();
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  switch (spoold::ctl::personality_of(argc > 0 ? argv[0] : "spoolctl")) {
    case spoold::ctl::Personality::sendmail:
      return spoold::ctl::sendmail_main(args);
    case spoold::ctl::Personality::mailq:
      return spoold::ctl::mailq_main(args);
    case spoold::ctl::Personality::spoolctl:
      break;
  }
  return spoold::ctl::spoolctl_main(args);
}
