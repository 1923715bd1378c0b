// tests/daemon/relay_test.cpp — relay groups (Mail::Bulkmail::Server semantics) against real aiosmtpd
// servers: STARTTLS + AUTH, round robin with max_messages_per_robin.
#include <catch2/catch.hpp>

#include "tests/daemon/harness.h"

using namespace spoold::test;
using namespace std::chrono_literals;

namespace {

// An aiosmtpd relay with STARTTLS (self-signed) and AUTH for mailer:s3cret; the config's relay
// group "corp" points at it with the given password, and every domain routes there.
struct TlsAuthRelay {
  Env env{"", false};
  std::unique_ptr<Sink> relay;
  explicit TlsAuthRelay(const std::string& password) {
    make_certificate(env.dir().path());
    write_file(env.dir() / "relay.pw", password + "\n");
    relay = std::make_unique<Sink>(
        env.dir() / "relay", std::vector<std::string>{"--tls-cert", env.dir() / "cert.pem", "--tls-key",
                                                      env.dir() / "key.pem", "--auth", "mailer:s3cret"});
    write_file(env.config_path(),
               read_file(env.config_path()) + "relays:\n  corp:\n    servers:\n" +
                   "      - { host: 127.0.0.1, port: " + std::to_string(relay->port()) +
                   ", tls: starttls, verify: false,\n" + "          auth: { user: mailer, password_file: " +
                   (env.dir() / "relay.pw") + " } }\n" + "routes:\n  - { match: [\"*\"], relay: corp }\n");
  }
};

}  // namespace

TEST_CASE("a relay with STARTTLS and AUTH gets the mail", "[daemon][relay]") {
  TlsAuthRelay w("s3cret");
  Env& env = w.env;
  Sink& relay = *w.relay;
  env.drop("m", envelope_message("alice@example.com", {"bob@example.net"}, "via relay"));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(relay.count() == 1);
  CHECK(read_file(env.dir() / "relay/auth-ok").find("PLAIN") != std::string::npos);
  CHECK(env.log().find("status=sent") != std::string::npos);
}

TEST_CASE("a wrong relay password is not retried in a storm and keeps the message", "[daemon][relay]") {
  TlsAuthRelay w("wrong");
  Env& env = w.env;
  Sink& relay = *w.relay;
  env.drop("m", envelope_message("alice@example.com", {"bob@example.net"}, "via relay"));
  int rc = env.run_once(std::chrono::seconds(20));
  INFO(env.log());
  REQUIRE(rc == 0);
  CHECK(relay.count() == 0);
  // A misconfigured relay must not bounce mail: the message is deferred (Postfix's soft bounce).
  CHECK(env.entries("queue/1").size() == 1);
  CHECK(env.entries("failed").empty());
  CHECK(env.log().find("authentication failed") != std::string::npos);
  CHECK(env.log().find("status=deferred") != std::string::npos);
}

TEST_CASE("round robin over two relays switches after max_messages_per_robin", "[daemon][relay]") {
  Env env("delivery:\n  max_sessions_per_destination: 1\n  idle_timeout: 1s\n", false);
  Sink a(env.dir() / "a"), b(env.dir() / "b");
  write_file(env.config_path(), read_file(env.config_path()) +
                                    "relays:\n  pool:\n    strategy: round_robin\n    servers:\n"
                                    "      - { host: 127.0.0.1, port: " +
                                    std::to_string(a.port()) +
                                    ", tls: none, max_messages_per_robin: 5 }\n"
                                    "      - { host: 127.0.0.1, port: " +
                                    std::to_string(b.port()) +
                                    ", tls: none, max_messages_per_robin: 5 }\n"
                                    "routes:\n  - { match: [\"*\"], relay: pool }\n");
  for (int i = 0; i < 20; ++i)
    env.drop("m" + std::to_string(i),
             envelope_message("a@example.com", {"b@example.net"}, std::to_string(i)));
  REQUIRE(env.run_once() == 0);
  INFO(env.log());
  CHECK(a.count() + b.count() == 20);
  CHECK(a.count() == 10);
  CHECK(b.count() == 10);
  CHECK(a.sessions() == 2);  // 5 messages per connection, then the other server
}
