// tests/smtp/engine_test.cpp — the sans-IO engine driven by scripted server byte streams.
// Each scenario is data: what the server says, the exact bytes the client must answer, and the
// per-recipient outcomes at the end. The harness plays the transport: it submits the transaction
// when the engine is ready, feeds the body when asked, completes TLS handshakes, and QUITs after
// the transaction.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <functional>
#include <string>
#include <vector>

#include "smtp/auth.h"
#include "smtp/base64.h"
#include "smtp/engine.h"

using namespace spoold::smtp;

namespace {

const std::string kBody = "Subject: t\n\nhi\n.\n";
const std::string kWire = "Subject: t\r\n\r\nhi\r\n..\r\n.\r\n";

struct Harness {
  Engine engine;
  Transaction txn;
  std::string body = kBody;
  bool submit_on_ready = true;
  bool quit_after = true;
  bool tls_ok = true;
  std::vector<std::string> outcomes;  // "addr status code enhanced[ dup]"
  std::vector<std::string> trace;
  std::vector<std::string> logged;  // commands as the transcript would show them
  std::string ended;                // "status code enhanced: text"
  std::size_t injected = 0;
  int rcpt_events = 0;
  std::vector<std::string> notes;  // of every TransactionDone

  Harness(EngineOptions opt, Transaction t)
      : engine(std::move(opt),
               EngineHooks{[this](State a, State b) {
                             trace.push_back(fmt::format("{}>{}", to_string(a), to_string(b)));
                           },
                           [this](std::string_view c) { logged.emplace_back(c); }, nullptr}),
        txn(std::move(t)) {}

  void drain() {
    for (int guard = 0; guard < 100; ++guard) {
      auto events = engine.take_events();
      if (events.empty()) return;
      for (auto& ev : events) handle(ev);
    }
    FAIL("event loop did not settle");
  }

  void handle(Event& ev) {
    if (std::holds_alternative<Ready>(ev) && submit_on_ready) {
      engine.submit(txn);
    } else if (std::holds_alternative<StartTls>(ev)) {
      engine.tls_done(tls_ok, tls_ok ? "" : "certificate verify failed");
    } else if (std::holds_alternative<BodyWanted>(ev)) {
      for (std::size_t i = 0; i < body.size(); i += 5) engine.body_chunk(std::string_view(body).substr(i, 5));
      engine.body_end();
    } else if (auto* inj = std::get_if<ResponseInjected>(&ev)) {
      injected += inj->bytes;
    } else if (std::holds_alternative<RecipientReplied>(ev)) {
      ++rcpt_events;
    } else if (auto* done = std::get_if<TransactionDone>(&ev)) {
      notes.insert(notes.end(), done->result.notes.begin(), done->result.notes.end());
      for (auto& r : done->result.recipients)
        outcomes.push_back(fmt::format("{} {} {} {}{}", r.address, to_string(r.outcome.status),
                                       r.outcome.code, r.outcome.enhanced,
                                       r.outcome.possible_duplicate ? " dup" : ""));
      if (quit_after) engine.quit();
    } else if (auto* end = std::get_if<SessionEnded>(&ev)) {
      ended = fmt::format("{} {} {}: {}", to_string(end->reason.status), end->reason.code,
                          end->reason.enhanced, end->reason.text);
    }
  }

