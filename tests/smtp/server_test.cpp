// tests/smtp/server_test.cpp — the sans-IO SMTP server engine driven by scripted client byte
// streams. Each scenario is data: what the client sends, the exact replies it must get, and the
// events the host sees. The harness plays the host and the transport: it answers RCPT, AUTH and
// the stored message (at once, or later when a test says so) and completes TLS handshakes.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <string>
#include <vector>

#include "smtp/base64.h"
#include "smtp/data_reader.h"
#include "smtp/server.h"

using namespace spoold::smtp::server;
constexpr auto base64_encode = spoold::smtp::base64::encode;

namespace {

ServerOptions opts() {
  ServerOptions o;
  o.hostname = "mx.test";
  o.max_message_size = 1000;
  o.max_recipients = 3;
  o.max_errors = 20;
  return o;
}

struct Host {
  ServerEngine e;
  bool answer = true;  // answer every event at once
  bool store_ok = true;
  bool tls_auto = true;
  std::vector<std::string> events;  // one line per event, see drain()
  std::vector<std::string> trace;   // "from>to"
  std::vector<std::string> commands;
  std::string data;  // every MessageData, joined
  std::vector<Envelope> envelopes;
  std::size_t max_chunk = 0;

  explicit Host(ServerOptions o = opts())
      : e(std::move(o), ServerHooks{[this](State a, State b) {
                                      trace.push_back(fmt::format("{}>{}", to_string(a), to_string(b)));
                                    },
                                    [this](std::string_view c) { commands.emplace_back(c); }, nullptr}) {
    e.start();
    e.take_output();
  }

  void drain() {
    for (int guard = 0; guard < 1000; ++guard) {
      auto evs = e.take_events();
      if (evs.empty()) return;
      for (auto& ev : evs) handle(ev);
    }
    FAIL("events did not settle");
  }

  void handle(Event& ev) {
    if (auto* r = std::get_if<RcptRequest>(&ev)) {
      events.push_back("rcpt " + r->address);
      if (!answer) return;
      if (r->address.starts_with("bad"))
        e.rcpt_verdict({550, "5.1.1", "no such user"});
      else if (r->address.starts_with("relay"))
        e.rcpt_verdict({554, "5.7.1", "Relay access denied"});
      else
        e.rcpt_verdict({250, "", ""});
    } else if (auto* a = std::get_if<AuthRequest>(&ev)) {
      events.push_back(fmt::format("auth {} [{}] {} {}", a->mechanism, a->authzid, a->user, a->password));
      if (answer) e.auth_verdict(a->user == "u" && a->password == "p", a->user);
    } else if (auto* b = std::get_if<MessageBegin>(&ev)) {
      std::string rcpts;
      for (auto& r : b->envelope.recipients) rcpts += (rcpts.empty() ? "" : ",") + r.address;
      events.push_back(fmt::format("begin <{}> {}", b->envelope.sender, rcpts));
      envelopes.push_back(b->envelope);
    } else if (auto* d = std::get_if<MessageData>(&ev)) {
      data += d->bytes;
      max_chunk = std::max(max_chunk, d->bytes.size());
    } else if (auto* m = std::get_if<MessageEnd>(&ev)) {
      events.push_back(fmt::format("end {} {}", m->size, m->bare_lf_fixed));
      if (answer) e.message_stored(store_ok, store_ok ? "Q1" : "queue file write error");
    } else if (auto* ab = std::get_if<MessageAborted>(&ev)) {
      events.push_back("aborted " + ab->reason);
      data.clear();  // the host drops its temporary file
    } else if (std::holds_alternative<StartTls>(ev)) {
      events.push_back("starttls");
      if (tls_auto) e.tls_started();
    } else if (auto* di = std::get_if<InputDiscarded>(&ev)) {
      events.push_back(fmt::format("discarded {}", di->bytes));
    } else if (auto* s = std::get_if<SessionEnded>(&ev)) {
      events.push_back(fmt::format("ended {}", to_string(s->reason)));
    }
  }

  // Sends bytes, lets the host answer, returns what the engine replied.
  std::string client(std::string_view bytes) {
    e.feed(bytes);
    drain();
    return e.take_output();
  }
  // The same, one byte at a time: chunk boundaries must change nothing.
  std::string client_bytewise(std::string_view bytes) {
    std::string out;
    for (char c : bytes) {
      e.feed(std::string_view(&c, 1));
      drain();
      out += e.take_output();
    }
    return out;
  }
  void call(const std::string& what) {
    if (what == "<timeout>") e.timed_out();
    if (what == "<closed>") e.closed();
    if (what == "<tls>") e.tls_started();
    drain();
  }
};

// Only the codes of the reply lines, e.g. "250 250 354".
std::string codes(std::string_view out) {
  std::string c;
  std::size_t p = 0;
  while (p < out.size()) {
    std::size_t e = out.find("\r\n", p);
    if (e == std::string_view::npos) e = out.size();
    std::string_view line = out.substr(p, e - p);
    if (line.size() >= 4 && line[3] == ' ') c += (c.empty() ? "" : " ") + std::string(line.substr(0, 3));
    p = e + 2;
  }
  return c;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (auto& x : v) s += (s.empty() ? "" : " | ") + x;
  return s;
}

const std::string kEhlo = "EHLO client.test\r\n";
const std::string kMail = "MAIL FROM:<s@x.test>\r\n";
const std::string kRcpt = "RCPT TO:<a@y.test>\r\n";

}  // namespace

