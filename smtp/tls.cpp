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

std::string openssl_errors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

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
  t->ssl_.reset(SSL_new(t->ctx_.get()));
  if (!t->ssl_) return make_error("SSL_new: " + openssl_errors());
  t->rbio_ = BIO_new(BIO_s_mem());
  t->wbio_ = BIO_new(BIO_s_mem());
  if (!t->rbio_ || !t->wbio_) {
    BIO_free(t->rbio_);
    BIO_free(t->wbio_);
    return make_error("BIO_new failed");
  }
  SSL_set_bio(t->ssl_.get(), t->rbio_, t->wbio_);
  SSL_set_connect_state(t->ssl_.get());
  SSL_set_verify(t->ssl_.get(), o.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!o.host.empty()) {
    if (!is_ip_literal(o.host)) SSL_set_tlsext_host_name(t->ssl_.get(), o.host.c_str());
    // Checked even when not enforced, so the log can say whether the peer would have verified.
    if (is_ip_literal(o.host))
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl_.get()), o.host.c_str());
    else
      SSL_set1_host(t->ssl_.get(), o.host.c_str());
  } else if (o.verify) {
    return make_error("TLS verification needs a host name");
  }
  return t;
}

TlsClient::~TlsClient() = default;

void TlsClient::feed_network(std::string_view ciphertext) {
  if (!ciphertext.empty()) BIO_write(rbio_, ciphertext.data(), static_cast<int>(ciphertext.size()));
}

std::string TlsClient::take_network() {
  std::string out;
  char buf[16384];
  for (int guard = 0; guard < 100000 && BIO_ctrl_pending(wbio_) > 0; ++guard) {
    int n = BIO_read(wbio_, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::string TlsClient::ssl_error(int ret) {
  int err = SSL_get_error(ssl_.get(), ret);
  if (err == SSL_ERROR_SSL && SSL_get_verify_result(ssl_.get()) != X509_V_OK)
    return fmt::format("certificate verification failed: {}",
                       X509_verify_cert_error_string(SSL_get_verify_result(ssl_.get())));
  if (err == SSL_ERROR_ZERO_RETURN) return "TLS connection closed";
  return openssl_errors();
}

TlsClient::Progress TlsClient::handshake() {
  if (done_) return Progress::done;
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    done_ = true;
    verified_ = SSL_get_verify_result(ssl_.get()) == X509_V_OK && SSL_get0_peer_certificate(ssl_.get());
    return Progress::done;
  }
  int err = SSL_get_error(ssl_.get(), r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Progress::want_more;
  error_ = ssl_error(r);
  return Progress::failed;
}

Result<void> TlsClient::write(std::string_view plaintext) {
  ERR_clear_error();
  while (!plaintext.empty()) {
    std::size_t written = 0;
    int r = SSL_write_ex(ssl_.get(), plaintext.data(), plaintext.size(), &written);
    if (r != 1) return make_error("TLS write failed: " + ssl_error(r));
    plaintext.remove_prefix(written);
  }
  return {};
}

Result<std::string> TlsClient::read(bool& closed) {
  std::string out;
  char buf[16384];
  ERR_clear_error();
  for (int guard = 0; guard < 100000; ++guard) {
    std::size_t n = 0;
    int r = SSL_read_ex(ssl_.get(), buf, sizeof buf, &n);
    if (r == 1) {
      out.append(buf, n);
      continue;
    }
    int err = SSL_get_error(ssl_.get(), r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      closed = true;
      break;
    }
    return make_error("TLS read failed: " + ssl_error(r));
  }
  return out;
}

void TlsClient::shutdown() {
  if (done_) SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

std::string TlsClient::description() const {
  if (!done_) return "no TLS";
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_.get());
  return fmt::format("{} {}, {}", SSL_get_version(ssl_.get()), c ? SSL_CIPHER_get_name(c) : "?",
                     verified_ ? "verified" : (verify_ ? "NOT verified" : "not verified (not required)"));
}

}  // namespace spoold::smtp