  // "<timeout>", "<eof>" are transport happenings; anything else is what the server sends.
  std::string server(const std::string& s) {
    if (s == "<start>")
      engine.start();
    else if (s == "<timeout>")
      engine.timed_out();
    else if (s == "<eof>")
      engine.connection_closed("EOF");
    else
      engine.receive(s);
    drain();
    return engine.take_output();
  }
};

Transaction txn(std::vector<std::string> rcpts, std::uint64_t size = 100) {
  Transaction t;
  t.sender = "s@x.test";
  t.recipients = std::move(rcpts);
  t.size = size;
  return t;
}

EngineOptions opts(TlsPolicy tls = TlsPolicy::none) {
  EngineOptions o;
  o.ehlo_name = "client.test";
  o.tls = tls;
  return o;
}

// A well-behaved server: it answers only after the client's pending bytes went out.
void serve(Engine& e, std::string_view reply) {
  e.take_output();
  e.receive(reply);
}

struct Scenario {
  std::string name;
  EngineOptions options;
  Transaction txn;
  std::vector<std::pair<std::string, std::string>> dialogue;  // server says → client answers exactly
  std::vector<std::string> outcomes;
  State final_state;
  std::string ended_prefix;  // the SessionEnded reason starts with this
};

const std::string kEhloPlain = "250-mx.test\r\n250 SIZE 1000000\r\n";
const std::string kEhloPipe = "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";

std::vector<Scenario> scenarios() {
  std::vector<Scenario> v;
  v.push_back({"lock-step delivery",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test ESMTP\r\n", "EHLO client.test\r\n"},
                {kEhloPlain, "MAIL FROM:<s@x.test> SIZE=100\r\n"},
                {"250 2.1.0 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"250 2.1.5 ok\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"250 2.0.0 queued as X\r\n", "QUIT\r\n"},
                {"221 2.0.0 bye\r\n", ""}},
               {"a@y.test sent 250 2.0.0"},
               State::closed,
               "sent 221"});
  v.push_back({"pipelined: MAIL, RCPTs and DATA in one write, replies in order",
               opts(),
               txn({"a@y.test", "b@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {kEhloPipe, "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"},
                {"250 ok\r\n250 ok\r\n", ""},
                {"550 5.1.1 no such user\r\n354 go\r\n", kWire},
                {"250 ok\r\n", "QUIT\r\n"},
                {"221 bye\r\n", ""}},
               {"a@y.test sent 250 ", "b@y.test permanent 550 5.1.1"},
               State::closed,
               "sent 221"});
  v.push_back({"pipelined: no RCPT accepted, DATA refused → RSET, no body",
               opts(),
               txn({"b@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {kEhloPipe, "MAIL FROM:<s@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"},
                {"250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n", "RSET\r\n"},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"b@y.test permanent 550 5.1.1"},
               State::quit,
               ""});
  v.push_back({"pipelined: no RCPT accepted but 354 → lone dot, then RSET",
               opts(),
               txn({"b@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {kEhloPipe, "MAIL FROM:<s@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"},
                {"250 ok\r\n450 4.2.0 later\r\n354 go\r\n", ".\r\n"},
                {"554 no recipients\r\n", "RSET\r\n"},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"b@y.test temporary 450 4.2.0"},
               State::quit,
               ""});
  v.push_back({"pipelined: sender refused, RCPT replies ignored",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {kEhloPipe, "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\nDATA\r\n"},
                {"550 5.1.8 bad sender\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n", "RSET\r\n"},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"a@y.test permanent 550 5.1.8"},
               State::quit,
               ""});
  v.push_back({"EHLO refused → HELO, no extensions used",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 old.test\r\n", "EHLO client.test\r\n"},
                {"502 what?\r\n", "HELO client.test\r\n"},
                {"250 old.test\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"250 ok\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"a@y.test sent 250 "},
               State::quit,
               ""});
  {
    EngineOptions o = opts();
    o.envelope_limit = 2;
    v.push_back({"envelope_limit splits into transactions on one connection",
                 o,
                 txn({"a@y.test", "b@y.test", "c@y.test"}),
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {kEhloPipe, "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"},
                  {"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", kWire},
                  {"250 first\r\n", "MAIL FROM:<s@x.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"},
                  {"250 ok\r\n250 ok\r\n354 go\r\n", kWire},
                  {"250 second\r\n", "QUIT\r\n"}},
                 {"a@y.test sent 250 ", "b@y.test sent 250 ", "c@y.test sent 250 "},
                 State::quit,
                 ""});
  }
  v.push_back({"452 too many recipients: the rest go in the next transaction",
               opts(),
               txn({"a@y.test", "b@y.test", "c@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx.test\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<b@y.test>\r\n"},
                {"452 4.5.3 too many recipients\r\n", "RCPT TO:<c@y.test>\r\n"},
                {"452 4.5.3 too many recipients\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"250 ok\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<b@y.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<c@y.test>\r\n"},
                {"552 5.5.3 too many recipients\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"250 ok\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<c@y.test>\r\n"},
                {"250 ok\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"a@y.test sent 250 ", "b@y.test sent 250 ", "c@y.test sent 250 "},
               State::quit,
               ""});
  v.push_back({"452 for every recipient: no retry loop, temporary",
               opts(),
               txn({"a@y.test", "b@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx.test\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"452 4.5.3 too many\r\n", "RCPT TO:<b@y.test>\r\n"},
                {"452 4.5.3 too many\r\n", "RSET\r\n"},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"a@y.test temporary 452 4.5.3", "b@y.test temporary 452 4.5.3"},
               State::quit,
               ""});
  v.push_back({"message over the announced SIZE: permanent, nothing sent",
               opts(),
               txn({"a@y.test"}, 5000),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250-mx\r\n250 SIZE 4999\r\n", "QUIT\r\n"}},
               {"a@y.test permanent 0 5.3.4"},
               State::quit,
               ""});
  v.push_back({"sender refused in lock-step → RSET",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"451 4.3.0 try later\r\n", "RSET\r\n"},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"a@y.test temporary 451 4.3.0"},
               State::quit,
               ""});
  v.push_back({"DATA refused → accepted recipients get the DATA reply",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"250 ok\r\n", "DATA\r\n"},
                {"554 5.7.1 no\r\n", "RSET\r\n"},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"a@y.test permanent 554 5.7.1"},
               State::quit,
               ""});
  v.push_back({"421 in RCPT fails the session: everything not final is temporary",
               opts(),
               txn({"a@y.test", "b@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"550 5.1.1 unknown\r\n", "RCPT TO:<b@y.test>\r\n"},
                {"421 4.3.2 shutting down\r\n", ""}},
               {"a@y.test permanent 550 5.1.1", "b@y.test temporary 421 4.3.2"},
               State::failed,
               "temporary 421 4.3.2"});
  v.push_back({"timeout after the final dot: possible duplicate",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"250 ok\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"<timeout>", ""}},
               {"a@y.test temporary 0 4.4.2 dup"},
               State::failed,
               "temporary 0 4.4.2: timeout in state dot"});
  v.push_back({"EOF after the final dot: possible duplicate",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"250 ok\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"<eof>", ""}},
               {"a@y.test temporary 0 4.4.2 dup"},
               State::failed,
               "temporary 0 4.4.2: connection lost in state dot"});
  v.push_back({"EOF in RCPT: temporary, no duplicate",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"<eof>", ""}},
               {"a@y.test temporary 0 4.4.2"},
               State::failed,
               "temporary"});
  v.push_back({"garbage reply fails the session",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"HTTP/1.1 400 Bad Request\r\n", ""}},
               {"a@y.test temporary 0 4.5.0"},
               State::failed,
               "temporary 0 4.5.0: malformed reply"});
  v.push_back({"greeting 554: permanent session failure, no transaction",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""}, {"554 5.7.1 go away\r\n", ""}},
               {},
               State::failed,
               "permanent 554 5.7.1"});
  v.push_back({"STARTTLS: capabilities forgotten, EHLO again, lock-step after",
               opts(TlsPolicy::opportunistic),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "STARTTLS\r\n"},
                {"220 2.0.0 ready\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"250 ok\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"a@y.test sent 250 "},
               State::quit,
               ""});
  v.push_back({"STARTTLS refused under opportunistic: plaintext",
               opts(TlsPolicy::opportunistic),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250-mx\r\n250 STARTTLS\r\n", "STARTTLS\r\n"},
                {"454 4.7.0 TLS not available\r\n", "MAIL FROM:<s@x.test>\r\n"}},
               {},
               State::mail,
               ""});
  v.push_back({"STARTTLS not offered under required: temporary failure",
               opts(TlsPolicy::required),
               txn({"a@y.test"}),
               {{"<start>", ""}, {"220 mx.test\r\n", "EHLO client.test\r\n"}, {"250 mx\r\n", ""}},
               {},
               State::failed,
               "temporary 0 4.7.4"});
  v.push_back({"SMTPUTF8 not offered: non-ASCII recipient refused, the other delivered",
               opts(),
               txn({"j\xc3\xb6rg@y.test", "a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<a@y.test>\r\n"},
                {"250 ok\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"250 ok\r\n", "QUIT\r\n"}},
               {"j\xc3\xb6rg@y.test permanent 0 5.6.7", "a@y.test sent 250 "},
               State::quit,
               ""});
  {
    Transaction t = txn({"a@y.test", "b@y.test"});
    t.dsn_ret = "HDRS";
    t.dsn_envid = "a+b c";
    t.dsn_notify = {"SUCCESS,FAILURE", ""};
    t.dsn_orcpt = {"rfc822;A+x@y.test"};
    v.push_back({"DSN offered: RET, ENVID, NOTIFY and ORCPT are passed on (xtext-encoded)",
                 opts(),
                 t,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250-PIPELINING\r\n250 DSN\r\n",
                   "MAIL FROM:<s@x.test> RET=HDRS ENVID=a+2Bb+20c\r\n"
                   "RCPT TO:<a@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A+2Bx@y.test\r\n"
                   "RCPT TO:<b@y.test>\r\nDATA\r\n"}},
                 {},
                 State::mail,
                 ""});
    v.push_back({"DSN not offered: the requests stay with us",
                 opts(),
                 t,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250 PIPELINING\r\n",
                   "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"}},
                 {},
                 State::mail,
                 ""});
    t.dsn_ret = "FULL\r\nRSET";
    t.dsn_notify = {"NEVER\r\nQUIT"};
    t.dsn_orcpt = {"rfc822\r\nX;a@y.test"};
    v.push_back({"DSN values that could split a command never reach the wire",
                 opts(),
                 t,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250-PIPELINING\r\n250 DSN\r\n",
                   "MAIL FROM:<s@x.test> ENVID=a+2Bb+20c\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\n"
                   "DATA\r\n"}},
                 {},
                 State::mail,
                 ""});
  }
  v.push_back({"a non-ASCII domain goes out as its A-label, without SMTPUTF8",
               opts(),
               txn({"ann@b\xc3\xbc"
                    "cher.test",
                    "j\xc3\xb6rg@b\xc3\xbc"
                    "cher.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<ann@xn--bcher-kva.test>\r\n"},
                {"250 ok\r\n", "DATA\r\n"},
                {"354 go\r\n", kWire},
                {"250 ok\r\n", "QUIT\r\n"}},
               // results keep the address as stored; only the wire has the A-label
               {"ann@b\xc3\xbc"
                "cher.test sent 250 ",
                "j\xc3\xb6rg@b\xc3\xbc"
                "cher.test permanent 0 5.6.7"},
               State::quit,
               ""});
  {
    Transaction t = txn({"a@y.test"});
    t.sender =
        "s@b\xc3\xbc"
        "cher.test";
    v.push_back({"a non-ASCII sender domain too; SMTPUTF8 only for a UTF-8 local part",
                 opts(),
                 t,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250 SMTPUTF8\r\n", "MAIL FROM:<s@xn--bcher-kva.test>\r\n"}},
                 {},
                 State::mail,
                 ""});
  }
  v.push_back({"SMTPUTF8 offered: a UTF-8 local part with a U-label domain",
               opts(),
               txn({"j\xc3\xb6rg@b\xc3\xbc"
                    "cher.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250-mx\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n",
                 "MAIL FROM:<s@x.test> SMTPUTF8\r\nRCPT TO:<j\xc3\xb6rg@xn--bcher-kva.test>\r\nDATA\r\n"}},
               {},
               State::mail,
               ""});
  v.push_back({"SMTPUTF8 offered: MAIL carries SMTPUTF8",
               opts(),
               txn({"j\xc3\xb6rg@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250-mx\r\n250 SMTPUTF8\r\n", "MAIL FROM:<s@x.test> SMTPUTF8\r\n"}},
               {},
               State::mail,
               ""});
  {
    Transaction t = txn({"a@y.test"}, 42);
    t.body_info = BodyInfo{true, 10, 0};
    v.push_back(
        {"8-bit body and 8BITMIME offered: BODY=8BITMIME and SIZE=",
         opts(),
         t,
         {{"<start>", ""},
          {"220 mx.test\r\n", "EHLO client.test\r\n"},
          {"250-mx\r\n250-SIZE\r\n250 8BITMIME\r\n", "MAIL FROM:<s@x.test> SIZE=42 BODY=8BITMIME\r\n"}},
         {},
         State::mail,
         ""});
    Transaction grown = txn({"a@y.test"}, 4000);
    grown.body_info = BodyInfo{false, 10, 4999};  // LF → CRLF made it bigger than stored
    v.push_back({"SIZE uses the wire size when known: over the limit, nothing sent",
                 opts(),
                 grown,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250 SIZE 4998\r\n", "QUIT\r\n"}},
                 {"a@y.test permanent 0 5.3.4"},
                 State::quit,
                 ""});
    v.push_back({"SIZE= declares the wire size when known",
                 opts(),
                 grown,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250 SIZE 5000\r\n", "MAIL FROM:<s@x.test> SIZE=4999\r\n"}},
                 {},
                 State::mail,
                 ""});
    t.body_info = BodyInfo{false, 999, 0};
    v.push_back({"a known overlong line is no refusal: it is wrapped, SIZE= counts the wrapping",
                 opts(),
                 t,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250 SIZE\r\n", "MAIL FROM:<s@x.test> SIZE=45\r\n"}},
                 {},
                 State::mail,
                 ""});
    Transaction dated = txn({"a@y.test"}, 42);
    dated.body_info = BodyInfo{false, 10, 50};
    dated.missing_date = "Thu, 1 Jan 2026 00:00:00 +0000";  // "Date: " + 30 + CRLF, and a possible empty line
    v.push_back({"SIZE= counts the prepended Date:",
                 opts(),
                 dated,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250 SIZE\r\n", "MAIL FROM:<s@x.test> SIZE=90\r\n"}},
                 {},
                 State::mail,
                 ""});
    MimeFacts text{true, MimeType::text, MimeEncoding::eight_bit, false, true};
    Transaction conv = txn({"a@y.test"}, 42);
    conv.body_info = BodyInfo{true, 10, 42, 77, text};
    v.push_back({"8-bit text to a server without 8BITMIME: converted, no BODY=, SIZE= as converted",
                 opts(),
                 conv,
                 {{"<start>", ""},
                  {"220 mx.test\r\n", "EHLO client.test\r\n"},
                  {"250-mx\r\n250 SIZE\r\n", "MAIL FROM:<s@x.test> SIZE=77\r\n"}},
                 {},
                 State::mail,
                 ""});
    v.push_back(
        {"8-bit text to a server with 8BITMIME: not converted",
         opts(),
         conv,
         {{"<start>", ""},
          {"220 mx.test\r\n", "EHLO client.test\r\n"},
          {"250-mx\r\n250-SIZE\r\n250 8BITMIME\r\n", "MAIL FROM:<s@x.test> SIZE=42 BODY=8BITMIME\r\n"}},
         {},
         State::mail,
         ""});
    Transaction multi = conv;
    multi.body_info->mime->type = MimeType::multipart;
    v.push_back({"8-bit multipart to a server without 8BITMIME: deferred before MAIL",
                 opts(),
                 multi,
                 {{"<start>", ""}, {"220 mx.test\r\n", "EHLO client.test\r\n"}, {"250 mx\r\n", "QUIT\r\n"}},
                 {"a@y.test temporary 0 4.6.3"},
                 State::quit,
                 ""});
    Transaction unknown = conv;
    unknown.body_info->mime.reset();
    v.push_back({"8-bit with the header unread, no 8BITMIME: deferred (the session scans first)",
                 opts(),
                 unknown,
                 {{"<start>", ""}, {"220 mx.test\r\n", "EHLO client.test\r\n"}, {"250 mx\r\n", "QUIT\r\n"}},
                 {"a@y.test temporary 0 4.6.3"},
                 State::quit,
                 ""});
  }
  v.push_back({"addresses that could inject commands are refused locally",
               opts(),
               txn({"a@y.test>\r\nRSET", "ok@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"250 ok\r\n", "RCPT TO:<ok@y.test>\r\n"}},
               {},
               State::rcpt,
               ""});
  v.push_back({"RSET refused fails the session",
               opts(),
               txn({"a@y.test"}),
               {{"<start>", ""},
                {"220 mx.test\r\n", "EHLO client.test\r\n"},
                {"250 mx\r\n", "MAIL FROM:<s@x.test>\r\n"},
                {"550 no\r\n", "RSET\r\n"},
                {"500 what\r\n", ""}},
               {"a@y.test permanent 550 "},
               State::failed,
               "temporary 500"});
  return v;
}

}  // namespace

