// ctl/privileges.cpp — see privileges.h.
#include "ctl/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace spoold::ctl {
namespace {

uid_t g_saved_uid = 0;
bool g_setuid = false;

Error errno_error(std::string_view what) {
  return make_error(fmt::format("{}: {}", what, std::strerror(errno)), errno);
}

}  // namespace

void setuid_init() {
  uid_t real = ::getuid(), eff = ::geteuid();
  if (real == eff || real == 0) return;
  g_saved_uid = eff;
  g_setuid = true;
  if (::seteuid(real) != 0) ::_exit(71);  // EX_OSERR: never go on with privileges we did not mean to keep
}

bool setuid_active() {
  return g_setuid;
}

Result<void> drop_setuid() {
  if (!g_setuid) return {};
  uid_t real = ::getuid();
  if (::setresuid(real, real, real) != 0) return errno_error("setresuid");
  g_setuid = false;
  return {};
}

Elevated::Elevated() {
  if (!g_setuid) return;
  ok_ = ::seteuid(g_saved_uid) == 0;
  changed_ = ok_;
}

Elevated::~Elevated() {
  if (changed_ && ::seteuid(::getuid()) != 0) ::_exit(71);
}

Result<void> become_spool_owner(const std::string& spool_dir) {
  if (::geteuid() != 0) return {};
  struct stat st {};
  if (::stat(spool_dir.c_str(), &st) != 0 || st.st_uid == 0) return {};
  gid_t gid = st.st_gid;
  const passwd* pw = ::getpwuid(st.st_uid);
  if (pw) gid = pw->pw_gid;
  if (pw ? ::initgroups(pw->pw_name, gid) != 0 : ::setgroups(0, nullptr) != 0)
    return errno_error("setgroups");
  if (::setresgid(gid, gid, gid) != 0) return errno_error("setresgid");
  if (::setresuid(st.st_uid, st.st_uid, st.st_uid) != 0) return errno_error("setresuid");
  return {};
}

}  // namespace spoold::ctl
