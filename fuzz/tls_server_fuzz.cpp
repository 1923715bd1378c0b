// fuzz/tls_server_fuzz.cpp — libFuzzer target for TlsServer (smtp/tls_server.h): what a hostile
// client sends on the SMTP listener's TLS connections. The first input byte picks a mode:
//   0: the rest is the client's bytes, fed in pieces whose size the second byte sets;
//   1: a real ClientHello (from TlsClient) with bytes flipped where the input says, then the rest;
//   2: a real handshake, then the client's records (plaintext from the input) with bytes flipped
//      where the input says, a close_notify and trailing bytes.
// Rule: no input may crash, read out of bounds, leak or grow memory without bound; a failure is
// final and always has an error(); read()/write() never work before the handshake is done; what
// the server decrypts is a prefix of what the client wrote (mode 2); nothing is decrypted after
// close_notify. The certificate is an EC P-256 key, self-signed, made in-process at start.
// clang-format off
// fuzz-sources: smtp/tls_channel.cpp smtp/tls_server.cpp smtp/tls.cpp
// clang-format on
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "smtp/tls.h"
#include "smtp/tls_server.h"

using spoold::smtp::TlsClient;
using spoold::smtp::TlsOptions;
using spoold::smtp::TlsServer;
using Progress = TlsServer::Progress;

namespace {

void require(bool ok) {
  if (!ok) __builtin_trap();
}

// Writes a fresh key and self-signed certificate to a temporary directory, loads them, removes
// the files.
std::shared_ptr<SSL_CTX> make_context() {
  char dir[] = "/tmp/tls_server_fuzz-XXXXXX";
  require(mkdtemp(dir) != nullptr);
  std::string cert_path = std::string(dir) + "/cert.pem", key_path = std::string(dir) + "/key.pem";
  EVP_PKEY* key = EVP_EC_gen("P-256");
  require(key != nullptr);
  X509* x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("mx.test"), -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  require(X509_sign(x, key, EVP_sha256()) > 0);
  std::FILE* f = std::fopen(key_path.c_str(), "w");
  require(f && PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  std::fclose(f);
  f = std::fopen(cert_path.c_str(), "w");
  require(f && PEM_write_X509(f, x) == 1);
  std::fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
  auto ctx = TlsServer::make_context(cert_path, key_path);
  std::remove(cert_path.c_str());
  std::remove(key_path.c_str());
  rmdir(dir);
  require(static_cast<bool>(ctx));
  return ctx.value();
}

const std::shared_ptr<SSL_CTX>& context() {
  static std::shared_ptr<SSL_CTX> ctx = make_context();
  return ctx;
}

std::unique_ptr<TlsServer> new_server() {
  auto s = TlsServer::create(context());
  require(static_cast<bool>(s));
  return std::move(s.value());
}

// Drives the server as the listener does: feed, then handshake or read, then send what it queued.
struct Driver {
  std::unique_ptr<TlsServer> s = new_server();
  bool failed = false;
  bool closed = false;
  std::string plain;  // decrypted so far

  // Returns what the server queued for the client.
  std::string feed(std::string_view bytes) {
    s->feed_network(bytes);
    if (!s->handshake_done()) {
      Progress p = s->handshake();
      if (failed) require(p == Progress::failed);
      if (p == Progress::failed) {
        require(!s->error().empty());
        require(!s->handshake_done());
        failed = true;
      }
      if (p != Progress::done) {
        bool c = false;
        require(!s->read(c));  // never an implicit handshake
        require(!s->write("x"));
      }
    }
    if (s->handshake_done() && !failed) {
      bool c = false;
      auto r = s->read(c);
      if (!r) {
        require(!s->error().empty());
        failed = true;
      } else {
        if (closed) require(r.value().empty() && c);
        plain += r.value();
        closed = closed || c;
      }
    }
    std::string out = s->take_network();
    require(out.size() <= 64 * 1024);  // never more than a flight, a few alerts or tickets
    return out;
  }
};

std::string client_hello() {
  auto c = TlsClient::create(TlsOptions{"mx.test", false, ""});
  require(static_cast<bool>(c));
  require(c.value()->handshake() == Progress::want_more);
  return c.value()->take_network();
}

// Flips bytes of `wire`: each (position, mask) pair of `edits` XORs one byte.
void flip(std::string& wire, std::string_view edits) {
  if (wire.empty()) return;
  for (std::size_t i = 0; i + 2 < edits.size(); i += 3) {
    std::size_t pos =
        (static_cast<unsigned char>(edits[i]) << 8 | static_cast<unsigned char>(edits[i + 1])) % wire.size();
    wire[pos] = static_cast<char>(wire[pos] ^ (edits[i + 2] ? edits[i + 2] : 1));
  }
}

void raw(std::string_view in) {
  if (in.empty()) return;
  std::size_t chunk = static_cast<unsigned char>(in[0]) + 1;
  in.remove_prefix(1);
  Driver d;
  while (!in.empty()) {
    std::size_t n = std::min(chunk, in.size());
    d.feed(in.substr(0, n));
    in.remove_prefix(n);
  }
}

void mutated_hello(std::string_view in) {
  // Input: edit count (one byte), edits (3 bytes each), then bytes sent after the ClientHello.
  std::size_t edits = in.empty() ? 0 : static_cast<unsigned char>(in[0]) % 16;
  in.remove_prefix(std::min<std::size_t>(1, in.size()));
  std::string_view e = in.substr(0, std::min(in.size(), edits * 3));
  in.remove_prefix(e.size());
  std::string hello = client_hello();
  flip(hello, e);
  Driver d;
  d.feed(hello);
  d.feed(in);
}

void session(std::string_view in) {
  // Input: edit count, edits, then the plaintext the client writes (split in two writes), and
  // the bytes it sends after its close_notify.
  std::size_t edits = in.empty() ? 0 : static_cast<unsigned char>(in[0]) % 8;
  in.remove_prefix(std::min<std::size_t>(1, in.size()));
  std::string_view e = in.substr(0, std::min(in.size(), edits * 3));
  in.remove_prefix(e.size());
  auto cr = TlsClient::create(TlsOptions{"mx.test", false, ""});
  require(static_cast<bool>(cr));
  TlsClient& c = *cr.value();
  Driver d;
  for (int round = 0; round < 20 && !(c.handshake_done() && d.s->handshake_done()); ++round) {
    require(c.handshake() != Progress::failed);
    c.feed_network(d.feed(c.take_network()));
  }
  require(c.handshake() == Progress::done && d.s->handshake_done());
  std::string_view text = in.substr(0, in.size() / 2), after = in.substr(in.size() / 2);
  require(static_cast<bool>(c.write(text.substr(0, text.size() / 2))));
  require(static_cast<bool>(c.write(text.substr(text.size() / 2))));
  c.shutdown();
  std::string wire = c.take_network();
  flip(wire, e);
  wire += after;
  for (std::size_t i = 0; i < wire.size(); i += 1000) d.feed(std::string_view(wire).substr(i, 1000));
  require(std::string_view(text).substr(0, d.plain.size()) == d.plain);
  if (e.empty()) require(d.plain == text && d.closed && !d.failed);
  d.s->shutdown();
  (void)d.s->take_network();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.empty()) return 0;
  unsigned mode = static_cast<unsigned char>(in[0]) % 3;
  in.remove_prefix(1);
  if (mode == 0) raw(in);
  if (mode == 1) mutated_hello(in);
  if (mode == 2) session(in);
  return 0;
}