TEST_CASE("engine scenarios: exact client bytes and per-recipient outcomes", "[engine]") {
  for (const auto& sc : scenarios()) {
    SECTION(sc.name) {
      Harness h(sc.options, sc.txn);
      for (const auto& [said, answer] : sc.dialogue) {
        INFO("server said: " << said);
        REQUIRE(h.server(said) == answer);
      }
      CHECK(h.outcomes == sc.outcomes);
      CHECK(to_string(h.engine.state()) == to_string(sc.final_state));
      CHECK(h.ended.rfind(sc.ended_prefix, 0) == 0);
    }
  }
}

TEST_CASE("every transition is traced", "[engine]") {
  Harness h(opts(), txn({"a@y.test"}));
  h.server("<start>");
  h.server("220 mx\r\n");
  h.server("250 mx\r\n");
  h.server("250 ok\r\n");
  h.server("250 ok\r\n");
  h.server("354 go\r\n");
  h.server("250 ok\r\n");
  h.server("221 bye\r\n");
  CHECK(fmt::format("{}", fmt::join(h.trace, " ")) ==
        "init>greeting greeting>ehlo ehlo>ready ready>mail mail>rcpt rcpt>data data>body body>dot dot>ready "
        "ready>quit quit>closed");
  CHECK(h.rcpt_events == 1);
}

