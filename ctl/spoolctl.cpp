// ctl/spoolctl.cpp — spoolctl and mailq: ask the daemon over the control socket; when nobody
// listens there, answer from the spool directly (control/views.h, control/ops.h) and say so.
// Rule: the daemon's answer and the offline answer are the same JSON and print the same way.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "common/clock.h"
#include "control/ops.h"
#include "control/protocol.h"
#include "control/spool_options.h"
#include "ctl/app.h"
#include "ctl/format.h"
#include "ctl/privileges.h"
#include "ctl/submit.h"

namespace spoold::ctl {
namespace {

using control::Json;

// The only config a set-uid run trusts: the caller could otherwise name any file.
constexpr const char* kSystemConfig = "/etc/spoold/spoold.yaml";

bool is_read_command(const std::string& cmd) {
  return cmd == "status" || cmd == "list" || cmd == "show";
}

Json request_of(const CtlArgs& a) {
  Json req = Json().set("cmd", a.command);
  if (a.tier) req.set("tier", *a.tier);
  if (!a.domain.empty()) req.set("domain", a.domain);
  if (!a.place.empty()) req.set("place", a.place);
  if (a.limit) req.set("limit", *a.limit);
  if (a.command == "show") {
    req.set("id", a.ids.front());
  } else if (!a.ids.empty()) {
    Json ids = Json::Array{};
    for (const auto& id : a.ids) ids.push(id);
    req.set("ids", std::move(ids));
  }
  return req;
}

// The offline answer: the same request handled by control::answer_from_spool.
Result<Json> answer_offline(const config::Config& cfg, const Json& req) {
  struct stat st {};
  if (::stat(cfg.spool_dir.c_str(), &st) != 0)
    return make_error(fmt::format("spool {} does not exist (has spoold ever run?)", cfg.spool_dir));
  if (auto r = become_spool_owner(cfg.spool_dir); !r) return r.error();
  auto sp = spool::Spool::open(control::spool_options(cfg));
  if (!sp) return sp.error();
  return control::answer_from_spool(*sp, req, unix_now());
}

// The daemon's answer, or the spool's when the control socket is absent or refuses connections.
Result<Json> ask(const config::Config& cfg, const Json& req, const char* prog) {
  auto answer = control::call(cfg.control_socket, req);
  if (answer) return answer;
  int code = answer.error().code;
  if (code != ENOENT && code != ECONNREFUSED)
    return make_error(
        fmt::format("cannot talk to spoold at {}: {}", cfg.control_socket, answer.error().message));
  const std::string& cmd = req["cmd"].as_string();
  if (cmd == "bounce" || cmd == "reload")
    return make_error(fmt::format("{} needs the running daemon (not running)", cmd));
  std::fprintf(stderr, "%s: daemon not running; %s the spool directly\n", prog,
               is_read_command(cmd) ? "reading" : "acting on");
  return answer_offline(cfg, req);
}

int print_answer(const CtlArgs& a, const Json& answer, const char* prog) {
  if (a.json) {  // scripts get the answer as it is, errors included
    std::string line = answer.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  if (!answer["ok"].as_bool()) {
    std::fprintf(stderr, "%s: %s\n", prog, answer["error"].as_string().c_str());
    return 1;
  }
  int64_t now = unix_now();
  std::string out;
  if (a.json) {
    // printed above
  } else if (a.command == "status") {
    out = format_status(answer, now);
  } else if (a.command == "list") {
    out = format_list(answer, now);
  } else if (a.command == "show") {
    out = format_show(answer, now);
  } else if (a.command != "reload") {
    out = format_op(answer, a.command);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  const auto& errors = answer["errors"].as_object();
  for (const auto& [id, text] : errors)
    std::fprintf(stderr, "%s: %s: %s\n", prog, id.c_str(), text.as_string().c_str());
  return errors.empty() ? 0 : 1;
}

// One record as a line: the log's text format for a delivery, a short line for the rest.
std::string format_record(const Json& r) {
  const std::string& event = r["event"].as_string();
  if (event == "delivery")
    return fmt::format("{}: to=<{}>, relay={}, delay={:.2f}, tier={}, dsn={}, status={} ({})\n",
                       r["qid"].as_string(), r["to"].as_string(), r["relay"].as_string(),
                       r["delay"].as_double(), r["tier"].as_int(), r["dsn"].as_string(),
                       r["status"].as_string(), r["reason"].as_string());
  if (event == "attempt")
    return fmt::format("{}: attempt over: {} recipients pending ({})\n", r["qid"].as_string(),
                       r["pending"].as_int(), r["action"].as_string());
  return r.dump() + "\n";
}

// spoolctl watch: outcome records from the daemon until it stops (exit 0) or is not there (1).
int run_watch(const CtlArgs& a, const char* prog) {
  auto cfg = load_config(a.config, prog);
  if (!cfg) {
    std::fprintf(stderr, "%s: %s\n", prog, cfg.error().message.c_str());
    return 1;
  }
  auto c = control::Connection::open(cfg->control_socket);
  if (!c) {
    std::fprintf(stderr, "%s: watch needs the running daemon: %s\n", prog, c.error().message.c_str());
    return 1;
  }
  Json req = request_of(a);
  if (auto r = c->send(req); !r) {
    std::fprintf(stderr, "%s: %s\n", prog, r.error().message.c_str());
    return 1;
  }
  auto first = c->read(std::chrono::seconds(10));
  if (!first || !(*first)["ok"].as_bool()) {
    std::fprintf(stderr, "%s: %s\n", prog,
                 first ? (*first)["error"].as_string().c_str() : first.error().message.c_str());
    return 1;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one record, one line, at once (pipes too)
  for (;;) {
    auto r = c->read(std::chrono::hours(24));
    if (!r) {
      if (r.error().code == ETIMEDOUT) continue;
      std::fprintf(stderr, "%s: %s\n", prog, r.error().message.c_str());
      return r.error().code == ECONNRESET ? 0 : 1;
    }
    if ((*r)["event"].as_string() == "lost")
      std::fprintf(stderr, "%s: %lld records lost (this reader was too slow)\n", prog,
                   static_cast<long long>((*r)["count"].as_int()));
    if (!a.json && (*r)["event"].as_string() == "lost") continue;
    std::string line = a.json ? r->dump() + "\n" : format_record(*r);
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size()) return 1;  // reader gone
  }
}

}  // namespace

Result<config::Config> load_config(const std::string& flag, const char* prog, bool read_aliases_file,
                                   bool quiet) {
  const config::LoadOptions options{.read_aliases_file = read_aliases_file};
  std::string path = config::default_path(flag);
  if (setuid_active()) {
    const std::string trusted = kSystemConfig;
    if (path != trusted && !quiet)
      std::fprintf(stderr, "%s: set-uid: ignoring config %s, using %s\n", prog, path.c_str(),
                   trusted.c_str());
    path = trusted;
    Elevated priv;  // the trusted file may name password files only the spool owner can read
    return config::load_file(path, options);
  }
  return config::load_file(path, options);
}

int run_command(const CtlArgs& a, const char* prog) {
  if (a.command == "send") {
    auto s = parse_sendmail_args(a.send_args);
    if (!s) {
      std::fprintf(stderr, "%s: %s\n%.*s", prog, s.error().message.c_str(),
                   static_cast<int>(sendmail_usage().size()), sendmail_usage().data());
      return kExUsage;
    }
    if (!a.send_mode.empty())
      s->submit = a.send_mode == "interactive"  ? SubmitMode::interactive
                  : a.send_mode == "background" ? SubmitMode::background
                                                : SubmitMode::deferred;
    if (a.send_timeout) s->wait_timeout = *a.send_timeout;
    return run_sendmail(*s, a.config, 1);
  }
  if (auto r = drop_setuid(); !r) {
    std::fprintf(stderr, "%s: %s\n", prog, r.error().message.c_str());
    return 1;
  }
  if (a.command == "watch") return run_watch(a, prog);
  auto cfg = load_config(a.config, prog);
  if (!cfg) {
    std::fprintf(stderr, "%s: %s\n", prog, cfg.error().message.c_str());
    return 1;
  }
  auto answer = ask(*cfg, request_of(a), prog);
  if (!answer) {
    std::fprintf(stderr, "%s: %s\n", prog, answer.error().message.c_str());
    return 1;
  }
  return print_answer(a, *answer, prog);
}

int spoolctl_main(const std::vector<std::string>& args) {
  auto a = parse_ctl_args(args);
  if (!a) {
    std::fprintf(stderr, "spoolctl: %s\n%.*s", a.error().message.c_str(),
                 static_cast<int>(spoolctl_usage().size()), spoolctl_usage().data());
    return 2;
  }
  if (a->help) {
    std::fwrite(spoolctl_usage().data(), 1, spoolctl_usage().size(), stdout);
    return 0;
  }
  return run_command(*a, "spoolctl");
}

int mailq_main(const std::vector<std::string>& args) {
  auto a = parse_mailq_args(args);
  if (!a) {
    std::fprintf(stderr, "mailq: %s\nusage: mailq [-C FILE | --config FILE] [--json]\n",
                 a.error().message.c_str());
    return 2;
  }
  return run_command(*a, "mailq");
}

}  // namespace spoold::ctl
