// ctl/submit.cpp — see submit.h. The envelope is always written explicitly ("envelope first"), also
// for -t: the caller learns about a message without recipients or with a bad address at once,
// from the exit code, instead of finding it in bad/ later; and the daemon parses what we checked.
#include "ctl/submit.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

#include <fmt/format.h>

#include "common/header_fields.h"
#include "common/header_lines.h"
#include "spool/atomic_write.h"
#include "spool/drop.h"

namespace spoold::ctl {
namespace {

constexpr size_t kChunk = 64 * 1024;

Error data_error(std::string message) {
  return make_error(std::move(message), kExDataErr);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// "root" → "root@host", "a, b@x" → "a@host, b@x": words of a list that cannot be anything but a
// bare local part get the domain, like other MTAs qualify local submissions.
std::string qualify(std::string_view list, std::string_view domain) {
  std::string out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    std::string_view piece =
        trim(list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (!out.empty()) out += ", ";
    out += piece;
    if (!piece.empty() && piece.find_first_of("@<>:;\"()[] \\") == std::string_view::npos)
      out += fmt::format("@{}", domain);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// Addresses of one command-line word or header value; unqualified ones are tried with the domain.
Result<std::vector<std::string>> addresses(std::string_view text, std::string_view domain) {
  auto raw = spool::parse_address_list(text);
  if (raw && std::all_of(raw->begin(), raw->end(),
                         [](const std::string& a) { return a.empty() || spool::valid_mailbox(a); }))
    return raw;
  auto qualified = spool::parse_address_list(qualify(text, domain));
  if (qualified) return qualified;
  return raw ? qualified : raw;
}

Result<std::string> envelope_sender(std::string_view text, std::string_view domain) {
  std::string_view s = trim(text);
  if (s.size() >= 2 && s.front() == '<' && s.back() == '>') s = trim(s.substr(1, s.size() - 2));
  if (s.empty()) return std::string();  // the null sender
  std::string addr(s);
  if (addr.find('@') == std::string::npos) addr += fmt::format("@{}", domain);
  if (!spool::valid_mailbox(addr)) return data_error(fmt::format("bad sender address '{}'", text));
  return addr;
}

// A display name as an RFC 5322 phrase: atoms as they are, anything else quoted; CR and LF can
// never reach the header (they would start a new field).
std::string phrase(std::string_view name) {
  std::string clean;
  for (char c : name) clean += (c == '\r' || c == '\n') ? ' ' : c;
  bool plain = std::all_of(clean.begin(), clean.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || u >= 0x80 ||
           std::string_view(" !#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
  });
  if (plain) return std::string(trim(clean));
  std::string q = "\"";
  for (char c : clean) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

// Adds "From:" when the message has none. A message whose first line is no header (plain text
// piped to sendmail) gets an empty line after it, so the text stays the body.
std::string with_from(const std::string& message, const std::string& addr, const std::string& full_name) {
  std::string from = full_name.empty() ? fmt::format("From: {}\n", addr)
                                       : fmt::format("From: {} <{}>\n", phrase(full_name), addr);
  size_t eol = message.find('\n');
  HeaderLineKind first = HeaderWalker().next(header_line(std::string_view(message).substr(0, eol)));
  bool headers = first == HeaderLineKind::field;
  bool blank_first = first == HeaderLineKind::end && eol != std::string::npos;
  if (!headers && !blank_first) from += "\n";
  return from + message;
}

std::string drop_mbox_line(std::string message) {
  if (message.rfind("From ", 0) != 0) return message;
  size_t eol = message.find('\n');
  return eol == std::string::npos ? std::string() : message.substr(eol + 1);
}

void add_unique(std::vector<std::string>& to, std::vector<std::string> more) {
  for (auto& a : more)
    if (!a.empty() && std::find(to.begin(), to.end(), a) == to.end()) to.push_back(std::move(a));
}

Result<std::vector<std::string>> recipients_of(const std::vector<HeaderField>& fields,
                                               const SubmitOptions& o) {
  std::vector<std::string> out;
  for (const auto& word : o.recipients) {
    auto list = addresses(word, o.qualify_domain);
    if (!list) return data_error(fmt::format("bad recipient address '{}': {}", word, list.error().message));
    add_unique(out, std::move(*list));
  }
  if (!o.extract) return out;
  for (const auto& f : fields) {
    if (!is_recipient_field(f.name)) continue;
    auto list = addresses(f.value, o.qualify_domain);
    if (!list) {
      std::string field = f.name == "to" ? "To" : f.name == "cc" ? "Cc" : "Bcc";
      return data_error(fmt::format("bad address in the {}: header: {}", field, list.error().message));
    }
    add_unique(out, std::move(*list));
  }
  return out;
}

// With -t and no -f the sender is what the headers say (Sender:, else From:), as for a bare drop.
std::string header_sender(const std::vector<HeaderField>& fields, const std::string& fallback) {
  for (const char* name : {"sender", "from"}) {
    for (const auto& f : fields) {
      if (f.name != name) continue;
      auto list = spool::parse_address_list(f.value);
      if (list && !list->empty() && spool::valid_mailbox(list->front())) return list->front();
    }
  }
  return fallback;
}

}  // namespace

Result<std::string> read_message(int fd, bool ignore_dots, uint64_t max_size) {
  std::string buf;
  size_t line_start = 0;
  // Not a zero-filled std::string: clearing 64 KiB was a seventh of a 1 KiB sendmail run.
  auto chunk = std::make_unique_for_overwrite<char[]>(kChunk);
  for (;;) {
    ssize_t n = ::read(fd, chunk.get(), kChunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return data_error(fmt::format("reading the message: {}", std::strerror(errno)));
    if (n == 0) break;
    size_t scan_from = buf.size();
    buf.append(chunk.get(), static_cast<size_t>(n));
    if (!ignore_dots) {
      for (size_t nl = buf.find('\n', scan_from); nl != std::string::npos; nl = buf.find('\n', nl + 1)) {
        std::string_view line(buf.data() + line_start, nl - line_start);
        if (line == "." || line == ".\r") {
          buf.resize(line_start);
          return buf;
        }
        line_start = nl + 1;
      }
    }
    if (buf.size() > max_size + 3)  // room for a final ".\r\n"
      return data_error(fmt::format("message larger than max_message_size ({} bytes)", max_size));
  }
  if (!ignore_dots && std::string_view(buf).substr(line_start) == ".") buf.resize(line_start);
  return buf;
}

Result<Submission> build_submission(std::string message, const SubmitOptions& o) {
  message = drop_mbox_line(std::move(message));
  Submission s;
  std::string from_addr = o.default_sender;
  if (o.sender) {
    auto snd = envelope_sender(*o.sender, o.qualify_domain);
    if (!snd) return snd.error();
    s.sender = *snd;
    if (!s.sender.empty()) from_addr = s.sender;
  }
  auto fields = header_fields(message);
  if (std::none_of(fields.begin(), fields.end(), [](const HeaderField& f) { return f.name == "from"; })) {
    message = with_from(message, from_addr, o.full_name);
    fields = header_fields(message);
  }
  if (!o.sender) s.sender = o.extract ? header_sender(fields, o.default_sender) : o.default_sender;
  auto rcpts = recipients_of(fields, o);
  if (!rcpts) return rcpts.error();
  s.recipients = std::move(*rcpts);
  if (s.recipients.empty())
    return data_error(o.extract ? "no recipients: none on the command line and none in To:, Cc: or Bcc:"
                                : "no recipients given");
  if (message.size() > o.max_message_size)
    return data_error(fmt::format("message of {} bytes is larger than max_message_size ({} bytes)",
                                  message.size(), o.max_message_size));
  if (!message.empty() && message.back() != '\n') message += '\n';
  std::vector<spool::RecipientDsn> rcpt_dsn;
  if (!o.dsn_notify.empty()) rcpt_dsn.assign(s.recipients.size(), spool::RecipientDsn{o.dsn_notify, ""});
  s.drop = spool::drop_envelope(s.sender, s.recipients, o.dsn, rcpt_dsn) + message;
  if (auto check = spool::parse_drop(s.drop); !check) return data_error(check.error().message);
  return s;
}

Result<std::string> write_drop(const std::string& spool_dir, std::string_view drop, std::string name) {
  auto tmp = spool::TempFile::create(spool_dir + "/tmp");
  if (!tmp) return make_error(tmp.error().message, kExTempFail);
  if (auto r = tmp->write(drop); !r) return make_error(r.error().message, kExTempFail);
  if (name.empty()) name = fmt::format("sendmail.{}.{}", std::time(nullptr), spool::unique_suffix());
  if (auto r = tmp->commit(spool_dir + "/incoming/" + name); !r)
    return make_error(r.error().message, kExTempFail);
  return name;
}

}  // namespace spoold::ctl