TEST_CASE("EHLO keywords are matched without regard to ASCII case; 8-bit bytes stay", "[engine]") {
  Harness h(opts(), txn({"a@y.test"}));
  h.submit_on_ready = false;
  h.server("<start>");
  h.server("220 mx\r\n");
  h.server(
      "250-mx\r\n250-pipelining\r\n250-8bitMime\r\n250-Size 1000\r\n250-auth=plain cram-md5\r\n"
      "250-AUTH X-\xc3\xa4\xc4\r\n250 sMtPuTf8\r\n");
  const Capabilities& c = h.engine.capabilities();
  CHECK(c.pipelining);
  CHECK(c.eight_bit_mime);
  CHECK(c.smtputf8);
  CHECK(c.size == 1000);
  // Upper-cased as ASCII (common/ascii.h): a byte >= 0x80 is no letter, whatever the locale.
  CHECK(c.auth == std::vector<std::string>{"PLAIN", "CRAM-MD5", "X-\xc3\xa4\xc4"});
  CHECK(h.engine.state() == State::ready);
}

TEST_CASE("response injection after STARTTLS 220 is discarded and reported", "[engine]") {
  Harness h(opts(TlsPolicy::opportunistic), txn({"a@y.test"}));
  h.server("<start>");
  h.server("220 mx\r\n");
  REQUIRE(h.server("250-mx\r\n250 STARTTLS\r\n") == "STARTTLS\r\n");
  // The injected 250s must not answer the EHLO we send after the handshake.
  CHECK(h.server("220 go ahead\r\n250-evil\r\n250 AUTH PLAIN\r\n") == "EHLO client.test\r\n");
  CHECK(h.injected == 26);
  CHECK(h.engine.encrypted());
  CHECK(h.engine.state() == State::ehlo);
  CHECK(h.engine.capabilities().auth.empty());
}

TEST_CASE("a failed TLS handshake fails the session temporarily", "[engine]") {
  Harness h(opts(TlsPolicy::verify), txn({"a@y.test"}));
  h.tls_ok = false;
  h.server("<start>");
  h.server("220 mx\r\n");
  CHECK(h.server("250-mx\r\n250 STARTTLS\r\n") == "STARTTLS\r\n");
  CHECK(h.server("220 go\r\n") == "");
  CHECK(h.engine.state() == State::failed);
  CHECK(h.ended.find("TLS handshake failed: certificate verify failed") != std::string::npos);
  CHECK(h.engine.starttls_failed());  // the daemon's cue for a plaintext retry (opportunistic)

  // A connection lost during the handshake is a failed handshake too; a failure elsewhere is not.
  Harness lost(opts(TlsPolicy::opportunistic), txn({"a@y.test"}));
  lost.tls_ok = true;
  lost.server("<start>");
  lost.server("220 mx\r\n");
  lost.server("250-mx\r\n250 STARTTLS\r\n");
  lost.engine.receive("220 go\r\n");
  lost.engine.take_output();
  REQUIRE(lost.engine.state() == State::tls_handshake);
  lost.engine.connection_closed("reset");
  CHECK(lost.engine.starttls_failed());
  Harness other(opts(TlsPolicy::opportunistic), txn({"a@y.test"}));
  other.server("<start>");
  other.server("<timeout>");
  CHECK(other.engine.state() == State::failed);
  CHECK_FALSE(other.engine.starttls_failed());
}

namespace {

struct AuthCase {
  std::string name;
  AuthOptions auth;
  bool implicit_tls;
  std::string ehlo;
  std::vector<std::pair<std::string, std::string>> dialogue;
  std::string logged;  // the AUTH lines as a transcript sees them
  State final_state;
  std::string ended_prefix;
};

}  // namespace

