// tests/smtp/tls_server_test.cpp — TlsServer (smtp/tls_server.h) against TlsClient in memory: the
// bytes are pumped between the two objects, no sockets. A self-signed certificate is made once
// with openssl(1) into a temporary directory. Covers the handshake, data both ways, close_notify,
// the context's file errors, and hostile clients (garbage, plaintext, early application data,
// over-long records, bytes after close_notify, a host that stops reading).
#include <catch2/catch.hpp>

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "smtp/server.h"
#include "smtp/tls.h"
#include "smtp/tls_server.h"
#include "tests/support/fixtures.h"

using spoold::smtp::TlsClient;
using spoold::smtp::TlsOptions;
using spoold::smtp::TlsServer;
using spoold::test::Process;
using spoold::test::read_file;
using spoold::test::TempDir;
using spoold::test::write_file;
using Progress = TlsServer::Progress;

namespace {

void run(const std::vector<std::string>& argv, const std::string& dir) {
  Process p(argv, dir + "/openssl.out", dir + "/openssl.err");
  int st = p.wait(std::chrono::seconds(60));
  if (st != 0) throw std::runtime_error("openssl failed: " + read_file(dir + "/openssl.err"));
}

// cert.pem/key.pem: self-signed RSA for mx.test and 127.0.0.1; other_key.pem: an unrelated key;
// encrypted_key.pem: cert.pem's key under a passphrase.
struct Certs {
  TempDir dir;
  std::string cert = dir / "cert.pem";
  std::string key = dir / "key.pem";
  std::string other_key = dir / "other_key.pem";
  std::string encrypted_key = dir / "encrypted_key.pem";
  std::string both = dir / "both.pem";  // key and certificate in one file

  Certs() {
    run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mx.test",
         "-addext", "subjectAltName=DNS:mx.test,IP:127.0.0.1", "-keyout", key, "-out", cert},
        dir.path());
    run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", other_key},
        dir.path());
    run({"openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", encrypted_key},
        dir.path());
    write_file(both, read_file(key) + read_file(cert));
  }
};

const Certs& certs() {
  static Certs c;
  return c;
}

std::shared_ptr<SSL_CTX> context() {
  static std::shared_ptr<SSL_CTX> ctx = [] {
    auto r = TlsServer::make_context(certs().cert, certs().key);
    if (!r) throw std::runtime_error(r.error().message);
    return r.value();
  }();
  return ctx;
}

std::unique_ptr<TlsServer> server() {
  auto r = TlsServer::create(context());
  REQUIRE(r);
  return std::move(r.value());
}

std::unique_ptr<TlsClient> client(bool verify = true) {
  auto r = TlsClient::create(TlsOptions{"mx.test", verify, certs().cert});
  REQUIRE(r);
  return std::move(r.value());
}

