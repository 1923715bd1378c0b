// smtp/tls_channel.h — what TlsClient (tls.h) and TlsServer (tls_server.h) share: one SSL object
// over a pair of OpenSSL memory BIOs. The socket stays with libuv; this only moves bytes between
// the caller's strings and OpenSSL. Not a public interface: use TlsClient or TlsServer.
// Rules:
// - After handshake(), read(), write() and shutdown() OpenSSL may have queued bytes (flights,
//   alerts — a failed handshake queues one —, session tickets, KeyUpdate answers): the caller
//   calls take_network() after each of them and sends what it gets.
// - Memory: OpenSSL keeps one record (at most 16 KiB plaintext + 2 KiB expansion) and one
//   handshake message (limited per message type, ClientHello ~128 KiB, certificate lists 100 KiB)
//   in its own buffers, and rejects a record header whose length is over the maximum as soon as
//   the 5-byte header is in (record_overflow), without waiting for the body. What it does not
//   bound is the read BIO: BIO_s_mem grows with every BIO_write (its buffer keeps its high-water
//   mark). So the channel bounds it: with max_pending != 0, a feed_network() that would leave more
//   than max_pending unconsumed ciphertext fails the connection instead. After a failure or the
//   peer's close_notify the peer's further bytes are dropped unread.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace spoold::smtp {

enum class TlsProgress { done, want_more, failed };

namespace detail {

// This thread's OpenSSL error queue as one line ("unknown TLS error" when empty); drains it.
std::string openssl_errors();

class TlsChannel {
 public:
  // Makes the SSL object on `ctx` (accept state when `server`, connect state otherwise).
  Result<void> init(SSL_CTX* ctx, bool server, std::size_t max_pending);

  SSL* ssl() const { return ssl_.get(); }
  void feed_network(std::string_view ciphertext);
  std::string take_network();
  TlsProgress handshake();
  Result<void> write(std::string_view plaintext);
  Result<std::string> read(bool& closed);
  void shutdown();

  bool handshake_done() const { return done_; }
  bool failed() const { return failed_; }
  bool peer_closed() const { return peer_closed_; }
  std::size_t fed() const { return fed_; }  // ciphertext bytes given to feed_network() so far
  const std::string& error() const { return error_; }
  // Marks the channel failed with `message` as error() (replacing an earlier one).
  void fail(std::string message);

 private:
  std::string ssl_error(int ret);

  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };
  std::unique_ptr<SSL, SslFree> ssl_;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  std::size_t max_pending_ = 0;
  std::size_t fed_ = 0;
  bool done_ = false;
  bool failed_ = false;
  bool peer_closed_ = false;
  std::string error_;
};

}  // namespace detail
}  // namespace spoold::smtp