TEST_CASE("server: banner and EHLO reply, exact bytes") {
  ServerOptions o = opts();
  o.starttls = true;
  o.auth = true;
  o.loopback = true;
  ServerEngine e(o);
  e.start();
  CHECK(e.take_output() == "220 mx.test ESMTP spoold\r\n");
  e.feed(kEhlo);
  CHECK(e.take_output() ==
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n");
  e.feed("HELO client.test\r\n");
  CHECK(e.take_output() == "250 mx.test\r\n");
  CHECK(e.state() == State::ready);
}

TEST_CASE("server: every command in every state") {
  // The state is reached by its prefix, then one command; the first reply's code is checked.
  struct Prefix {
    std::string name, bytes;
  };
  const std::vector<Prefix> states = {
      {"connected", ""},
      {"ready", kEhlo},
      {"mail", kEhlo + kMail},
      {"rcpt", kEhlo + kMail + kRcpt},
      {"helo-ready", "HELO client.test\r\n"},
  };
  struct Row {
    std::string command;
    std::vector<std::string> expect;  // per state above
  };
  const std::vector<Row> table = {
      {"EHLO c.test", {"250", "250", "250", "250", "250"}},
      {"HELO c.test", {"250", "250", "250", "250", "250"}},
      {"EHLO", {"501", "501", "501", "501", "501"}},
      {"MAIL FROM:<s@x.test>", {"503", "250", "503", "503", "250"}},
      {"MAIL FROM:<s@x.test> SIZE=10", {"503", "250", "503", "503", "555"}},
      {"RCPT TO:<b@y.test>", {"503", "503", "250", "250", "503"}},
      {"DATA", {"503", "503", "554", "354", "503"}},
      {"RSET", {"250", "250", "250", "250", "250"}},
      {"NOOP", {"250", "250", "250", "250", "250"}},
      {"QUIT", {"221", "221", "221", "221", "221"}},
      {"VRFY a@y.test", {"252", "252", "252", "252", "252"}},
      {"HELP", {"214", "214", "214", "214", "214"}},
      {"STARTTLS", {"220", "220", "503", "503", "220"}},
      {"AUTH PLAIN", {"503", "538", "503", "503", "503"}},
      {"BDAT 10 LAST", {"502", "502", "502", "502", "502"}},
      {"EXPN list", {"502", "502", "502", "502", "502"}},
      {"XYZZY", {"500", "500", "500", "500", "500"}},
      {"", {"500", "500", "500", "500", "500"}},
  };
  for (const Row& r : table) {
    for (std::size_t s = 0; s < states.size(); ++s) {
      ServerOptions o = opts();
      o.starttls = true;
      o.auth = true;
      Host h(o);
      h.client(states[s].bytes);
      std::string out = h.client(r.command + "\r\n");
      INFO("state " << states[s].name << ", command '" << r.command << "': " << out);
      CHECK(out.substr(0, 3) == r.expect[s]);
    }
  }
}

TEST_CASE("server: the state after each command") {
  Host h;
  CHECK(h.e.state() == State::connected);
  h.client(kEhlo);
  CHECK(h.e.state() == State::ready);
  h.client(kMail);
  CHECK(h.e.state() == State::mail);
  h.client("RCPT TO:<bad@y.test>\r\n");
  CHECK(h.e.state() == State::mail);  // refused: still no recipient
  h.client(kRcpt);
  CHECK(h.e.state() == State::rcpt);
  h.client("DATA\r\n");
  CHECK(h.e.state() == State::data);
  h.client(".\r\n");
  CHECK(h.e.state() == State::ready);
  h.client("QUIT\r\n");
  CHECK(h.e.state() == State::closed);
  CHECK(joined(h.trace) ==
        "init>connected | connected>ready | ready>mail | mail>rcpt-wait | rcpt-wait>mail | mail>rcpt-wait | "
        "rcpt-wait>rcpt | rcpt>data | data>stored-wait | stored-wait>ready | ready>closed");
}

struct Scenario {
  std::string name;
  std::vector<std::pair<std::string, std::string>> dialogue;  // client sends → server replies exactly
  std::string events;                                         // joined event lines
  std::string data;                                           // the message data the host got
  int max_errors = 20;
};

// Removes the EHLO reply at the start of a client step's output (checked in its own test).
std::string strip_ehlo(std::string got) {
  if (!got.starts_with("250-mx.test\r\n")) return got;
  std::size_t last = got.find("\r\n250 ");
  return got.substr(got.find("\r\n", last + 2) + 2);
}

TEST_CASE("server: scenarios (whole, and byte by byte)") {
  const std::string kOkQ = "250 2.0.0 Ok: queued as Q1\r\n";
  std::vector<Scenario> v;
  v.push_back({"lock-step message",
               {{kEhlo, ""},
                {kMail, "250 2.1.0 Ok\r\n"},
                {kRcpt, "250 2.1.5 Ok\r\n"},
                {"DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n"},
                {"Subject: t\r\n\r\nhi\r\n.\r\n", kOkQ},
                {"QUIT\r\n", "221 2.0.0 Bye\r\n"}},
               "rcpt a@y.test | begin <s@x.test> a@y.test | end 18 0 | ended quit",
               "Subject: t\r\n\r\nhi\r\n"});
  v.push_back({"pipelined MAIL, RCPT, RCPT, DATA, body and QUIT in one write: replies in order",
               {{kEhlo, ""},
                {"MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<bad@y.test>\r\nDATA\r\n"
                 "MAIL FROM:<x@x.test>\r\n.\r\nQUIT\r\n",
                 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n"
                 "354 End data with <CR><LF>.<CR><LF>\r\n" +
                     kOkQ + "221 2.0.0 Bye\r\n"}},
               "rcpt a@y.test | rcpt bad@y.test | begin <> a@y.test | end 22 0 | ended quit",
               "MAIL FROM:<x@x.test>\r\n"});
  v.push_back({"pipelined: every recipient refused, DATA gets 554 and the body is read as commands",
               {{kEhlo, ""},
                {"MAIL FROM:<s@x.test>\r\nRCPT TO:<relay@z.test>\r\nDATA\r\nNOOP\r\n",
                 "250 2.1.0 Ok\r\n554 5.7.1 Relay access denied\r\n554 5.5.1 Error: no valid recipients\r\n"
                 "250 2.0.0 Ok\r\n"}},
               "rcpt relay@z.test",
               ""});
  v.push_back(
      {"two messages on one connection, the second pipelined behind the first dot",
       {{kEhlo, ""},
        {kMail + kRcpt + "DATA\r\none\r\n.\r\n" + kMail + kRcpt + "DATA\r\ntwo\r\n.\r\n",
         "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" + kOkQ +
             "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n" + kOkQ}},
       "rcpt a@y.test | begin <s@x.test> a@y.test | end 5 0 | rcpt a@y.test | begin <s@x.test> a@y.test | "
       "end 5 0",
       "one\r\ntwo\r\n"});
  v.push_back({"empty message: the DATA line's CRLF is the first of CRLF.CRLF",
               {{kEhlo + kMail + kRcpt, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"},
                {"DATA\r\n.\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n" + kOkQ}},
               "rcpt a@y.test | begin <s@x.test> a@y.test | end 0 0",
               ""});
  v.push_back({"dot-unstuffing",
               {{kEhlo + kMail + kRcpt + "DATA\r\n",
                 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
                {"..\r\n...x\r\n.y\r\nz.\r\n.\r\n", kOkQ}},
               "rcpt a@y.test | begin <s@x.test> a@y.test | end 15 0",
               ".\r\n..x\r\ny\r\nz.\r\n"});
  v.push_back({"bare LF normalised to CRLF; a lone CR kept as it is",
               {{kEhlo + kMail + kRcpt + "DATA\r\n",
                 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
                {"a\nb\r\nc\rd\n\n..e\r\n.\r\n", kOkQ}},
               "rcpt a@y.test | begin <s@x.test> a@y.test | end 17 3",
               "a\r\nb\r\nc\rd\r\n\r\n.e\r\n"});
  v.push_back({"long data lines pass (the delivery side wraps them)",
               {{kEhlo + kMail + kRcpt + "DATA\r\n",
                 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
                {std::string(990, 'x') + "\r\n.\r\n", kOkQ}},
               "rcpt a@y.test | begin <s@x.test> a@y.test | end 992 0",
               std::string(990, 'x') + "\r\n"});
  v.push_back(
      {"SIZE over the limit is refused at MAIL; at the limit accepted",
       {{kEhlo, ""},
        {"MAIL FROM:<s@x.test> SIZE=1001\r\n", "552 5.3.4 Error: message size exceeds fixed limit\r\n"},
        {"MAIL FROM:<s@x.test> SIZE=1000\r\n", "250 2.1.0 Ok\r\n"}},
       "",
       ""});
  v.push_back({"a message that grows over the limit: read to its end, 552, MessageAborted, no MessageEnd",
               {{kEhlo + kMail + kRcpt + "DATA\r\n",
                 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
                {std::string(600, 'x') + "\r\n" + std::string(600, 'y') + "\r\n.\r\n",
                 "552 5.3.4 Error: message file too big\r\n"},
                {kMail, "250 2.1.0 Ok\r\n"}},
               "rcpt a@y.test | begin <s@x.test> a@y.test | aborted message exceeds the size limit",
               ""});
  v.push_back({"max_recipients: the fourth gets 452 4.5.3 without asking the host",
               {{kEhlo + kMail, "250 2.1.0 Ok\r\n"},
                {kRcpt + kRcpt + kRcpt + kRcpt,
                 "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n"}},
               "rcpt a@y.test | rcpt a@y.test | rcpt a@y.test",
               ""});
  v.push_back({"errors: the fifth ends the session with 421; nothing after it is read",
               {{"FOO\r\nBAR\r\nMAIL FROM:<a@b.test>\r\n",
                 "500 5.5.2 Error: command not recognized\r\n"
                 "500 5.5.2 Error: command not recognized\r\n"
                 "503 5.5.1 Error: send HELO/EHLO first\r\n"},
                {"EHLO\r\nRCPT TO:<a@b.test>\r\nNOOP\r\n",
                 "501 5.5.4 Syntax: EHLO hostname\r\n503 5.5.1 Error: need MAIL command\r\n"
                 "421 4.7.0 mx.test Error: too many errors\r\n"}},
               "ended too many errors",
               "",
               5});
  v.push_back({"a command line over max_line: 500 5.5.6 once it ends, then the next command",
               {{"NOOP " + std::string(3000, 'x') + "\r\nNOOP\r\n",
                 "500 5.5.6 Error: line too long\r\n250 2.0.0 Ok\r\n"},
                {"NOOP " + std::string(2048 - 7, 'y') + "\r\n", "250 2.0.0 Ok\r\n"}},
               "",
               ""});
  v.push_back({"bare LF, bare CR and NUL in a command line are refused",
               {{"NOOP\n", "500 5.5.2 Error: bare <LF> received\r\n"},
                {"NO\rOP\r\n", "500 5.5.2 Error: bare <CR> received\r\n"},
                {std::string("NO\0OP\r\n", 7), "500 5.5.2 Error: NUL in command\r\n"},
                {"NOOP\r\n", "250 2.0.0 Ok\r\n"}},
               "",
               ""});
  v.push_back(
      {"MAIL and RCPT syntax",
       {{kEhlo, ""},
        {"MAIL FROM:s@x.test\r\n", "501 5.1.7 Bad sender address syntax\r\n"},
        {"MAIL TO:<s@x.test>\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"},
        {"MAIL FROM:<s@@x.test>\r\n", "501 5.1.7 Bad sender address syntax\r\n"},
        {"MAIL FROM:<s@x.test> FOO=1\r\n", "555 5.5.4 Unsupported parameter FOO\r\n"},
        {"MAIL FROM:<s@x.test> SIZE=1 SIZE=2\r\n", "501 5.5.4 Error: duplicate parameter SIZE\r\n"},
        {"MAIL FROM:<s@x.test> BODY=BINARYMIME\r\n", "555 5.5.4 Unsupported BODY parameter\r\n"},
        {"MAIL FROM:<d\xc3\xa9@x.test>\r\n", "553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8\r\n"},
        {"MAIL FROM: <@relay.test:s@x.test> RET=HDRS ENVID=a+2Bb\r\n", "250 2.1.0 Ok\r\n"},
        {"RCPT TO:<a@y.test> NOTIFY=NEVER,SUCCESS\r\n", "501 5.5.4 Bad NOTIFY parameter\r\n"},
        {"RCPT TO:<a@y.test> ORCPT=rfc822\r\n", "501 5.5.4 Bad ORCPT parameter\r\n"},
        {"RCPT TO:<a y.test>\r\n", "501 5.1.3 Bad recipient address syntax\r\n"},
        {"RCPT TO:<Postmaster>\r\n", "250 2.1.5 Ok\r\n"},
        {"RCPT TO:<a@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40y.test\r\n", "250 2.1.5 Ok\r\n"}},
       "rcpt postmaster | rcpt a@y.test",
       ""});
  v.push_back({"SMTPUTF8 allows UTF-8 addresses",
               {{kEhlo, ""},
                {"MAIL FROM:<d\xc3\xa9@x.test> SMTPUTF8\r\n", "250 2.1.0 Ok\r\n"},
                {"RCPT TO:<\xc3\xa9@b\xc3\xbc.test>\r\n", "250 2.1.5 Ok\r\n"},
                {"RCPT TO:<\xff@y.test>\r\n", "501 5.1.3 Bad recipient address syntax\r\n"}},
               "rcpt \xc3\xa9@b\xc3\xbc.test",
               ""});
  v.push_back({"parameters after HELO are refused",
               {{"HELO client.test\r\n", "250 mx.test\r\n"},
                {"MAIL FROM:<s@x.test> BODY=8BITMIME\r\n", "555 5.5.4 Error: parameters require EHLO\r\n"},
                {kMail, "250 2.1.0 Ok\r\n"}},
               "",
               ""});
  v.push_back({"RSET ends the transaction; EHLO in a transaction too",
               {{kEhlo + kMail + kRcpt, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"},
                {"RSET\r\nDATA\r\n", "250 2.0.0 Ok\r\n503 5.5.1 Error: need RCPT command\r\n"},
                {kMail, "250 2.1.0 Ok\r\n"},
                {kEhlo, ""},
                {"RCPT TO:<a@y.test>\r\n", "503 5.5.1 Error: need MAIL command\r\n"}},
               "rcpt a@y.test",
               ""});
  v.push_back({"message durable only when the host says so: store failure gives 451",
               {{kEhlo + kMail + kRcpt + "DATA\r\n",
                 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"},
                {"x\r\n.\r\n", "451 4.3.0 Error: queue file write error\r\n"}},
               "rcpt a@y.test | begin <s@x.test> a@y.test | end 3 0",
               "x\r\n"});

  for (bool bytewise : {false, true}) {
    for (const Scenario& s : v) {
      ServerOptions o = opts();
      o.max_errors = s.max_errors;
      Host h(o);
      if (s.name.find("451") != std::string::npos) h.store_ok = false;
      std::size_t step = 0;
      for (const auto& [send, expect] : s.dialogue) {
        INFO(s.name << (bytewise ? " (byte by byte)" : "") << ", step " << step++);
        std::string got = bytewise ? h.client_bytewise(send) : h.client(send);
        if (send.starts_with(kEhlo)) got = strip_ehlo(got);
        CHECK(got == expect);
      }
      INFO(s.name << (bytewise ? " (byte by byte)" : ""));
      CHECK(joined(h.events) == s.events);
      CHECK(h.data == s.data);
    }
  }
}

TEST_CASE("server: SMTP smuggling variants never end DATA") {
  struct Variant {
    std::string name, bytes, data;  // data: what the host must get for "a" + bytes + "MAIL…\r\n"
    int bare_lf;
  };
  const std::vector<Variant> variants = {
      {"LF.LF", "\n.\n", "a\r\n.\r\n", 2},
      {"CR.CR", "\r.\r", "a\r.\r", 0},
      {"LF.CRLF", "\n.\r\n", "a\r\n.\r\n", 1},
      {"CRLF.LF", "\r\n.\n", "a\r\n.\r\n", 1},
      {"CR.CRLF", "\r.\r\n", "a\r.\r\n", 0},
      {"CRLF.CR", "\r\n.\rX", "a\r\n\rX", 0},
      {"CRLF.CRCRLF", "\r\n.\r\r\n", "a\r\n\r\r\n", 0},
  };
  const std::string smuggled = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\nDATA\r\nevil\r\n";
  for (bool bytewise : {false, true}) {
    for (const Variant& var : variants) {
      INFO(var.name << (bytewise ? " byte by byte" : ""));
      Host h;
      h.client(kEhlo + kMail + kRcpt + "DATA\r\n");
      std::string all = "a" + var.bytes + smuggled + ".\r\n";
      std::string got = bytewise ? h.client_bytewise(all) : h.client(all);
      CHECK(got == "250 2.0.0 Ok: queued as Q1\r\n");  // one message, no reply to smuggled commands
      CHECK(h.data == var.data + smuggled);
      CHECK(joined(h.events) ==
            fmt::format("rcpt a@y.test | begin <s@x.test> a@y.test | end {} {}", h.data.size(), var.bare_lf));
    }
  }
}

TEST_CASE("server: DataReader gives the same result for every split of its input") {
  const std::string input = "a\r\n..b\n.\r\r\n\r.\r\n.x\r\nlong" + std::string(100, 'z') + "\n\r\n.\r\nTAIL";
  std::string whole;
  DataReader r;
  std::size_t used = r.feed(input, whole);
  REQUIRE(r.done());
  CHECK(input.substr(used) == "TAIL");
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    for (std::size_t cut2 = cut; cut2 <= input.size(); cut2 += 7) {
      DataReader p;
      std::string out;
      std::size_t n = p.feed(std::string_view(input).substr(0, cut), out);
      if (!p.done()) n += p.feed(std::string_view(input).substr(n, cut2 - n), out);
      if (!p.done()) n += p.feed(std::string_view(input).substr(n), out);
      INFO("cuts " << cut << " " << cut2);
      REQUIRE(p.done());
      CHECK(out == whole);
      CHECK(n == used);
      CHECK(p.size() == whole.size());
    }
  }
}

TEST_CASE("server: data is streamed in bounded chunks") {
  ServerOptions o = opts();
  o.max_message_size = 0;
  Host h(o);
  h.client(kEhlo + kMail + kRcpt + "DATA\r\n");
  std::string line = std::string(5000, 'q') + "\r\n";
  std::string big;
  for (int i = 0; i < 100; ++i) big += line;
  h.client(big + ".\r\n");
  CHECK(h.data == big);
  CHECK(h.max_chunk <= ServerEngine::kDataChunk);
  CHECK(h.events.back() == fmt::format("end {} 0", big.size()));
}

TEST_CASE("server: the host answering late — nothing is read or replied until then") {
  Host h;
  h.answer = false;
  h.client(kEhlo);
  std::string out = h.client(kMail + kRcpt + "RCPT TO:<b@y.test>\r\nDATA\r\nbody\r\n.\r\nNOOP\r\n");
  CHECK(out == "250 2.1.0 Ok\r\n");
  CHECK(joined(h.events) == "rcpt a@y.test");
  CHECK(h.e.state() == State::rcpt_wait);
  CHECK_FALSE(h.e.timeout());  // no client timer while the host decides
  CHECK(h.e.input_paused());
  h.e.rcpt_verdict({250, "", ""});
  h.drain();
  CHECK(h.e.take_output() == "250 2.1.5 Ok\r\n");
  h.e.rcpt_verdict({451, "4.3.0", "try later"});
  h.drain();
  CHECK(h.e.take_output() ==
        "451 4.3.0 try later\r\n354 End data with <CR><LF>.<CR><LF>\r\n");  // data read; NOOP waits
  CHECK(h.e.state() == State::stored_wait);
  CHECK(joined(h.events) == "rcpt a@y.test | rcpt b@y.test | begin <s@x.test> a@y.test | end 6 0");
  CHECK(h.e.take_output().empty());
  h.e.message_stored(true, "ABC123");
  h.drain();
  CHECK(h.e.take_output() == "250 2.0.0 Ok: queued as ABC123\r\n250 2.0.0 Ok\r\n");
  CHECK(h.data == "body\r\n");
}

TEST_CASE("server: message_refused and odd verdicts never become a success") {
  Host h;
  h.answer = false;
  h.client(kEhlo + kMail + kRcpt);
  h.e.rcpt_verdict({354, "", "weird"});  // not an answer RCPT can have
  h.drain();
  CHECK(h.e.take_output() == "451 4.3.0 Error: internal error\r\n");
  h.client(kRcpt);
  h.e.rcpt_verdict({250, "", "fine\r\n250 smuggled"});
  h.drain();
  CHECK(h.e.take_output() == "250 2.1.5 fine??250 smuggled\r\n");
  h.client("RCPT TO:<c@y.test>\r\n");
  h.e.rcpt_verdict({550, "4.1.1", "class mismatch"});  // the code's class wins
  h.drain();
  CHECK(h.e.take_output() == "550 5.0.0 class mismatch\r\n");
  h.client("DATA\r\nx\r\n.\r\n");
  h.e.message_refused({452, "4.3.1", "Insufficient system storage"});
  h.drain();
  CHECK(h.e.take_output() == "452 4.3.1 Insufficient system storage\r\n");
  h.e.feed(kMail + kRcpt);
  h.drain();
  h.e.rcpt_verdict({250, "", ""});
  h.drain();
  h.e.feed("DATA\r\nx\r\n.\r\n");
  h.drain();
  h.e.message_refused({250, "", "no"});  // a refusal must be one
  h.drain();
  CHECK(codes(h.e.take_output()) == "250 250 354 451");
}

TEST_CASE("server: STARTTLS discards pipelined input and resets to before EHLO") {
  ServerOptions o = opts();
  o.starttls = true;
  Host h(o);
  h.tls_auto = false;
  CHECK(h.client(kEhlo).find("250 STARTTLS\r\n") != std::string::npos);
  std::string injected = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\n";
  CHECK(h.client("STARTTLS\r\n" + injected) == "220 2.0.0 Ready to start TLS\r\n");
  CHECK(h.e.state() == State::tls_wait);
  h.client("more plaintext\r\n");  // read by the transport before the handshake: discarded too
  h.call("<tls>");
  CHECK(h.e.encrypted());
  CHECK(h.e.state() == State::connected);
  CHECK(joined(h.events) == fmt::format("starttls | discarded {}", injected.size() + 16));
  CHECK(h.client(kMail) == "503 5.5.1 Error: send HELO/EHLO first\r\n");
  std::string ehlo = h.client(kEhlo);
  CHECK(ehlo.find("STARTTLS") == std::string::npos);
  CHECK(h.client("STARTTLS\r\n") == "554 5.5.1 Error: TLS already active\r\n");
  h.client(kMail + kRcpt + "DATA\r\nx\r\n.\r\n");
  REQUIRE(h.envelopes.size() == 1);
  CHECK(h.envelopes[0].tls);
  CHECK(with_protocol(h.envelopes[0]) == "ESMTPS");
}

TEST_CASE("server: AUTH PLAIN and LOGIN") {
  ServerOptions o = opts();
  o.auth = true;
  o.loopback = true;  // plaintext allowed from loopback
  std::string plain_ok = base64_encode(std::string("\0u\0p", 4));
  std::string plain_bad = base64_encode(std::string("\0u\0wrong", 8));

  SECTION("PLAIN with an initial response") {
    Host h(o);
    CHECK(h.client(kEhlo).find("250 AUTH PLAIN LOGIN\r\n") != std::string::npos);
    CHECK(h.client("AUTH PLAIN " + plain_ok + "\r\n") == "235 2.7.0 Authentication successful\r\n");
    CHECK(h.e.auth_user() == "u");
    CHECK(h.client("AUTH PLAIN " + plain_ok + "\r\n") == "503 5.5.1 Error: already authenticated\r\n");
    CHECK(h.client(kEhlo).find("AUTH") == std::string::npos);
    h.client(kMail + kRcpt + "DATA\r\n.\r\n");
    REQUIRE(h.envelopes.size() == 1);
    CHECK(h.envelopes[0].auth_user == "u");
    CHECK(with_protocol(h.envelopes[0]) == "ESMTPA");
    CHECK(joined(h.commands).find(" p") == std::string::npos);  // the secret is never traced
    CHECK(joined(h.commands).find(plain_ok) == std::string::npos);
    CHECK(h.commands.at(1) == "AUTH PLAIN <secret>");
    CHECK(h.commands.at(2) == "AUTH PLAIN <secret>");  // the second AUTH, refused
    CHECK(h.commands.at(3) == "EHLO client.test");
  }
  SECTION("PLAIN without an initial response, authzid given") {
    Host h(o);
    h.client(kEhlo);
    CHECK(h.client("AUTH PLAIN\r\n") == "334 \r\n");
    CHECK(h.e.state() == State::auth);
    CHECK(h.client(base64_encode(std::string("admin\0u\0p", 9)) + "\r\n") ==
          "235 2.7.0 Authentication successful\r\n");
    CHECK(joined(h.events) == "auth PLAIN [admin] u p");
  }
  SECTION("PLAIN wrong password: 535, counted") {
    Host h(o);
    h.client(kEhlo);
    CHECK(h.client("AUTH PLAIN " + plain_bad + "\r\n") == "535 5.7.8 Error: authentication failed\r\n");
    CHECK(h.e.errors() == 1);
    CHECK(h.e.auth_user().empty());
  }
  SECTION("LOGIN: two challenges") {
    Host h(o);
    h.client(kEhlo);
    CHECK(h.client("AUTH LOGIN\r\n") == "334 VXNlcm5hbWU6\r\n");
    CHECK(h.client(base64_encode("u") + "\r\n") == "334 UGFzc3dvcmQ6\r\n");
    CHECK(h.client(base64_encode("p") + "\r\n") == "235 2.7.0 Authentication successful\r\n");
    CHECK(joined(h.commands) == "EHLO client.test | AUTH LOGIN | <secret> | <secret>");
  }
  SECTION("LOGIN with the user name as initial response") {
    Host h(o);
    h.client(kEhlo);
    CHECK(h.client("AUTH LOGIN " + base64_encode("u") + "\r\n") == "334 UGFzc3dvcmQ6\r\n");
    CHECK(h.client(base64_encode("p") + "\r\n") == "235 2.7.0 Authentication successful\r\n");
  }
  SECTION("* cancels; bad base64 and unknown mechanisms are refused") {
    Host h(o);
    h.client(kEhlo);
    h.client("AUTH LOGIN\r\n");
    CHECK(h.client("*\r\n") == "501 5.7.0 Authentication cancelled\r\n");
    CHECK(h.e.state() == State::ready);
    h.client("AUTH PLAIN\r\n");
    CHECK(h.client("!!!!\r\n") == "501 5.5.2 Error: invalid base64 data\r\n");
    CHECK(h.client("AUTH CRAM-MD5\r\n") == "504 5.5.4 Unrecognized authentication type\r\n");
    CHECK(h.client("AUTH PLAIN " + base64_encode("nonul") + "\r\n") ==
          "501 5.5.2 Error: invalid PLAIN data\r\n");
    h.client("AUTH PLAIN\r\n");
    CHECK(h.client(std::string(3000, 'A') + "\r\n") == "500 5.5.6 Error: line too long\r\n");
    CHECK(h.e.state() == State::ready);  // the exchange ended with it
    CHECK(joined(h.events).empty());
  }
  SECTION("the host checks slowly: nothing is read meanwhile") {
    Host h(o);
    h.answer = false;
    h.client(kEhlo);
    CHECK(h.client("AUTH PLAIN " + plain_ok + "\r\n" + kMail).empty());
    CHECK(h.e.state() == State::auth_wait);
    h.e.auth_verdict(true, "u");
    h.drain();
    CHECK(h.e.take_output() == "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n");
  }
  SECTION("not loopback: only after STARTTLS") {
    o.loopback = false;
    o.starttls = true;
    Host h(o);
    std::string ehlo = h.client(kEhlo);
    CHECK(ehlo.find("AUTH") == std::string::npos);
    CHECK(h.client("AUTH PLAIN " + plain_ok + "\r\n").starts_with("538 5.7.11"));
    h.client("STARTTLS\r\n");
    CHECK(h.client(kEhlo).find("250 AUTH PLAIN LOGIN\r\n") != std::string::npos);
    CHECK(h.client("AUTH PLAIN " + plain_ok + "\r\n") == "235 2.7.0 Authentication successful\r\n");
    h.client(kMail + kRcpt + "DATA\r\n.\r\n");
    CHECK(with_protocol(h.envelopes.at(0)) == "ESMTPSA");
  }
}

TEST_CASE("server: timeouts and the ends of a session") {
  SECTION("timeout while waiting for a command") {
    Host h;
    REQUIRE(h.e.timeout());
    CHECK(*h.e.timeout() == std::chrono::minutes(5));
    h.call("<timeout>");
    CHECK(h.e.take_output() == "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    CHECK(h.e.ended());
    CHECK(joined(h.events) == "ended timeout");
    CHECK_FALSE(h.e.timeout());
  }
  SECTION("timeout in DATA aborts the message") {
    Host h;
    h.client(kEhlo + kMail + kRcpt + "DATA\r\npartial");
    h.call("<timeout>");
    CHECK(codes(h.e.take_output()) == "421");
    CHECK(joined(h.events) ==
          "rcpt a@y.test | begin <s@x.test> a@y.test | aborted timeout in DATA | ended timeout");
  }
  SECTION("a trickle of data does not re-arm the timer; 8 KiB does") {
    Host h;
    h.client(kEhlo + kMail + kRcpt + "DATA\r\n");
    auto epoch = h.e.timer_epoch();
    for (int i = 0; i < 100; ++i) h.client("x");
    CHECK(h.e.timer_epoch() == epoch);
    ServerOptions o = opts();
    o.max_message_size = 0;
    Host g(o);
    g.client(kEhlo + kMail + kRcpt + "DATA\r\n");
    epoch = g.e.timer_epoch();
    g.client(std::string(ServerEngine::kDataProgress, 'x'));
    CHECK(g.e.timer_epoch() != epoch);
  }
  SECTION("no timer while the host stores the message") {
    Host h;
    h.answer = false;
    h.client(kEhlo + kMail + kRcpt);
    h.e.rcpt_verdict({250, "", ""});
    h.client("DATA\r\n.\r\n");
    CHECK(h.e.state() == State::stored_wait);
    CHECK_FALSE(h.e.timeout());
    h.e.timed_out();  // a stale timer: ignored
    CHECK_FALSE(h.e.ended());
  }
  SECTION("the client closes in DATA") {
    Host h;
    h.client(kEhlo + kMail + kRcpt + "DATA\r\nabc");
    h.call("<closed>");
    CHECK(joined(h.events) ==
          "rcpt a@y.test | begin <s@x.test> a@y.test | aborted client closed the connection in DATA | ended "
          "client closed");
    CHECK(h.e.take_output().empty());
    h.e.feed("NOOP\r\n");
    CHECK(h.e.take_output().empty());
  }
  SECTION("too much pipelined input while the host decides") {
    Host h;
    h.answer = false;
    h.client(kEhlo + kMail + kRcpt);
    h.e.feed(std::string(ServerEngine::kMaxBuffered + 1, 'n'));
    CHECK(h.e.ended());
    CHECK(h.e.take_output() == "421 4.7.0 mx.test Error: too much pipelined input\r\n");
  }
}

TEST_CASE("server: a client that pipelines without reading is answered only as the transport has room") {
  Host h;
  std::string ehlos;
  constexpr int kCommands = 64 * 1024 / 8;
  for (int i = 0; i < kCommands; ++i) ehlos += "EHLO a\r\n";  // ~200 octets of reply each
  h.e.feed(ehlos);
  h.e.resume();  // nothing taken yet: no more replies made
  std::string out = h.e.take_output();
  CHECK(out.size() >= ServerEngine::kMaxOutput);
  CHECK(out.size() < ServerEngine::kMaxOutput + 512);  // one reply past the limit at most
  CHECK(h.e.output_held());
  CHECK(h.e.input_paused());
  CHECK(h.e.buffered() > 0);
  std::size_t answered = 0;
  for (int round = 0; round < kCommands && h.e.output_held(); ++round) {
    h.e.resume();
    answered += out.size();
    out = h.e.take_output();
    CHECK(out.size() < ServerEngine::kMaxOutput + 512);
    std::string more = h.e.take_output();
    CHECK(more.empty());
  }
  answered += out.size();
  CHECK_FALSE(h.e.output_held());
  CHECK_FALSE(h.e.input_paused());
  CHECK(h.e.buffered() == 0);
  // Every command was answered, in order, none lost while held.
  std::string one = [] {
    Host single;
    single.e.feed("EHLO a\r\n");
    return single.e.take_output();
  }();
  CHECK(answered == one.size() * kCommands);
  SECTION("more input while held is bounded like input while the host decides") {
    Host g;
    g.e.feed(ehlos);
    (void)g.e.take_output();
    REQUIRE(g.e.output_held());
    g.e.feed(std::string(ServerEngine::kMaxBuffered, 'n'));
    CHECK(g.e.ended());
    CHECK(g.e.take_output().find("421 4.7.0") != std::string::npos);
  }
}

TEST_CASE("server: junk commands past max_junk count as errors; a stored message resets them") {
  ServerOptions o = opts();
  o.max_junk = 3;
  o.max_errors = 2;
  Host h(o);
  strip_ehlo(h.client(kEhlo));
  CHECK(h.client("NOOP\r\nRSET\r\nVRFY x\r\n") ==
        "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n252 2.0.0 Cannot VRFY user, but will accept message and attempt "
        "delivery\r\n");
  CHECK(h.e.errors() == 0);
  // A message in between: the count starts again.
  CHECK(h.client(kMail + kRcpt + "DATA\r\n").find("354") != std::string::npos);
  CHECK(h.client("x\r\n.\r\n") == "250 2.0.0 Ok: queued as Q1\r\n");
  CHECK(h.client("NOOP\r\nNOOP\r\nNOOP\r\n") == "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
  CHECK(h.e.errors() == 0);
  CHECK(h.client("HELP\r\n").rfind("214 ", 0) == 0);  // the fourth: answered, and an error
  CHECK(h.e.errors() == 1);
  CHECK_FALSE(h.e.ended());
  CHECK(h.client("NOOP\r\nNOOP\r\n") == "250 2.0.0 Ok\r\n421 4.7.0 mx.test Error: too many errors\r\n");
  CHECK(h.e.ended());

  // The default allows a client 100 of them, and none counts as an error.
  Host d(opts());
  strip_ehlo(d.client(kEhlo));
  std::string many;
  for (int i = 0; i < 100; ++i) many += "NOOP\r\n";
  d.client(many);
  CHECK(d.e.errors() == 0);
  d.client("NOOP\r\n");
  CHECK(d.e.errors() == 1);

  // A malformed RSET is an error, and only that: not a junk command as well.
  ServerOptions one = opts();
  one.max_junk = 1;
  Host r(one);
  strip_ehlo(r.client(kEhlo));
  CHECK(r.client("RSET x\r\nRSET x\r\n") == "501 5.5.4 Syntax: RSET\r\n501 5.5.4 Syntax: RSET\r\n");
  CHECK(r.e.errors() == 2);
}

TEST_CASE("server: parsing pieces") {
  CHECK(valid_mailbox("a.b+c@x-y.test", false));
  CHECK(valid_mailbox("\"a b\"@x.test", false));
  CHECK(valid_mailbox("a@[127.0.0.1]", false));
  CHECK(valid_mailbox("a@[IPv6:::1]", false));
  CHECK_FALSE(valid_mailbox("a@", false));
  CHECK_FALSE(valid_mailbox("@x.test", false));
  CHECK_FALSE(valid_mailbox("a..b@x.test", false));
  CHECK_FALSE(valid_mailbox("a@-x.test", false));
  CHECK_FALSE(valid_mailbox(std::string(65, 'a') + "@x.test", false));
  CHECK_FALSE(valid_mailbox("d\xc3\xa9@x.test", false));
  CHECK(valid_mailbox("d\xc3\xa9@x.test", true));
  CHECK_FALSE(valid_mailbox("d\xc3@x.test", true));      // truncated UTF-8
  CHECK_FALSE(valid_mailbox("d\xc0\xaf@x.test", true));  // overlong
  CHECK(xtext_decode("a+2Bb+3D") == std::optional<std::string>("a+b="));
  CHECK_FALSE(xtext_decode("a+2b"));  // lower-case hex
  CHECK_FALSE(xtext_decode("a+2"));
  CHECK_FALSE(xtext_decode("a b"));
}

TEST_CASE("server: the envelope the host gets") {
  Host h;
  h.client(kEhlo);
  h.client("MAIL FROM:<s@x.test> SIZE=500 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1\r\n");
  h.client("RCPT TO:<a@y.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;a+40y.test\r\n");
  h.client("RCPT TO:<b@y.test> NOTIFY=NEVER\r\n");
  h.client("DATA\r\n.\r\n");
  REQUIRE(h.envelopes.size() == 1);
  const Envelope& e = h.envelopes[0];
  CHECK(e.sender == "s@x.test");
  CHECK(e.params.size == std::optional<std::uint64_t>(500));
  CHECK(e.params.body == Body::eight_bit_mime);
  CHECK(e.params.ret == Ret::hdrs);
  CHECK(e.params.envid == "QQ+1");
  REQUIRE(e.recipients.size() == 2);
  CHECK(e.recipients[0].params.notify.failure);
  CHECK(e.recipients[0].params.notify.delay);
  CHECK_FALSE(e.recipients[0].params.notify.success);
  CHECK(e.recipients[0].params.orcpt_type == "rfc822");
  CHECK(e.recipients[0].params.orcpt == "a@y.test");
  CHECK(e.recipients[1].params.notify.never);
  CHECK(e.helo == "client.test");
  CHECK(e.esmtp);
  CHECK_FALSE(e.tls);
  CHECK(with_protocol(e) == "ESMTP");
}

TEST_CASE("server: Received: field") {
  Envelope e;
  e.helo = "client(evil)\xff.test";
  e.esmtp = true;
  e.tls = true;
  e.recipients.push_back({"a@y.test", {}});
  ReceivedInfo info{"mx.test",   "host.y.test",
                    "192.0.2.1", "TLSv1.3 with cipher X",
                    "Q1",        "Fri, 04 Dec 2026 18:53:00 +0000"};
  CHECK(received_field(e, info) ==
        "Received: from client?evil??.test (host.y.test [192.0.2.1])\r\n"
        "\t(using TLSv1.3 with cipher X)\r\n"
        "\tby mx.test (spoold) with ESMTPS id Q1\r\n"
        "\tfor <a@y.test>; Fri, 04 Dec 2026 18:53:00 +0000\r\n");
  e.recipients.push_back({"b@y.test", {}});
  e.tls = false;
  info.tls.clear();
  info.client_name.clear();
  CHECK(received_field(e, info) ==
        "Received: from client?evil??.test (unknown [192.0.2.1])\r\n"
        "\tby mx.test (spoold) with ESMTP id Q1;\r\n"
        "\tFri, 04 Dec 2026 18:53:00 +0000\r\n");
}

TEST_CASE("server: every whole command re-arms the timer") {
  Host h;
  auto epoch = h.e.timer_epoch();
  h.client("NOOP\r\n");
  CHECK(h.e.timer_epoch() != epoch);
  epoch = h.e.timer_epoch();
  h.client("NO");
  CHECK(h.e.timer_epoch() == epoch);  // half a command is no progress
}

TEST_CASE("server: implicit TLS, and a client that speaks before the banner") {
  ServerOptions o = opts();
  o.implicit_tls = true;
  o.starttls = true;
  o.auth = true;
  ServerEngine e(o);
  e.feed(kEhlo);  // held until the banner is out, then answered in order
  CHECK(e.take_output().empty());
  e.start();
  std::string out = e.take_output();
  CHECK(out.starts_with("220 mx.test ESMTP spoold\r\n250-mx.test\r\n"));
  CHECK(out.find("STARTTLS") == std::string::npos);
  CHECK(out.find("250 AUTH PLAIN LOGIN\r\n") != std::string::npos);  // TLS: AUTH from anywhere
  e.feed("STARTTLS\r\n");
  CHECK(e.take_output() == "554 5.5.1 Error: TLS already active\r\n");
}

TEST_CASE("server: the reply hook sees multi-line replies whole; UTF8SMTP in Received") {
  std::vector<std::string> replies;
  ServerEngine e(opts(), ServerHooks{nullptr, nullptr, [&](std::string_view r) { replies.emplace_back(r); }});
  e.start();
  e.feed(kEhlo);
  REQUIRE(replies.size() == 2);
  CHECK(replies[0] == "220 mx.test ESMTP spoold");
  CHECK(replies[1].starts_with("250-mx.test\n250-PIPELINING\n"));
  CHECK(replies[1].ends_with("\n250 DSN"));
  Envelope env;
  env.esmtp = true;
  env.params.smtputf8 = true;
  CHECK(with_protocol(env) == "UTF8SMTP");
  env.tls = true;
  env.auth_user = "u";
  CHECK(with_protocol(env) == "UTF8SMTPSA");
  env.esmtp = false;
  CHECK(with_protocol(env) == "SMTP");
}
