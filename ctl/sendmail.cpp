// ctl/sendmail.cpp — the sendmail personality: read stdin, check it, drop it into incoming/
// (-bs, SMTP on stdin/stdout, is ctl/smtp_stdio.cpp).
// Rule: exit 0 only once the drop file is durable (TempFile::commit: fsync, rename, fsync dir);
// nothing is written when the message is refused, and privileges are taken only for the write.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

#include "control/spool_options.h"
#include "ctl/app.h"
#include "ctl/privileges.h"
#include "ctl/submit.h"
#include "ctl/wait.h"
#include "spool/spool.h"

namespace spoold::ctl {
namespace {

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "sendmail: %s\n", message.c_str());
  return code;
}

SubmitOptions submit_options(const SendmailArgs& a, const config::Config& cfg) {
  SubmitOptions o;
  o.sender = a.sender;
  o.recipients = a.recipients;
  o.extract = a.extract;
  o.full_name = a.full_name;
  o.qualify_domain = cfg.hostname;
  o.default_sender = local_submitter().user + "@" + cfg.hostname;
  o.max_message_size = cfg.queue.max_message_size;
  o.dsn = {a.dsn_ret, a.dsn_envid};
  o.dsn_notify = a.dsn_notify;
  return o;
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int other_mode(const SendmailArgs& a, const std::string& config_flag) {
  CtlArgs c;
  c.config = a.config.empty() ? config_flag : a.config;
  switch (a.mode) {
    case SendmailMode::list:
      c.command = "list";
      return run_command(c, "sendmail");
    case SendmailMode::flush:
      c.command = "flush";
      return run_command(c, "sendmail");
    case SendmailMode::newaliases:  // -bi
      return run_newaliases(c.config, "sendmail");
    case SendmailMode::smtp:  // run_sendmail() handles it
    case SendmailMode::deliver:
      break;
  }
  return 0;
}

}  // namespace

LocalSubmitter local_submitter() {
  LocalSubmitter w;
  w.uid = static_cast<long>(::getuid());
  const passwd* pw = ::getpwuid(::getuid());
  w.user = pw && pw->pw_name && *pw->pw_name ? pw->pw_name : fmt::format("uid{}", w.uid);
  return w;
}

Result<void> ensure_spool_layout(const config::Config& cfg) {
  if (is_dir(cfg.spool_dir + "/incoming") && is_dir(cfg.spool_dir + "/tmp")) return {};
  auto sp = spool::Spool::open(control::spool_options(cfg));
  if (!sp) return sp.error();
  return {};
}

int run_sendmail(const SendmailArgs& a, const std::string& config_flag, int failed_code) {
  // -bs: nothing on stderr at start (Symfony Mailer fails a transport whose stderr speaks).
  if (a.mode == SendmailMode::smtp) return run_sendmail_smtp(a, config_flag);
  for (const auto& w : a.warnings) std::fprintf(stderr, "sendmail: %s\n", w.c_str());
  if (a.mode != SendmailMode::deliver) return other_mode(a, config_flag);
  if (a.recipients.empty() && !a.extract)
    return fail(kExUsage, "no recipients: name them on the command line or use -t");
  auto cfg = load_config(a.config.empty() ? config_flag : a.config, "sendmail");
  if (!cfg) return fail(kExConfig, cfg.error().message);
  auto message = read_message(STDIN_FILENO, a.ignore_dots, cfg->queue.max_message_size);
  if (!message) return fail(message.error().code, message.error().message);
  auto sub = build_submission(std::move(*message), submit_options(a, *cfg));
  if (!sub) return fail(sub.error().code ? sub.error().code : kExDataErr, sub.error().message);
  if (auto r = become_spool_owner(cfg->spool_dir); !r) return fail(kExTempFail, r.error().message);
  if (a.submit != SubmitMode::deferred)
    return submit_and_wait(*cfg, a.submit, a.wait_timeout, sub->drop, failed_code, "sendmail");
  Elevated priv;
  if (!priv.ok()) return fail(kExTempFail, "cannot take up the spool owner's identity");
  if (auto r = ensure_spool_layout(*cfg); !r)
    return fail(kExTempFail, "spool unusable: " + r.error().message);
  auto name = write_drop(cfg->spool_dir, sub->drop);
  if (!name) return fail(kExTempFail, "cannot write to the spool: " + name.error().message);
  return 0;
}

int sendmail_main(const std::vector<std::string>& args) {
  auto a = parse_sendmail_args(args);
  if (!a) {
    std::fprintf(stderr, "sendmail: %s\n%.*s", a.error().message.c_str(),
                 static_cast<int>(sendmail_usage().size()), sendmail_usage().data());
    return kExUsage;
  }
  bool submits = a->mode == SendmailMode::deliver || a->mode == SendmailMode::smtp;
  if (!setuid_active() || submits) return run_sendmail(*a, "");
  if (auto r = drop_setuid(); !r) return fail(1, r.error().message);
  return run_sendmail(*a, "");
}

}  // namespace spoold::ctl
