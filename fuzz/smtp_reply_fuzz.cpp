// fuzz/smtp_reply_fuzz.cpp — libFuzzer target for the SMTP client's untrusted inputs: what a server
// sends (the reply parser, and the whole engine fed a hostile byte stream with STARTTLS, AUTH and
// pipelining offered), and what a user stored (the body encoder).
// Rule: no input may crash, read out of bounds, loop forever, or make the engine send anything
// after it ended; every recipient of a submitted transaction ends with exactly one outcome; the
// encoded body never holds a bare CR or LF and ends the data exactly once, at its end.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "smtp/body_encoder.h"
#include "smtp/engine.h"
#include "smtp/reply.h"

using namespace spoold::smtp;

namespace {

void fuzz_parser(std::string_view data) {
  ReplyParser p;
  // Split the input at its first byte's value to exercise chunk boundaries.
  std::size_t cut = data.empty() ? 0 : static_cast<unsigned char>(data[0]) % (data.size() + 1);
  for (std::string_view piece : {data.substr(0, cut), data.substr(cut)}) {
    p.feed(piece);
    for (int i = 0; i < 100000; ++i) {
      auto r = p.next();
      if (!r || !r->ok()) break;
      (void)r->value().text();
    }
  }
}

void fuzz_engine(std::string_view data) {
  EngineOptions o;
  o.tls = TlsPolicy::opportunistic;
  o.envelope_limit = 2;
  o.auth = AuthOptions{AuthMechanism::automatic, "u", "p", true};
  Engine e(o);
  Transaction t;
  t.sender = "s@x";
  t.recipients = {"a@y", "b@y", "c@y", "d\xc3\xa9@y"};
  t.size = 10;
  std::size_t done_count = 0;
  e.start();
  std::size_t pos = 0;
  for (int round = 0; round < 10000 && pos < data.size(); ++round) {
    std::size_t len = 1 + static_cast<unsigned char>(data[pos]) % 64;
    e.receive(data.substr(pos + 1, len));
    pos += 1 + len;
    for (auto& ev : e.take_events()) {
      if (std::holds_alternative<Ready>(ev)) e.submit(t);
      if (std::holds_alternative<StartTls>(ev)) e.tls_done(pos % 2 == 0, "x");
      if (std::holds_alternative<BodyWanted>(ev)) {
        e.body_chunk("Subject: x\n\n.hi\r");
        e.body_end();
      }
      if (auto* d = std::get_if<TransactionDone>(&ev)) {
        ++done_count;
        if (d->result.recipients.size() != t.recipients.size()) __builtin_trap();
        e.quit();
      }
    }
    (void)e.take_output();
    if (e.ended() && e.has_output()) __builtin_trap();
  }
  e.timed_out();
  e.connection_closed("EOF");
  for (auto& ev : e.take_events())
    if (std::holds_alternative<TransactionDone>(ev)) ++done_count;
  if (done_count > 1) __builtin_trap();
  if (e.has_output()) __builtin_trap();
}

void fuzz_encoder(std::string_view data) {
  // Odd first octets convert to quoted-printable, as for a server without 8BITMIME.
  bool qp = !data.empty() && (static_cast<unsigned char>(data[0]) & 1);
  BodyEncoder enc({"Date: x"}, qp ? std::vector<std::string>{"Content-Transfer-Encoding: quoted-printable"}
                                  : std::vector<std::string>{});
  std::string out;
  std::size_t step = data.empty() ? 1 : 1 + static_cast<unsigned char>(data[0]) % 17;
  for (std::size_t i = 0; i < data.size(); i += step) enc.feed(data.substr(i, step), out);
  enc.finish(out);
  for (std::size_t at = 0, eol; (eol = out.find("\r\n", at)) != std::string::npos; at = eol + 2)
    if (eol - at > BodyEncoder::kMaxLine + (out[at] == '.' ? 1 : 0)) __builtin_trap();  // wrapped
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\r' && (i + 1 >= out.size() || out[i + 1] != '\n')) __builtin_trap();
    if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r')) __builtin_trap();
  }
  std::string_view w = out;
  if (!w.ends_with("\r\n.\r\n")) __builtin_trap();
  if (w.find("\r\n.\r\n") != w.size() - 5) __builtin_trap();  // no early end of data
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  fuzz_parser(in);
  fuzz_engine(in);
  fuzz_encoder(in);
  return 0;
}