TEST_CASE("AUTH mechanisms, choice and failures", "[engine][auth]") {
  const std::string plain = "AUTH PLAIN " + auth::plain_response("user", "pass") + "\r\n";
  const std::vector<AuthCase> cases = {
      {"PLAIN over implicit TLS",
       {AuthMechanism::automatic, "user", "pass", false},
       true,
       "250-mx\r\n250 AUTH LOGIN PLAIN CRAM-MD5\r\n",
       {{"235 2.7.0 ok\r\n", "MAIL FROM:<s@x.test>\r\n"}},
       "AUTH PLAIN <secret>",
       State::mail,
       ""},
      {"LOGIN by name",
       {AuthMechanism::login, "user", "pass", false},
       true,
       "250-mx\r\n250 AUTH=LOGIN\r\n",
       {{"334 VXNlcm5hbWU6\r\n", "dXNlcg==\r\n"},
        {"334 UGFzc3dvcmQ6\r\n", "cGFzcw==\r\n"},
        {"235 ok\r\n", "MAIL FROM:<s@x.test>\r\n"}},
       "AUTH LOGIN|<user>|<secret>",
       State::mail,
       ""},
      {"CRAM-MD5 (RFC 2195 example)",
       {AuthMechanism::cram_md5, "tim", "tanstaaftanstaaf", false},
       true,
       "250-mx\r\n250 AUTH CRAM-MD5\r\n",
       {{"334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
         "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"},
        {"235 ok\r\n", "MAIL FROM:<s@x.test>\r\n"}},
       "AUTH CRAM-MD5|<secret>",
       State::mail,
       ""},
      {"XOAUTH2 token",
       {AuthMechanism::xoauth2, "u@x", "tok", false},
       true,
       "250-mx\r\n250 AUTH XOAUTH2 PLAIN\r\n",
       {{"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n", "\r\n"}, {"535 5.7.8 bad token\r\n", ""}},
       "AUTH XOAUTH2 <secret>|",
       State::failed,
       "permanent 535 5.7.8"},
      {"535 is permanent",
       {AuthMechanism::automatic, "user", "pass", false},
       true,
       "250-mx\r\n250 AUTH PLAIN\r\n",
       {{"535 5.7.8 bad credentials\r\n", ""}},
       "AUTH PLAIN <secret>",
       State::failed,
       "permanent 535 5.7.8"},
      {"454 is temporary",
       {AuthMechanism::automatic, "user", "pass", false},
       true,
       "250-mx\r\n250 AUTH PLAIN\r\n",
       {{"454 4.7.0 try later\r\n", ""}},
       "AUTH PLAIN <secret>",
       State::failed,
       "temporary 454 4.7.0"},
      {"never over plaintext",
       {AuthMechanism::plain, "user", "pass", false},
       false,
       "250-mx\r\n250 AUTH PLAIN\r\n",
       {},
       "",
       State::failed,
       "temporary 0 4.7.0: refusing"},
      {"plaintext allowed: auto prefers CRAM-MD5",
       {AuthMechanism::automatic, "user", "pass", true},
       false,
       "250-mx\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n",
       {},
       "AUTH CRAM-MD5",
       State::auth,
       ""},
      {"no common mechanism",
       {AuthMechanism::cram_md5, "user", "pass", false},
       true,
       "250-mx\r\n250 AUTH PLAIN\r\n",
       {},
       "",
       State::failed,
       "temporary 0 4.7.0: no usable AUTH"},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      EngineOptions o = opts();
      o.auth = c.auth;
      o.implicit_tls = c.implicit_tls;
      Harness h(o, txn({"a@y.test"}));
      h.quit_after = false;
      h.server("<start>");
      REQUIRE(h.server("220 mx\r\n") == "EHLO client.test\r\n");
      std::string first = h.server(c.ehlo);
      if (c.auth.mechanism == AuthMechanism::automatic && c.implicit_tls &&
          first.rfind("AUTH PLAIN ", 0) == 0)
        CHECK(first == plain);
      for (const auto& [said, answer] : c.dialogue) {
        INFO(said);
        REQUIRE(h.server(said) == answer);
      }
      std::vector<std::string> auth_lines;
      for (auto& l : h.logged)
        if (l.rfind("EHLO", 0) != 0 && l.rfind("MAIL", 0) != 0) auth_lines.push_back(l);
      CHECK(fmt::format("{}", fmt::join(auth_lines, "|")) == c.logged);
      for (auto& l : h.logged) CHECK(l.find("cGFzcw") == std::string::npos);  // base64("pass") never logged
      CHECK(to_string(h.engine.state()) == to_string(c.final_state));
      CHECK(h.ended.rfind(c.ended_prefix, 0) == 0);
    }
  }
}

