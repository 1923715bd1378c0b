// fuzz/smtp_server_fuzz.cpp — libFuzzer target for the SMTP server engine's untrusted input: what
// a client sends (commands, AUTH exchanges, STARTTLS, pipelined groups, message data), with a
// host that answers every event at once; and the DATA reader alone.
// Rule: no input may crash, read out of bounds or grow memory without bound; the output is always
// whole reply lines with a 3-digit code (multi-line replies consistent); a 250 after a 354 only
// ever answers a MessageEnd the host stored; message events come in order (Begin, Data…, then End
// or Aborted); nothing is sent or reported after the session ended. The DATA reader gives the
// same bytes for every split of its input, and never a bare LF. base64 round-trips.
// Only the server's sources (not the whole smtp/ library with its libuv session):
// clang-format off
// fuzz-sources: smtp/server_engine.cpp smtp/server_commands.cpp smtp/data_reader.cpp smtp/reply.cpp smtp/base64.cpp smtp/types.cpp
// clang-format on
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "smtp/base64.h"
#include "smtp/data_reader.h"
#include "smtp/server.h"

using namespace spoold::smtp::server;

namespace {

// Every line is "NNN" then ' ' or '-', printable ASCII, CRLF-terminated; a '-' line is followed
// by a line of the same code. Counts the 250s that answer a final dot.
struct OutputChecker {
  bool after_354 = false;  // the next final reply answers the message data
  int open_code = 0;       // inside a multi-line reply
  std::size_t stored_ok = 0;

  void check(std::string_view out) {
    if (!out.empty() && !out.ends_with("\r\n")) __builtin_trap();
    std::size_t p = 0;
    while (p < out.size()) {
      std::size_t e = out.find("\r\n", p);
      std::string_view line = out.substr(p, e - p);
      p = e + 2;
      if (line.size() < 4) __builtin_trap();
      for (int i = 0; i < 3; ++i)
        if (line[i] < '0' || line[i] > '9') __builtin_trap();
      int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
      if (code < 200 || code > 599) __builtin_trap();
      if (line[3] != ' ' && line[3] != '-') __builtin_trap();
      for (char c : line)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) __builtin_trap();
      if (open_code != 0 && code != open_code) __builtin_trap();
      if (line[3] == '-') {
        open_code = code;
        continue;
      }
      open_code = 0;
      if (after_354) {
        after_354 = false;
        if (code == 250) {  // only for a message the host said was stored
          if (stored_ok == 0) __builtin_trap();
          --stored_ok;
        }
      }
      if (code == 354) after_354 = true;
    }
  }
};

void fuzz_engine(std::string_view data) {
  if (data.empty()) return;
  auto flags = static_cast<unsigned char>(data[0]);
  ServerOptions o;
  o.hostname = "mx.test";
  o.starttls = flags & 1;
  o.auth = flags & 2;
  o.loopback = flags & 4;
  o.implicit_tls = flags & 8;
  o.max_message_size = (flags & 16) ? 0 : 2000;
  o.max_recipients = 3;
  o.max_errors = (flags & 32) ? 3 : 1000;
  o.max_line = 512;
  ServerEngine e(o);
  OutputChecker out;
  bool in_message = false;
  int verdicts = 0;
  e.start();
  out.check(e.take_output());
  std::size_t pos = 1;
  for (int round = 0; round < 20000 && pos < data.size(); ++round) {
    std::size_t len = 1 + static_cast<unsigned char>(data[pos]) % 64;
    std::string_view piece = data.substr(pos + 1, len);
    pos += 1 + len;
    bool was_ended = e.ended();
    e.feed(piece);
    // The host: every answer at once (answers make the engine read on, so loop until quiet).
    for (int guard = 0; guard < 100000; ++guard) {
      auto events = e.take_events();
      if (events.empty()) break;
      if (was_ended) __builtin_trap();
      for (auto& ev : events) {
        if (std::holds_alternative<RcptRequest>(ev)) {
          int k = verdicts++ % 3;
          e.rcpt_verdict(k == 0   ? Verdict{250, "", ""}
                         : k == 1 ? Verdict{550, "5.1.1", "no"}
                                  : Verdict{451, "", ""});
        } else if (auto* a = std::get_if<AuthRequest>(&ev)) {
          e.auth_verdict(a->user == "u", a->user);
        } else if (std::holds_alternative<MessageBegin>(ev)) {
          if (in_message) __builtin_trap();
          in_message = true;
        } else if (auto* d = std::get_if<MessageData>(&ev)) {
          if (!in_message || d->bytes.empty() || d->bytes.size() > ServerEngine::kDataChunk) __builtin_trap();
        } else if (std::holds_alternative<MessageEnd>(ev)) {
          if (!in_message) __builtin_trap();
          in_message = false;
          bool ok = verdicts++ % 2 == 0;
          if (ok) ++out.stored_ok;
          if (ok || verdicts % 3 == 0)
            e.message_stored(ok, ok ? "Q1" : "disk error");
          else
            e.message_refused({452, "4.3.1", "full"});
        } else if (std::holds_alternative<MessageAborted>(ev)) {
          if (!in_message) __builtin_trap();
          in_message = false;
        } else if (std::holds_alternative<StartTls>(ev)) {
          e.tls_started();
        }
      }
    }
    std::string o2 = e.take_output();
    if (was_ended && !o2.empty()) __builtin_trap();
    out.check(o2);
    if (e.buffered() > ServerEngine::kMaxBuffered) __builtin_trap();
  }
  if (flags & 64) e.timed_out();
  e.closed();
  e.take_events();
  out.check(e.take_output());
}

void fuzz_reader(std::string_view data) {
  DataReader whole;
  std::string a;
  std::size_t used = whole.feed(data, a);
  if (used > data.size() || (!whole.done() && used != data.size())) __builtin_trap();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] == '\n' && (i == 0 || a[i - 1] != '\r')) __builtin_trap();
  if (a.size() != whole.size()) __builtin_trap();
  std::size_t cut = data.empty() ? 0 : static_cast<unsigned char>(data[0]) % (data.size() + 1);
  DataReader split;
  std::string b;
  std::size_t n = split.feed(data.substr(0, cut), b);
  if (!split.done()) n += split.feed(data.substr(n), b);
  if (n != used || b != a || split.done() != whole.done()) __builtin_trap();
}

// base64 (what AUTH lines carry): any input decodes or is refused without a crash; encoding
// then decoding gives the bytes back; what decodes is never longer than 3/4 of the input.
void fuzz_base64(std::string_view data) {
  auto decoded = spoold::smtp::base64::decode(data);
  if (decoded && decoded->size() > data.size() / 4 * 3) __builtin_trap();
  auto back = spoold::smtp::base64::decode(spoold::smtp::base64::encode(data));
  if (!back || *back != data) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  fuzz_engine(in);
  fuzz_reader(in);
  fuzz_base64(in);
  return 0;
}
