// tests/reliability/rel_util.cpp — see rel_util.h.
#include "tests/reliability/rel_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>

namespace spoold::test::rel {

std::string message(const std::string& mid, const std::string& from, const std::vector<std::string>& rcpts,
                    const std::string& body) {
  std::string m = "MAIL FROM:<" + from + ">\n";
  for (const auto& r : rcpts) m += "RCPT TO:<" + r + ">\n";
  m += "\nFrom: <" + from + ">\nTo: <" + rcpts.at(0) + ">\nSubject: reliability " + mid + "\nMessage-ID: <" +
       mid + ">\n\n" + body;
  return m;
}

std::string message_id(const std::string& data) {
  size_t pos = 0;
  while (pos < data.size()) {
    size_t eol = data.find('\n', pos);
    if (eol == std::string::npos) eol = data.size();
    std::string line = data.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) break;  // end of the header section
    if (line.size() > 11) {
      std::string name = line.substr(0, 11);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      if (name == "message-id:") {
        auto lt = line.find('<'), gt = line.find('>');
        if (lt != std::string::npos && gt != std::string::npos && gt > lt)
          return line.substr(lt + 1, gt - lt - 1);
      }
    }
    pos = eol + 1;
  }
  return "";
}

std::map<std::string, int> message_id_counts(const Sink& sink) {
  std::map<std::string, int> out;
  for (const auto& m : sink.messages()) ++out[message_id(m.data)];
  return out;
}

int run_spoold(const std::string& config, const std::vector<std::string>& args,
               const std::vector<std::string>& env, const std::string& log_path,
               std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{Env::spoold_binary(), "--config", config};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, "", log_path, env);
  int st = p.wait(timeout);
  if (st == -1) {
    p.stop(SIGKILL);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

namespace {
void walk(const std::string& root, const std::string& rel, std::vector<std::string>& out) {
  DIR* d = ::opendir((root + "/" + rel).c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string r = rel.empty() ? n : rel + "/" + n;
    struct stat st {};
    if (::lstat((root + "/" + r).c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode))
      walk(root, r, out);
    else
      out.push_back(r);
  }
  ::closedir(d);
}
}  // namespace

std::vector<std::string> spool_files(const std::string& spool) {
  std::vector<std::string> out;
  walk(spool, "", out);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> leftovers(const std::string& spool) {
  std::set<std::string> failed_ids;
  for (const auto& f : spool_files(spool))
    if (f.rfind("failed/", 0) == 0 && f.find('-') != std::string::npos)
      failed_ids.insert(f.substr(f.find('-') + 1));
  std::vector<std::string> out;
  for (const auto& f : spool_files(spool)) {
    if (f == "VERSION" || f.rfind("failed/", 0) == 0) {
      if (f.find(".lock") != std::string::npos) out.push_back(f);
      continue;
    }
    if (f.rfind("data/", 0) == 0 && failed_ids.count(f.substr(5)) && f.find(".lock") == std::string::npos)
      continue;
    out.push_back(f);
  }
  return out;
}

long rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

}  // namespace spoold::test::rel
