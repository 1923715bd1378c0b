// smtp/tls_server.cpp — see tls_server.h.
#include "smtp/tls_server.h"

#include <unistd.h>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace spoold::smtp {

namespace {

using detail::openssl_errors;

constexpr std::size_t first_bytes_kept = 16;

// Refuses every passphrase request (an encrypted key) instead of OpenSSL's terminal prompt.
int no_password(char*, int, int, void* asked) {
  if (asked) *static_cast<bool*>(asked) = true;
  return -1;
}

// "" when `path` can be opened for reading, else why not.
std::string unreadable(const std::string& path) {
  if (path.empty()) return "no file name given";
  if (::access(path.c_str(), R_OK) != 0) return std::strerror(errno);
  return "";
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

// What the client sent, printable (\xNN for other bytes), for the error of a non-TLS client.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
      out += static_cast<char>(c);
    else if (c == '\r')
      out += "\\r";
    else if (c == '\n')
      out += "\\n";
    else
      out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

}  // namespace

Result<std::shared_ptr<SSL_CTX>> TlsServer::make_context(const std::string& cert_file,
                                                         const std::string& key_file) {
  ERR_clear_error();
  if (std::string why = unreadable(cert_file); !why.empty())
    return make_error(fmt::format("TLS certificate file {}: {}", cert_file, why));
  if (std::string why = unreadable(key_file); !why.empty())
    return make_error(fmt::format("TLS key file {}: {}", key_file, why));

  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) return make_error("SSL_CTX_new: " + openssl_errors());
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1)
    return make_error("cannot set the TLS minimum version: " + openssl_errors());
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_dh_auto(c, 1);  // DHE suites with a group matching the key (ECDHE needs nothing)
  static const unsigned char sid_ctx[] = "spoold";
  SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1);
  SSL_CTX_set_default_passwd_cb(c, no_password);
  SSL_CTX_set_default_passwd_cb_userdata(c, nullptr);

  if (SSL_CTX_use_certificate_chain_file(c, cert_file.c_str()) != 1)
    return make_error(
        fmt::format("TLS certificate file {}: no usable PEM certificate ({})", cert_file, openssl_errors()));
  X509* cert = SSL_CTX_get0_certificate(c);
  if (!cert) return make_error(fmt::format("TLS certificate file {}: no certificate", cert_file));

  std::unique_ptr<BIO, BioFree> kb(BIO_new_file(key_file.c_str(), "r"));
  if (!kb) return make_error(fmt::format("TLS key file {}: cannot open ({})", key_file, openssl_errors()));
  bool asked = false;
  std::unique_ptr<EVP_PKEY, PkeyFree> key(PEM_read_bio_PrivateKey(kb.get(), nullptr, no_password, &asked));
  if (!key) {
    std::string detail = openssl_errors();
    if (asked)
      return make_error(fmt::format(
          "TLS key file {}: the private key is encrypted (a passphrase is not supported)", key_file));
    return make_error(fmt::format("TLS key file {}: no usable PEM private key ({})", key_file, detail));
  }
  if (X509_check_private_key(cert, key.get()) != 1) {
    ERR_clear_error();
    return make_error(
        fmt::format("TLS key file {} does not match the certificate in {}", key_file, cert_file));
  }
  if (SSL_CTX_use_PrivateKey(c, key.get()) != 1 || SSL_CTX_check_private_key(c) != 1)
    return make_error(fmt::format("TLS key file {}: {}", key_file, openssl_errors()));
  ERR_clear_error();
  return ctx;
}

Result<std::unique_ptr<TlsServer>> TlsServer::create(std::shared_ptr<SSL_CTX> ctx) {
  if (!ctx) return make_error("TLS server without a context");
  ERR_clear_error();
  std::unique_ptr<TlsServer> t(new TlsServer());  // private constructor: make_unique cannot reach it
  t->ctx_ = std::move(ctx);
  if (auto r = t->ch_.init(t->ctx_.get(), /*server=*/true, max_pending_network); !r)
    return make_error(r.error().message);
  return t;
}

TlsServer::~TlsServer() = default;

void TlsServer::feed_network(std::string_view ciphertext) {
  if (first_bytes_.size() < first_bytes_kept && !ch_.failed())
    first_bytes_.append(ciphertext.substr(0, first_bytes_kept - first_bytes_.size()));
  ch_.feed_network(ciphertext);
}

std::string TlsServer::take_network() {
  return ch_.take_network();
}

TlsServer::Progress TlsServer::handshake() {
  bool was_failed = ch_.failed();
  Progress p = ch_.handshake();
  if (p != Progress::failed || was_failed) return p;
  // A TLS connection starts with a handshake record (content type 22); a client that sends
  // anything else, typically plaintext SMTP on port 465, is named as such.
  if (!first_bytes_.empty() && first_bytes_[0] != '\x16')
    ch_.fail(fmt::format("TLS handshake failed: the client sent \"{}\", not a TLS ClientHello ({})",
                         printable(first_bytes_), ch_.error()));
  else
    ch_.fail("TLS handshake failed: " + ch_.error());
  return p;
}

Result<void> TlsServer::write(std::string_view plaintext) {
  return ch_.write(plaintext);
}

Result<std::string> TlsServer::read(bool& closed) {
  return ch_.read(closed);
}

void TlsServer::shutdown() {
  ch_.shutdown();
}

bool TlsServer::resumed() const {
  return ch_.ssl() != nullptr && SSL_session_reused(ch_.ssl()) == 1;
}

std::string TlsServer::description() const {
  if (!ch_.handshake_done()) return "no TLS";
  const SSL_CIPHER* c = SSL_get_current_cipher(ch_.ssl());
  return fmt::format("{} with cipher {}", SSL_get_version(ch_.ssl()), c ? SSL_CIPHER_get_name(c) : "?");
}

std::string TlsServer::received_text() const {
  if (!ch_.handshake_done()) return "";
  const SSL_CIPHER* c = SSL_get_current_cipher(ch_.ssl());
  int alg_bits = 0;
  int use_bits = c ? SSL_CIPHER_get_bits(c, &alg_bits) : 0;
  return fmt::format("{} ({}/{} bits)", description(), use_bits, alg_bits);
}

}  // namespace spoold::smtp