// A bare OpenSSL client on memory BIOs, for what TlsClient does not do (old protocol versions,
// renegotiation).
struct RawClient {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_client_method()), SSL_CTX_free};
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl{nullptr, SSL_free};
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());

  RawClient(int min_version, int max_version) {
    SSL_CTX_set_security_level(ctx.get(), 0);  // let it offer TLS 1.1
    SSL_CTX_set_min_proto_version(ctx.get(), min_version);
    SSL_CTX_set_max_proto_version(ctx.get(), max_version);
    ssl.reset(SSL_new(ctx.get()));
    SSL_set_bio(ssl.get(), rbio, wbio);
    SSL_set_connect_state(ssl.get());
  }
  Progress handshake() {
    int r = SSL_do_handshake(ssl.get());
    if (r == 1) return Progress::done;
    int e = SSL_get_error(ssl.get(), r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? Progress::want_more : Progress::failed;
  }
  std::string take_network() {
    std::string out;
    char buf[4096];
    for (int n; (n = BIO_read(wbio, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }
  void feed_network(std::string_view b) {
    if (!b.empty()) BIO_write(rbio, b.data(), static_cast<int>(b.size()));
  }
};

// Moves bytes both ways until both handshakes are done, one fails, or nothing moves.
// `chunk` > 0 feeds the server that many bytes at a time.
template <class Client>
void pump_handshake(Client& c, TlsServer& s, std::size_t chunk = 0) {
  for (int round = 0; round < 100; ++round) {
    auto cp = c.handshake();
    std::string to_server = c.take_network();
    std::string_view rest = to_server;
    Progress sp = s.handshake();
    while (!rest.empty()) {
      std::size_t n = chunk ? std::min(chunk, rest.size()) : rest.size();
      s.feed_network(rest.substr(0, n));
      rest.remove_prefix(n);
      sp = s.handshake();
    }
    std::string to_client = s.take_network();
    c.feed_network(to_client);
    if (cp == Progress::failed || sp == Progress::failed) return;
    if (cp == Progress::done && sp == Progress::done && to_server.empty() && to_client.empty()) return;
  }
}

// Decrypts on the server everything the client has queued.
std::string to_server(TlsClient& c, TlsServer& s, bool& closed) {
  s.feed_network(c.take_network());
  auto r = s.read(closed);
  REQUIRE(r);
  c.feed_network(s.take_network());
  return r.value();
}

std::string to_client(TlsServer& s, TlsClient& c, bool& closed) {
  c.feed_network(s.take_network());
  auto r = c.read(closed);
  REQUIRE(r);
  s.feed_network(c.take_network());
  return r.value();
}

// A fresh client's first flight (its ClientHello).
std::string client_hello() {
  auto c = client(false);
  CHECK(c->handshake() == Progress::want_more);
  return c->take_network();
}

Progress feed_all(TlsServer& s, std::string_view bytes) {
  s.feed_network(bytes);
  return s.handshake();
}

}  // namespace

TEST_CASE("tls server: handshake, data both ways, close_notify") {
  auto s = server();
  auto c = client();
  CHECK(s->description() == "no TLS");
  CHECK(s->received_text().empty());
  pump_handshake(*c, *s);
  REQUIRE(c->handshake_done());
  REQUIRE(s->handshake_done());
  CHECK(c->verified());
  CHECK(s->error().empty());
  CHECK(s->description() == "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384");
  CHECK(s->received_text() == "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)");

  bool closed = false;
  REQUIRE(c->write("EHLO client.test\r\n"));
  CHECK(to_server(*c, *s, closed) == "EHLO client.test\r\n");
  REQUIRE(s->write("250 mx.test\r\n"));
  CHECK(to_client(*s, *c, closed) == "250 mx.test\r\n");
  CHECK_FALSE(closed);

  // More than one record (16 KiB each), fed to the server in socket-sized pieces.
  std::string big(300 * 1024, 'x');
  for (std::size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>('a' + i % 26);
  REQUIRE(c->write(big));
  std::string wire = c->take_network();
  CHECK(wire.size() > big.size());
  std::string got;
  for (std::size_t i = 0; i < wire.size(); i += 65536) {
    s->feed_network(std::string_view(wire).substr(i, 65536));
    auto r = s->read(closed);
    REQUIRE(r);
    got += r.value();
  }
  CHECK(got == big);
  REQUIRE(s->write(big));
  CHECK(to_client(*s, *c, closed) == big);

  // The client's close_notify, then bytes after it: the server sees the end, the rest is dropped.
  c->shutdown();
  std::string tail = c->take_network();
  CHECK_FALSE(tail.empty());
  s->feed_network(tail + "garbage after close_notify");
  auto r = s->read(closed);
  REQUIRE(r);
  CHECK(r.value().empty());
  CHECK(closed);
  s->feed_network(std::string(1 << 20, 'z'));  // dropped unread, no error
  closed = false;
  r = s->read(closed);
  REQUIRE(r);
  CHECK(closed);
  CHECK(s->error().empty());

  // The server's own close_notify reaches the client.
  s->shutdown();
  c->feed_network(s->take_network());
  closed = false;
  auto cr = c->read(closed);
  REQUIRE(cr);
  CHECK(closed);
}

TEST_CASE("tls server: TLS 1.2, no renegotiation, nothing older") {
  SECTION("TLS 1.2 with the server's cipher order") {
    auto s = server();
    RawClient c(TLS1_2_VERSION, TLS1_2_VERSION);
    pump_handshake(c, *s);
    REQUIRE(s->handshake_done());
    CHECK(s->description() == "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384");
    CHECK(s->received_text() == "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)");
    CHECK(SSL_get_current_compression(c.ssl.get()) == nullptr);
    // The client asks to renegotiate: the server refuses (a no_renegotiation alert), the client
    // gives up; the server neither crashes nor renegotiates.
    REQUIRE(SSL_renegotiate(c.ssl.get()) == 1);
    CHECK(c.handshake() == Progress::want_more);
    s->feed_network(c.take_network());
    bool closed = false;
    auto r = s->read(closed);
    CHECK(r);
    std::string alert = s->take_network();
    CHECK_FALSE(alert.empty());
    c.feed_network(alert);
    char buf[64];
    CHECK(SSL_read(c.ssl.get(), buf, sizeof buf) <= 0);
    CHECK(SSL_renegotiate_pending(c.ssl.get()) == 1);  // never completed
  }
  SECTION("TLS 1.1 is refused") {
    auto s = server();
    RawClient c(TLS1_1_VERSION, TLS1_1_VERSION);
    pump_handshake(c, *s);
    CHECK_FALSE(s->handshake_done());
    CHECK(s->handshake() == Progress::failed);
    CHECK_THAT(s->error(), Catch::Contains("unsupported protocol"));
  }
}

TEST_CASE("tls server: the handshake fed one byte at a time; many connections on one context") {
  for (int i = 0; i < 3; ++i) {
    auto s = server();
    auto c = client();
    pump_handshake(*c, *s, 1);
    REQUIRE(s->handshake_done());
    REQUIRE(c->handshake_done());
    bool closed = false;
    REQUIRE(s->write("220 ready\r\n"));
    CHECK(to_client(*s, *c, closed) == "220 ready\r\n");
  }
}

TEST_CASE("tls server: Received: field text survives received_field()") {
  auto s = server();
  auto c = client();
  pump_handshake(*c, *s);
  REQUIRE(s->handshake_done());
  spoold::smtp::server::Envelope e;
  e.helo = "client.test";
  e.esmtp = true;
  e.tls = true;
  spoold::smtp::server::ReceivedInfo info{"mx.test", "", "192.0.2.1", s->received_text(), "Q1", "DATE"};
  CHECK(spoold::smtp::server::received_field(e, info) ==
        "Received: from client.test (unknown [192.0.2.1])\r\n"
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
        "\tby mx.test (spoold) with ESMTPS id Q1;\r\n"
        "\tDATE\r\n");
  info.tls = "TLS (unbalanced";  // anything else is cleaned as before
  CHECK(spoold::smtp::server::received_field(e, info).find("\t(using TLS ?unbalanced)\r\n") !=
        std::string::npos);
}

TEST_CASE("tls server: context errors name the file") {
  const Certs& k = certs();
  SECTION("key and certificate in one file") {
    CHECK(TlsServer::make_context(k.both, k.both));
  }
  SECTION("the key does not match the certificate") {
    auto r = TlsServer::make_context(k.cert, k.other_key);
    REQUIRE_FALSE(r);
    CHECK(r.error().message ==
          "TLS key file " + k.other_key + " does not match the certificate in " + k.cert);
  }
  SECTION("missing certificate file") {
    auto r = TlsServer::make_context(k.dir / "nope.pem", k.key);
    REQUIRE_FALSE(r);
    CHECK(r.error().message ==
          "TLS certificate file " + (k.dir / "nope.pem") + ": No such file or directory");
  }
  SECTION("missing key file") {
    auto r = TlsServer::make_context(k.cert, k.dir / "nokey.pem");
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "TLS key file " + (k.dir / "nokey.pem") + ": No such file or directory");
  }
  SECTION("no certificate in the certificate file") {
    auto r = TlsServer::make_context(k.key, k.key);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message,
               Catch::StartsWith("TLS certificate file " + k.key + ": no usable PEM certificate"));
  }
  SECTION("no key in the key file") {
    auto r = TlsServer::make_context(k.cert, k.cert);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message,
               Catch::StartsWith("TLS key file " + k.cert + ": no usable PEM private key"));
  }
  SECTION("an encrypted key is refused, never prompted for") {
    auto r = TlsServer::make_context(k.cert, k.encrypted_key);
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "TLS key file " + k.encrypted_key +
                                   ": the private key is encrypted (a passphrase is not supported)");
  }
  SECTION("no context") {
    CHECK_FALSE(TlsServer::create(nullptr));
  }
}

