// smtp/tls.h — a TLS client over OpenSSL 3 memory BIOs: the socket stays with libuv, this object
// only turns ciphertext from the network into plaintext and back. No blocking sockets, no fds.
// Rule: every OpenSSL object is owned by a smart pointer with its free function; verification is
// SSL_VERIFY_PEER + SSL_set1_host when asked, and otherwise still evaluated (for logging) but not
// enforced.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "smtp/tls_channel.h"

namespace spoold::smtp {

struct TlsOptions {
  std::string host;     // SNI (when it is a name, not an IP literal) and the name to verify
  bool verify = false;  // enforce: the handshake fails unless the chain and the name verify
  std::string ca_file;  // "" = system default store
};

class TlsClient {
 public:
  using Progress = TlsProgress;  // done, want_more, failed

  static Result<std::unique_ptr<TlsClient>> create(const TlsOptions& options);
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  void feed_network(std::string_view ciphertext);  // bytes read from the socket
  std::string take_network();                      // bytes to write to the socket
  Progress handshake();                            // call after start and after each feed_network
  Result<void> write(std::string_view plaintext);
  // Decrypts what is available. `closed` becomes true on close_notify.
  Result<std::string> read(bool& closed);
  void shutdown();  // queue close_notify (take_network() afterwards)

  bool handshake_done() const { return ch_.handshake_done(); }
  bool verified() const { return verified_; }
  const std::string& error() const { return ch_.error(); }
  std::string description() const;  // "TLSv1.3 TLS_AES_256_GCM_SHA384, verified" etc.

 private:
  TlsClient() = default;

  std::shared_ptr<SSL_CTX> ctx_;  // shared by every client with the same CA source (see tls.cpp)
  detail::TlsChannel ch_;         // the SSL object and its memory BIOs (tls_channel.h)
  bool verified_ = false;
  bool verify_ = false;
};

}  // namespace spoold::smtp
