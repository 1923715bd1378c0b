// smtp/tls_channel.cpp — see tls_channel.h.
#include "smtp/tls_channel.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>

namespace spoold::smtp::detail {

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

Result<void> TlsChannel::init(SSL_CTX* ctx, bool server, std::size_t max_pending) {
  max_pending_ = max_pending;
  ssl_.reset(SSL_new(ctx));
  if (!ssl_) return make_error("SSL_new: " + openssl_errors());
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (!rbio_ || !wbio_) {
    BIO_free(rbio_);
    BIO_free(wbio_);
    rbio_ = wbio_ = nullptr;
    return make_error("BIO_new failed");
  }
  // An empty BIO_s_mem() reports "retry" (its default eof_return is -1), not EOF: WANT_READ.
  SSL_set_bio(ssl_.get(), rbio_, wbio_);
  if (server)
    SSL_set_accept_state(ssl_.get());
  else
    SSL_set_connect_state(ssl_.get());
  return {};
}

void TlsChannel::fail(std::string message) {
  error_ = std::move(message);
  failed_ = true;
}

void TlsChannel::feed_network(std::string_view ciphertext) {
  if (ciphertext.empty() || failed_ || peer_closed_) return;  // after the end: dropped unread
  fed_ += ciphertext.size();
  if (max_pending_ != 0 && BIO_ctrl_pending(rbio_) + ciphertext.size() > max_pending_) {
    fail(fmt::format("the peer sent more than {} bytes the TLS layer could not process yet", max_pending_));
    return;
  }
  while (!ciphertext.empty()) {  // BIO_write takes an int
    int chunk = static_cast<int>(std::min<std::size_t>(ciphertext.size(), 1 << 30));
    int n = BIO_write(rbio_, ciphertext.data(), chunk);
    if (n <= 0) {
      fail("BIO_write failed: " + openssl_errors());
      return;
    }
    ciphertext.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string TlsChannel::take_network() {
  std::string out;
  std::size_t pending = BIO_ctrl_pending(wbio_);
  if (pending == 0) return out;
  out.resize(pending);
  std::size_t got = 0;
  while (got < out.size()) {
    int n =
        BIO_read(wbio_, out.data() + got, static_cast<int>(std::min<std::size_t>(out.size() - got, 1 << 30)));
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

std::string TlsChannel::ssl_error(int ret) {
  int err = SSL_get_error(ssl_.get(), ret);
  if (err == SSL_ERROR_SSL && SSL_get_verify_result(ssl_.get()) != X509_V_OK)
    return fmt::format("certificate verification failed: {}",
                       X509_verify_cert_error_string(SSL_get_verify_result(ssl_.get())));
  if (err == SSL_ERROR_ZERO_RETURN) return "TLS connection closed";
  if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return "TLS connection ended unexpectedly";
  return openssl_errors();
}

TlsProgress TlsChannel::handshake() {
  if (failed_) return TlsProgress::failed;
  if (done_) return TlsProgress::done;
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    done_ = true;
    return TlsProgress::done;
  }
  int err = SSL_get_error(ssl_.get(), r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return TlsProgress::want_more;
  fail(ssl_error(r));
  ERR_clear_error();
  return TlsProgress::failed;
}

Result<void> TlsChannel::write(std::string_view plaintext) {
  if (failed_) return make_error("TLS write failed: " + error_);
  if (!done_) return make_error("TLS write before the handshake completed");
  ERR_clear_error();
  while (!plaintext.empty()) {
    std::size_t written = 0;
    int r = SSL_write_ex(ssl_.get(), plaintext.data(), plaintext.size(), &written);
    if (r != 1) {
      std::string e = ssl_error(r);
      ERR_clear_error();
      return make_error("TLS write failed: " + e);
    }
    plaintext.remove_prefix(written);
  }
  return {};
}

Result<std::string> TlsChannel::read(bool& closed) {
  if (peer_closed_) {
    closed = true;
    return std::string();
  }
  if (failed_) return make_error("TLS read failed: " + error_);
  if (!done_) return make_error("TLS read before the handshake completed");
  std::string out;
  char buf[16384];
  ERR_clear_error();
  // Each pass takes one record (at most 16 KiB) out of the read BIO, so this ends when the BIO
  // holds no whole record; the guard is only a backstop.
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
      peer_closed_ = true;
      (void)BIO_reset(rbio_);  // what came after close_notify is never read
      break;
    }
    fail(ssl_error(r));
    ERR_clear_error();
    return make_error("TLS read failed: " + error_);
  }
  return out;
}

void TlsChannel::shutdown() {
  if (done_ && !failed_) SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

}  // namespace spoold::smtp::detail