TEST_CASE("tls server: a plaintext client fails the handshake with a clear error") {
  auto s = server();
  CHECK(feed_all(*s, "EHLO x\r\n") == Progress::failed);
  CHECK_THAT(s->error(),
             Catch::StartsWith("TLS handshake failed: the client sent \"EHLO x\\r\\n\", not a TLS "
                               "ClientHello ("));
  CHECK_THAT(s->error(), Catch::Contains("wrong version number"));
  CHECK(s->handshake() == Progress::failed);  // stays failed, error kept
  CHECK_THAT(s->error(), Catch::StartsWith("TLS handshake failed: the client sent"));
  s->feed_network("MAIL FROM:<a@b>\r\n");  // dropped
  bool closed = false;
  CHECK_FALSE(s->read(closed));
  CHECK_FALSE(s->write("250 ok\r\n"));
}

TEST_CASE("tls server: garbage instead of a ClientHello fails the handshake") {
  SECTION("a handshake record with junk inside") {
    auto s = server();
    std::string junk = std::string("\x16\x03\x01\x00\x20", 5) + std::string(32, '\xa5');
    CHECK(feed_all(*s, junk) == Progress::failed);
    CHECK_THAT(s->error(), Catch::StartsWith("TLS handshake failed: error:"));
  }
  SECTION("a ClientHello with flipped bytes") {
    std::string hello = client_hello();
    for (std::size_t i = 9; i < hello.size(); i += 5) hello[i] = static_cast<char>(hello[i] ^ 0x5a);
    auto s = server();
    CHECK(feed_all(*s, hello) == Progress::failed);
    CHECK_FALSE(s->error().empty());
  }
  SECTION("binary noise") {
    auto s = server();
    std::string noise;
    for (int i = 0; i < 4096; ++i) noise += static_cast<char>((i * 7919 + 13) & 0xff);
    CHECK(feed_all(*s, noise) == Progress::failed);
    CHECK_THAT(s->error(), Catch::Contains("not a TLS ClientHello"));
  }
  SECTION("a truncated ClientHello waits, then the end of it is garbage") {
    std::string hello = client_hello();
    auto s = server();
    CHECK(feed_all(*s, hello.substr(0, hello.size() / 2)) == Progress::want_more);
    CHECK(feed_all(*s, std::string(hello.size(), '\0')) == Progress::failed);
  }
}

