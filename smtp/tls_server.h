// smtp/tls_server.h — the server side of the memory-BIO TLS layer (tls.h is the client), for the
// SMTP listener: STARTTLS (ServerEngine's StartTls event, then tls_started()) and implicit TLS
// (port 465, handshake before start()). The socket stays with libuv; this object only turns the
// client's ciphertext into plaintext and back.
// Rules:
// - One context per listener (make_context: certificate chain + key, PEM), shared by every
//   connection; TLS 1.2 minimum, no compression, no renegotiation, the server's cipher order,
//   session tickets on. An encrypted key is refused (no password prompt on the terminal).
// - The client is hostile: whatever it sends ends in Progress::failed or a read() error with a
//   clear error(), never a crash. After each handshake(), read(), write() and shutdown() the host
//   sends take_network() (a failed handshake queues an alert, a read may queue answers).
// - Bounded memory: OpenSSL bounds a record (18 KiB, an over-long record header fails at once) and
//   a handshake message; the read BIO is bounded here: more than max_pending_network bytes fed and
//   not yet consumed fails the connection (the host calls handshake() or read() after every
//   feed_network(), so only a host that stops reading could reach it). Bytes after the client's
//   close_notify, or after a failure, are dropped unread.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "smtp/tls_channel.h"

namespace spoold::smtp {

class TlsServer {
 public:
  using Progress = TlsProgress;  // done, want_more, failed

  // Unconsumed ciphertext a connection may hold (see the rules above): 256 KiB.
  static constexpr std::size_t max_pending_network = 256 * 1024;

  // The listener's context: cert_file holds the certificate, optionally followed by its chain
  // (PEM); key_file its private key (PEM, unencrypted; may be the same file). Errors name the
  // file: missing or unreadable, no certificate, no key, or a key that does not match.
  static Result<std::shared_ptr<SSL_CTX>> make_context(const std::string& cert_file,
                                                       const std::string& key_file);

  // One connection on a context from make_context().
  static Result<std::unique_ptr<TlsServer>> create(std::shared_ptr<SSL_CTX> ctx);
  ~TlsServer();
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  void feed_network(std::string_view ciphertext);  // bytes read from the socket
  std::string take_network();                      // bytes to write to the socket
  Progress handshake();                            // call after each feed_network until done
  Result<void> write(std::string_view plaintext);  // only once the handshake is done
  // Decrypts what is available (only once the handshake is done). `closed` becomes true on the
  // client's close_notify; what follows it is dropped.
  Result<std::string> read(bool& closed);
  void shutdown();  // queue close_notify (take_network() afterwards)

  bool handshake_done() const { return ch_.handshake_done(); }
  // The handshake resumed an earlier session (a ticket), which costs no key exchange signature.
  bool resumed() const;
  const std::string& error() const { return ch_.error(); }
  // "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384"; "no TLS" before the handshake is done.
  std::string description() const;
  // For the Received: field (ReceivedInfo::tls), Postfix's text inside "(using …)":
  // "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"; "" before the handshake.
  std::string received_text() const;

 private:
  TlsServer() = default;

  std::shared_ptr<SSL_CTX> ctx_;
  detail::TlsChannel ch_;
  std::string first_bytes_;  // the client's first bytes, to name a plaintext client in error()
};

}  // namespace spoold::smtp
