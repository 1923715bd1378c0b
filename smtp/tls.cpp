// smtp/tls.cpp — see tls.h.
#include "smtp/tls.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <map>
#include <mutex>

namespace spoold::smtp {

namespace {

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

using detail::openssl_errors;

struct CachedContext {
  std::shared_ptr<SSL_CTX> ctx;
  bool loaded = false;  // the CA certificates could be loaded
  std::string error;
};

// Building an SSL_CTX with the system CA bundle costs tens of milliseconds of CPU on the loop
// thread, so one context per CA source is shared (SSL_CTX is reference counted and safe to share).
// The key includes the file's mtime and size, so a replaced ca_file is picked up after a reload.
CachedContext shared_context(const std::string& ca_file) {
  static std::mutex mu;
  static std::map<std::string, CachedContext> cache;
  std::string key = ca_file;
  struct stat st {};
  if (!ca_file.empty() && ::stat(ca_file.c_str(), &st) == 0)
    key += fmt::format("|{}|{}", static_cast<long long>(st.st_mtime), static_cast<long long>(st.st_size));
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  CachedContext c;
  c.ctx.reset(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!c.ctx) {
    c.error = "SSL_CTX_new: " + openssl_errors();
    return c;  // not cached: may work next time
  }
  SSL_CTX_set_min_proto_version(c.ctx.get(), TLS1_2_VERSION);
  int r = ca_file.empty() ? SSL_CTX_set_default_verify_paths(c.ctx.get())
                          : SSL_CTX_load_verify_locations(c.ctx.get(), ca_file.c_str(), nullptr);
  c.loaded = r == 1;
  if (!c.loaded) c.error = "cannot load CA certificates: " + openssl_errors();
  ERR_clear_error();
  cache[key] = c;
  return c;
}

}  // namespace

Result<std::unique_ptr<TlsClient>> TlsClient::create(const TlsOptions& o) {
  ERR_clear_error();
  std::unique_ptr<TlsClient> t(new TlsClient());  // private constructor: make_unique cannot reach it
  t->verify_ = o.verify;
  CachedContext c = shared_context(o.ca_file);
  if (!c.ctx) return make_error(c.error);
  if (!c.loaded && o.verify) return make_error(c.error);
  t->ctx_ = c.ctx;
  // The client reads what its own server sent: no bound on unconsumed ciphertext (0).
  if (auto r = t->ch_.init(t->ctx_.get(), /*server=*/false, 0); !r) return make_error(r.error().message);
  SSL_set_verify(t->ch_.ssl(), o.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!o.host.empty()) {
    if (!is_ip_literal(o.host)) SSL_set_tlsext_host_name(t->ch_.ssl(), o.host.c_str());
    // Checked even when not enforced, so the log can say whether the peer would have verified.
    if (is_ip_literal(o.host))
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ch_.ssl()), o.host.c_str());
    else
      SSL_set1_host(t->ch_.ssl(), o.host.c_str());
  } else if (o.verify) {
    return make_error("TLS verification needs a host name");
  }
  return t;
}

TlsClient::~TlsClient() = default;

void TlsClient::feed_network(std::string_view ciphertext) {
  ch_.feed_network(ciphertext);
}

std::string TlsClient::take_network() {
  return ch_.take_network();
}

TlsClient::Progress TlsClient::handshake() {
  bool was_done = ch_.handshake_done();
  Progress p = ch_.handshake();
  if (p == Progress::done && !was_done)
    verified_ = SSL_get_verify_result(ch_.ssl()) == X509_V_OK && SSL_get0_peer_certificate(ch_.ssl());
  return p;
}

Result<void> TlsClient::write(std::string_view plaintext) {
  return ch_.write(plaintext);
}

Result<std::string> TlsClient::read(bool& closed) {
  return ch_.read(closed);
}

void TlsClient::shutdown() {
  ch_.shutdown();
}

std::string TlsClient::description() const {
  if (!ch_.handshake_done()) return "no TLS";
  const SSL_CIPHER* c = SSL_get_current_cipher(ch_.ssl());
  return fmt::format("{} {}, {}", SSL_get_version(ch_.ssl()), c ? SSL_CIPHER_get_name(c) : "?",
                     verified_ ? "verified" : (verify_ ? "NOT verified" : "not verified (not required)"));
}

}  // namespace spoold::smtp