TEST_CASE("timeouts follow RFC 5321 defaults per state and options override them", "[engine]") {
  EngineOptions o = opts();
  Engine e(o);
  CHECK(!e.timeout());
  e.start();
  REQUIRE(e.timeout());
  CHECK(*e.timeout() == milliseconds(300'000));
  o.timeouts.greeting = milliseconds(1234);
  Engine e2(o);
  e2.start();
  CHECK(*e2.timeout() == milliseconds(1234));
  auto epoch = e2.timer_epoch();
  serve(e2, "220 hi\r\n");
  CHECK(e2.timer_epoch() != epoch);
  CHECK(e2.state() == State::ehlo);
  serve(e2, "250 hi\r\n");
  CHECK(e2.state() == State::ready);
  CHECK(!e2.timeout());  // idle: the pool decides how long to keep it
  Transaction t = txn({"a@y.test"});
  e2.submit(t);
  CHECK(*e2.timeout() == milliseconds(300'000));  // mail
  serve(e2, "250 ok\r\n");
  serve(e2, "250 ok\r\n");
  CHECK(*e2.timeout() == milliseconds(120'000));  // data
  serve(e2, "354 go\r\n");
  CHECK(*e2.timeout() == milliseconds(180'000));  // block
  e2.body_chunk("x\n");
  e2.body_end();
  CHECK(*e2.timeout() == milliseconds(600'000));  // dot
}

TEST_CASE("a line over 998 octets found while streaming is wrapped, and noted once", "[engine]") {
  Harness h(opts(), txn({"a@y.test", "b@y.test"}));
  h.body = "A: 1\n\n" + std::string(1500, 'z') + "\n" + std::string(1000, 'w') + "\n";
  h.server("<start>");
  h.server("220 mx\r\n");
  h.server("250 mx\r\n");
  h.server("250 ok\r\n");
  h.server("250 ok\r\n");
  CHECK(h.server("250 ok\r\n") == "DATA\r\n");
  CHECK(h.server("354 go\r\n") == "A: 1\r\n\r\n" + std::string(998, 'z') + "\r\n" + std::string(502, 'z') +
                                      "\r\n" + std::string(998, 'w') + "\r\nww\r\n.\r\n");
  h.server("250 ok\r\n");
  CHECK(h.outcomes == std::vector<std::string>{"a@y.test sent 250 ", "b@y.test sent 250 "});
  CHECK(h.notes == std::vector<std::string>{"wrapped 2 lines over 998 octets"});
}

TEST_CASE("8-bit text to a server without 8BITMIME goes out as quoted-printable", "[engine]") {
  Transaction t = txn({"a@y.test"});
  t.body_info =
      BodyInfo{true, 10, 0, 0, MimeFacts{false, MimeType::absent, MimeEncoding::absent, false, true}};
  Harness h(opts(), t);
  h.body = "Subject: s\n\nd\xc3\xa9j\xc3\xa0\n";
  h.server("<start>");
  h.server("220 mx\r\n");
  CHECK(h.server("250 mx\r\n") == "MAIL FROM:<s@x.test>\r\n");
  h.server("250 ok\r\n");
  CHECK(h.server("250 ok\r\n") == "DATA\r\n");
  CHECK(h.server("354 go\r\n") ==
        "Subject: s\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=unknown-8bit\r\n\r\nd=C3=A9j=C3=A0\r\n.\r\n");
  h.server("250 ok\r\n");
  CHECK(h.outcomes == std::vector<std::string>{"a@y.test sent 250 "});
  CHECK(h.notes ==
        std::vector<std::string>{"converted to quoted-printable (the server does not offer 8BITMIME)"});
}

TEST_CASE("a second submit while busy is refused, and several transactions share a connection", "[engine]") {
  Engine e(opts());
  e.start();
  serve(e, "220 hi\r\n");
  serve(e, "250 mx\r\n");
  e.take_output();
  e.submit(txn({"a@y.test"}));
  e.submit(txn({"b@y.test"}));
  auto events = e.take_events();
  REQUIRE(events.size() >= 2);
  auto* refused = std::get_if<TransactionDone>(&events.back());
  REQUIRE(refused);
  CHECK(refused->result.recipients[0].outcome.text.find("not idle") != std::string::npos);
  serve(e, "250 ok\r\n");
  serve(e, "250 ok\r\n");
  serve(e, "354 go\r\n");
  e.body_chunk("x");
  e.body_end();
  serve(e, "250 ok\r\n");
  CHECK(e.idle());
  e.take_output();
  e.submit(txn({"b@y.test"}));
  CHECK(e.take_output() == "MAIL FROM:<s@x.test>\r\n");
}

TEST_CASE("unexpected replies and 421 while idle end the session", "[engine]") {
  for (const char* said : {"421 4.4.2 idle timeout\r\n", "250 spurious\r\n"}) {
    Engine e(opts());
    e.start();
    serve(e, "220 hi\r\n");
    serve(e, "250 mx\r\n");
    REQUIRE(e.idle());
    serve(e, said);
    CHECK(e.state() == State::failed);
  }
}

TEST_CASE("base64 and CRAM-MD5 helpers", "[auth]") {
  CHECK(base64::encode("") == "");
  CHECK(base64::encode("f") == "Zg==");
  CHECK(base64::encode("fo") == "Zm8=");
  CHECK(base64::encode("foo") == "Zm9v");
  CHECK(base64::decode("Zg==").value() == "f");
  CHECK(base64::decode("Zm8=").value() == "fo");
  CHECK(base64::decode("Zm9v").value() == "foo");
  CHECK(!base64::decode("Zm9"));
  CHECK(!base64::decode("Z!9v"));
  CHECK(base64::decode("").value() == "");
  CHECK(base64::decode("Zm9v \t").value() == "foo");  // trailing blanks from clients
  CHECK(base64::decode("AHVzZXIAcGFzcw==").value() == std::string("\0user\0pass", 10));
  CHECK(!base64::decode("Zm=v"));      // padding inside a group
  CHECK(!base64::decode("Zg==Zm9v"));  // padding before the end
  CHECK(!base64::decode("Z==="));      // three pads
  CHECK(!base64::decode("===="));
  CHECK(!base64::decode(" Zm9v"));  // leading blank
  CHECK(!base64::decode("Zm9v\r\n"));
  CHECK(!base64::decode("Zm\x80v"));
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  for (std::size_t n = 0; n <= all.size(); n += 7) {
    auto part = all.substr(0, n);
    CHECK(base64::decode(base64::encode(part)).value() == part);
  }
  CHECK(base64::encode(all).size() == 344);
  CHECK(auth::plain_response("user", "pass") == "AHVzZXIAcGFzcw==");
  CHECK(auth::choose(AuthMechanism::automatic, {"LOGIN", "PLAIN"}, true) == AuthMechanism::plain);
  CHECK(auth::choose(AuthMechanism::automatic, {"XOAUTH2"}, true) == AuthMechanism::none);
  CHECK(auth::choose(AuthMechanism::xoauth2, {"XOAUTH2"}, true) == AuthMechanism::xoauth2);
  CHECK(auth::choose(AuthMechanism::cram_md5, {"PLAIN", "CRAM-MD5"}, true) == AuthMechanism::cram_md5);
  CHECK(auth::choose(AuthMechanism::login, {"PLAIN"}, true) == AuthMechanism::none);
  CHECK(auth::choose(AuthMechanism::none, {"PLAIN", "LOGIN"}, true) == AuthMechanism::none);
}

TEST_CASE("quit() before ready or during a transaction waits for a safe point", "[engine]") {
  Engine early(opts());
  early.start();
  early.quit();
  early.receive("220 hi\r\n");
  CHECK(early.take_output() == "EHLO client.test\r\n");
  early.receive("250 mx\r\n");
  CHECK(early.take_output() == "QUIT\r\n");
  early.connection_closed("EOF");  // EOF instead of 221 after QUIT is a clean end
  CHECK(early.state() == State::closed);

  Engine busy(opts());
  busy.start();
  serve(busy, "220 hi\r\n");
  serve(busy, "250 mx\r\n");
  busy.submit(txn({"a@y.test"}));
  busy.quit();
  serve(busy, "250 ok\r\n");
  serve(busy, "250 ok\r\n");
  serve(busy, "354 go\r\n");
  busy.body_end();
  busy.take_output();
  busy.receive("250 queued\r\n");
  CHECK(busy.take_output() == "QUIT\r\n");
  busy.receive("221 bye\r\n");
  CHECK(busy.state() == State::closed);
  bool clean = false;
  for (auto& ev : busy.take_events())
    if (auto* end = std::get_if<SessionEnded>(&ev)) clean = end->reason.status == Status::sent;
  CHECK(clean);
}

TEST_CASE("greeting and EHLO failures map to the reply class", "[engine]") {
  struct Case {
    std::vector<std::string> said;
    Status status;
    int code;
  };
  const std::vector<Case> cases = {
      {{"421 4.3.2 busy\r\n"}, Status::temporary, 421},
      {{"450 later\r\n"}, Status::temporary, 450},
      {{"220 hi\r\n", "451 4.3.0 later\r\n"}, Status::temporary, 451},
      {{"220 hi\r\n", "500 no\r\n", "550 5.7.1 go away\r\n"}, Status::permanent, 550},
  };
  for (const auto& c : cases) {
    Engine e(opts());
    e.start();
    for (const auto& s : c.said) serve(e, s);
    REQUIRE(e.state() == State::failed);
    std::optional<Outcome> why;
    for (auto& ev : e.take_events())
      if (auto* end = std::get_if<SessionEnded>(&ev)) why = end->reason;
    REQUIRE(why);
    CHECK(why->status == c.status);
    CHECK(why->code == c.code);
  }
}

TEST_CASE("dsn_code falls back to the status class", "[types]") {
  CHECK(dsn_code(Outcome{Status::permanent, 550, "5.1.1", "x", false}) == "5.1.1");
  CHECK(dsn_code(Outcome{Status::permanent, 550, "", "x", false}) == "5.0.0");
  CHECK(dsn_code(Outcome{Status::temporary, 451, "", "x", false}) == "4.0.0");
  CHECK(dsn_code(Outcome{Status::sent, 250, "", "x", false}) == "2.0.0");
}

TEST_CASE("an EHLO name with controls cannot inject commands", "[engine]") {
  EngineOptions o = opts();
  o.ehlo_name = "evil\r\nMAIL FROM:<x>";
  Engine e(o);
  e.start();
  e.receive("220 hi\r\n");
  CHECK(e.take_output() == "EHLO evilMAILFROM:<x>\r\n");
}

TEST_CASE("a reply that arrives before its command was sent ends the session", "[engine]") {
  // Lock-step: the 250 cannot answer an EHLO that is still in the engine's output.
  Engine e(opts());
  e.start();
  e.receive("220 hi\r\n250 mx\r\n");
  CHECK(e.state() == State::failed);
  std::string why;
  for (auto& ev : e.take_events())
    if (auto* end = std::get_if<SessionEnded>(&ev)) why = end->reason.text;
  CHECK(why.find("arrived before its command was sent") != std::string::npos);

  // A surplus reply to a lone MAIL in lock-step must not be taken as the RCPT's answer.
  Engine f(opts());
  f.start();
  serve(f, "220 hi\r\n");
  serve(f, "250 mx\r\n");
  f.submit(txn({"a@y.test"}));
  serve(f, "250 ok\r\n250 2.1.5 fake rcpt ok\r\n");
  CHECK(f.state() == State::failed);
  for (auto& ev : f.take_events())
    if (auto* done = std::get_if<TransactionDone>(&ev))
      CHECK(done->result.recipients[0].outcome.status == Status::temporary);
}

TEST_CASE("take_output(spare): the engine writes into the buffer handed back, never its old bytes",
          "[engine]") {
  Engine e(opts());
  e.start();
  serve(e, "220 hi\r\n");
  serve(e, "250 mx\r\n");
  e.take_output();
  e.submit(txn({"a@y.test"}));
  std::string mail = e.take_output();
  CHECK(mail == "MAIL FROM:<s@x.test>\r\n");
  e.receive("250 ok\r\n");
  std::string written(70000, 'Z');  // a buffer the transport has finished writing
  const char* storage = written.data();
  std::string rcpt = e.take_output(std::move(written));
  CHECK(rcpt == "RCPT TO:<a@y.test>\r\n");
  e.receive("250 ok\r\n");
  std::string data = e.take_output();
  CHECK(data == "DATA\r\n");      // the spare's old contents are gone ...
  CHECK(data.data() == storage);  // ... but its storage was reused
  e.receive("354 go\r\n");
  (void)e.take_events();
  e.body_chunk("body\n");
  e.body_end();
  CHECK(e.take_output(std::move(mail)) == "body\r\n.\r\n");
}

// ---- RFC 2920 §3.1: the next transaction behind the final dot ----

namespace {

// Ready on a PIPELINING server, first transaction in State::dot (its reply not yet read).
struct BehindDot {
  Engine e{opts()};
  std::vector<std::string> trace;
  explicit BehindDot(Transaction first, const std::string& ehlo = kEhloPipe)
      : e(opts(), EngineHooks{[this](State a, State b) {
                                trace.push_back(fmt::format("{}>{}", to_string(a), to_string(b)));
                              },
                              nullptr, nullptr}) {
    e.start();
    serve(e, "220 mx.test\r\n");
    serve(e, ehlo);
    e.take_events();
    std::size_t n = first.recipients.size();
    e.submit(std::move(first));
    std::string replies;
    for (std::size_t i = 0; i <= n; ++i) replies += "250 ok\r\n";
    serve(e, replies + "354 go\r\n");
    e.body_chunk("hi\n");
    e.body_end();
    e.take_output();
  }
  // Outcomes ("addr status code[ dup]") of each TransactionDone, in order, and whether
  // NextWelcome / BodyWanted came.
  std::vector<std::string> done;
  bool welcome = false, body = false;
  void events() {
    for (auto& ev : e.take_events()) {
      if (std::holds_alternative<NextWelcome>(ev)) welcome = true;
      if (std::holds_alternative<BodyWanted>(ev)) body = true;
      if (auto* d = std::get_if<TransactionDone>(&ev)) {
        std::string s;
        for (auto& r : d->result.recipients)
          s += fmt::format("{}{} {} {}{}", s.empty() ? "" : "; ", r.address, to_string(r.outcome.status),
                           r.outcome.code, r.outcome.possible_duplicate ? " dup" : "");
        done.push_back(s);
      }
    }
  }
};

}  // namespace

TEST_CASE("behind the final dot: the next MAIL, RCPTs and DATA go out at once, no RSET between",
          "[engine][pipelining]") {
  BehindDot b(txn({"a@y.test"}));
  b.events();
  CHECK(b.welcome);
  REQUIRE(b.e.can_submit_next());
  b.e.submit(txn({"b@y.test", "c@y.test"}));
  CHECK(!b.e.can_submit_next());  // one transaction behind the dot at most
  CHECK(b.e.take_output() == "MAIL FROM:<s@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n");
  CHECK(b.e.state() == State::dot);

  SECTION("all replies in one read: the first is done, the second gets its body") {
    b.e.receive("250 2.0.0 queued\r\n250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
    b.events();
    REQUIRE(b.done.size() == 1);
    CHECK(b.done[0] == "a@y.test sent 250");
    CHECK(b.body);
    CHECK(b.e.state() == State::body);
    CHECK(std::find(b.trace.begin(), b.trace.end(), "dot>mail") != b.trace.end());
    b.e.body_chunk("second\n");
    b.e.body_end();
    CHECK(b.e.take_output() == "second\r\n.\r\n");
    serve(b.e, "250 2.0.0 queued too\r\n");
    b.events();
    REQUIRE(b.done.size() == 2);
    CHECK(b.done[1] == "b@y.test sent 250; c@y.test permanent 550");
    CHECK(b.e.idle());
  }
  SECTION("a refused dot ends only the first transaction; the second was already sent") {
    b.e.receive("554 5.7.1 rejected\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    b.events();
    REQUIRE(b.done.size() == 1);
    CHECK(b.done[0] == "a@y.test permanent 554");
    CHECK(b.e.state() == State::body);
    CHECK(b.e.take_output().find("RSET") == std::string::npos);
  }
  SECTION("the sender of the second is refused: its other replies are read, then RSET") {
    b.e.receive("250 ok\r\n550 5.1.8 bad sender\r\n503 need MAIL\r\n503 need MAIL\r\n503 need RCPT\r\n");
    b.events();
    REQUIRE(b.done.size() == 1);
    CHECK(b.e.take_output() == "RSET\r\n");
    serve(b.e, "250 ok\r\n");
    b.events();
    REQUIRE(b.done.size() == 2);
    CHECK(b.done[1] == "b@y.test permanent 550; c@y.test permanent 550");
    CHECK(b.e.idle());
  }
  SECTION("no reply to the dot: the first is a possible duplicate, the second only temporary") {
    b.e.timed_out();
    b.events();
    REQUIRE(b.done.size() == 2);
    CHECK(b.done[0] == "a@y.test temporary 0 dup");
    CHECK(b.done[1] == "b@y.test temporary 0; c@y.test temporary 0");
    CHECK(b.e.state() == State::failed);
  }
  SECTION("421 after the dot's 250: the first is sent, the second temporary") {
    b.e.receive("250 ok\r\n421 4.3.2 closing\r\n");
    b.events();
    REQUIRE(b.done.size() == 2);
    CHECK(b.done[0] == "a@y.test sent 250");
    CHECK(b.done[1] == "b@y.test temporary 421; c@y.test temporary 421");
  }
}

TEST_CASE("behind the final dot: a transaction that precheck refuses sends nothing and ends after the first",
          "[engine][pipelining]") {
  BehindDot b(txn({"a@y.test"}), "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
  b.events();
  REQUIRE(b.e.can_submit_next());
  b.e.submit(txn({"b@y.test"}, 5000));
  CHECK(b.e.take_output().empty());
  b.events();
  CHECK(b.done.empty());  // not before the first transaction's own result
  serve(b.e, "250 ok\r\n");
  b.events();
  REQUIRE(b.done.size() == 2);
  CHECK(b.done[0] == "a@y.test sent 250");
  CHECK(b.done[1] == "b@y.test permanent 0");
  CHECK(b.e.idle());
}

TEST_CASE("nothing is sent behind a dot without PIPELINING, with recipients left, or after quit()",
          "[engine][pipelining]") {
  {
    Engine e(opts());
    e.start();
    serve(e, "220 mx\r\n");
    serve(e, "250-mx.test\r\n250 8BITMIME\r\n");
    e.submit(txn({"a@y.test"}));
    serve(e, "250 ok\r\n");
    serve(e, "250 ok\r\n");
    serve(e, "354 go\r\n");
    e.body_end();
    REQUIRE(e.state() == State::dot);
    CHECK(!e.can_submit_next());
    bool welcome = false;
    for (auto& ev : e.take_events()) welcome = welcome || std::holds_alternative<NextWelcome>(ev);
    CHECK(!welcome);
    e.take_output();
    e.submit(txn({"b@y.test"}));  // refused at once: not idle
    CHECK(e.take_output().empty());
    auto events = e.take_events();
    REQUIRE(events.size() == 1);
    CHECK(std::get<TransactionDone>(events[0]).result.recipients[0].outcome.text.find("not idle") !=
          std::string::npos);
  }
  {
    auto o = opts();
    o.envelope_limit = 1;  // the second recipient needs a further transaction after this one
    Engine e(o);
    e.start();
    serve(e, "220 mx\r\n");
    serve(e, kEhloPipe);
    e.submit(txn({"a@y.test", "b@y.test"}));
    serve(e, "250 ok\r\n250 ok\r\n354 go\r\n");
    e.body_end();
    CHECK(e.state() == State::dot);
    CHECK(!e.can_submit_next());
  }
  {
    BehindDot b(txn({"a@y.test"}));
    b.e.quit();
    CHECK(!b.e.can_submit_next());
  }
}

namespace {

// A server that answers each state's command the way a healthy server does (lock-step).
std::string good_reply(State s) {
  switch (s) {
    case State::greeting:
      return "220 mx.test ESMTP\r\n";
    case State::ehlo:
      return "250-mx.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n";
    case State::starttls:
      return "220 go ahead\r\n";
    case State::auth:
      return "235 2.7.0 ok\r\n";
    case State::data:
      return "354 go\r\n";
    case State::quit:
      return "221 bye\r\n";
    default:
      return "250 ok\r\n";
  }
}

struct ClassRun {
  std::string outcome = "-";  // the recipient's final status, "-" when no transaction ended
  bool duplicate = false;
  std::string ended = "-";  // how the session ended
};

// Drives a session to `target` with a healthy server, answers that state's command with `reply`,
// then lets the healthy server finish whatever the engine does next (bounded).
ClassRun run_with_reply(State target, const std::string& reply, bool second_rcpt_refused) {
  EngineOptions o = opts(TlsPolicy::required);
  o.auth = AuthOptions{AuthMechanism::plain, "u", "p", true};
  // RSET is reached through a refused recipient: the only one, so the batch ends before DATA.
  Harness h(o, txn({"a@y.test"}));
  h.quit_after = true;
  h.server("<start>");
  bool replied = false;
  for (int step = 0; step < 40 && !h.engine.ended(); ++step) {
    State s = h.engine.state();
    if (s == State::body) FAIL("body state between replies");
    std::string said = good_reply(s);
    if (!replied && s == target) {
      said = reply;
      replied = true;
    } else if (target == State::rset && s == State::rcpt && !replied && second_rcpt_refused) {
      said = "550 5.1.1 no such user\r\n";
    }
    h.server(said);
  }
  REQUIRE(replied);
  REQUIRE(h.engine.ended());
  ClassRun r;
  if (!h.outcomes.empty()) {
    REQUIRE(h.outcomes.size() == 1);
    std::string line = h.outcomes[0];
    r.outcome = line.substr(9, line.find(' ', 9) - 9);  // after "a@y.test "
    r.duplicate = line.find(" dup") != std::string::npos;
  }
  r.ended = h.ended.substr(0, h.ended.find(' '));
  return r;
}

}  // namespace

// Every reply class in every state where a reply is due: a class the command cannot have is a
// temporary failure, never a success; only a 2xx after the final dot makes a recipient sent.
TEST_CASE("every reply class in every state: nothing is sent that the server did not accept after the dot",
          "[engine][hostile]") {
  const std::vector<std::string> replies = {"250 2.0.0 ok\r\n", "354 go\r\n",        "450 4.2.0 later\r\n",
                                            "550 5.7.1 no\r\n", "421 4.3.2 bye\r\n", "hello there\r\n"};
  struct Row {
    State state;
    // Expected recipient status (sent/temporary/permanent/-) for each reply above, in order.
    std::vector<std::string> outcome;
  };
  // "-": the session ended before a transaction started (nothing submitted, nothing reported).
  const std::vector<Row> rows = {
      {State::greeting, {"-", "-", "-", "-", "-", "-"}},
      // 250 without STARTTLS, or HELO after a 5xx (no extensions): `required` TLS is impossible.
      {State::ehlo, {"-", "-", "-", "-", "-", "-"}},
      {State::starttls, {"-", "-", "-", "-", "-", "-"}},  // required: anything but 220 ends it
      {State::auth, {"sent", "-", "-", "-", "-", "-"}},
      {State::mail, {"sent", "temporary", "temporary", "permanent", "temporary", "temporary"}},
      {State::rcpt, {"sent", "temporary", "temporary", "permanent", "temporary", "temporary"}},
      {State::data, {"temporary", "sent", "temporary", "permanent", "temporary", "temporary"}},
      {State::dot, {"sent", "temporary", "temporary", "permanent", "temporary", "temporary"}},
      {State::rset, {"permanent", "permanent", "permanent", "permanent", "permanent", "permanent"}},
  };
  for (const Row& row : rows) {
    for (std::size_t k = 0; k < replies.size(); ++k) {
      const std::string& reply = replies[k];
      INFO("state " << to_string(row.state) << ", reply " << reply);
      ClassRun r = run_with_reply(row.state, reply, true);
      CHECK(r.outcome == row.outcome[k]);
      // A session that never got to a transaction cannot have ended well.
      if (r.outcome == "-") CHECK(r.ended != "sent");
      // After the dot, a reply that is not the server's verdict leaves the message possibly delivered.
      bool dup_expected = row.state == State::dot && (k == 1 || k == 4 || k == 5);
      CHECK(r.duplicate == dup_expected);
    }
  }
}

TEST_CASE("a greeting or EHLO answer of the wrong class never carries a success", "[engine][hostile]") {
  for (const char* said : {"250 hello\r\n", "354 go\r\n", "334 x\r\n", "221 bye\r\n"}) {
    INFO(said);
    Engine e(opts());
    e.start();
    serve(e, said);
    REQUIRE(e.state() == State::failed);
    std::optional<Outcome> why;
    for (auto& ev : e.take_events())
      if (auto* end = std::get_if<SessionEnded>(&ev)) why = end->reason;
    REQUIRE(why);
    CHECK(why->status == Status::temporary);
    CHECK(why->code == 0);
    CHECK(why->enhanced == "4.5.0");
  }
  Engine e(opts());
  e.start();
  serve(e, "220 hi\r\n");
  serve(e, "334 VXNlcm5hbWU6\r\n");
  REQUIRE(e.state() == State::failed);
}