TEST_CASE("tls server: over-long records and messages fail at once, without buffering") {
  SECTION("a record header claiming 64 KiB") {
    auto s = server();
    CHECK(feed_all(*s, std::string("\x16\x03\x01\xff\xff", 5)) == Progress::failed);
    CHECK_THAT(s->error(), Catch::Contains("length too long"));
    CHECK_FALSE(s->take_network().empty());  // the record_overflow alert
  }
  SECTION("a ClientHello claiming 16 MiB") {
    auto s = server();
    CHECK(feed_all(*s, std::string("\x16\x03\x01\x00\x04\x01\xff\xff\xff", 9)) == Progress::failed);
    CHECK_THAT(s->error(), Catch::Contains("excessive message size"));
  }
}

TEST_CASE("tls server: application data before the handshake is done") {
  SECTION("as the first record") {
    auto s = server();
    CHECK(feed_all(*s, std::string("\x17\x03\x03\x00\x05hello", 10)) == Progress::failed);
    CHECK_FALSE(s->error().empty());
  }
  SECTION("after the ClientHello") {
    auto s = server();
    CHECK(feed_all(*s, client_hello()) == Progress::want_more);
    CHECK_FALSE(s->take_network().empty());  // ServerHello … Finished
    CHECK(feed_all(*s, std::string("\x17\x03\x03\x00\x10", 5) + std::string(16, 'A')) == Progress::failed);
    CHECK_FALSE(s->error().empty());
  }
  SECTION("read and write before the handshake are errors, not an implicit handshake") {
    auto s = server();
    bool closed = false;
    CHECK_FALSE(s->read(closed));
    CHECK_FALSE(s->write("220 x\r\n"));
    CHECK(s->take_network().empty());
  }
}

TEST_CASE("tls server: a host that stops reading cannot make it buffer without limit") {
  auto s = server();
  auto c = client();
  pump_handshake(*c, *s);
  REQUIRE(s->handshake_done());
  REQUIRE(c->write(std::string(TlsServer::max_pending_network + 1, 'q')));
  std::string wire = c->take_network();
  for (std::size_t i = 0; i < wire.size(); i += 65536)
    s->feed_network(std::string_view(wire).substr(i, 65536));
  bool closed = false;
  auto r = s->read(closed);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("262144 bytes"));
  CHECK_THAT(s->error(), Catch::Contains("could not process yet"));
}
