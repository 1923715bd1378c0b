// daemon/control_server.cpp — see control_server.h. Handle memory follows uv_close: a Client is
// freed in its close callback; a reply that arrives after the client went away is dropped.
#include "daemon/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "control/protocol.h"
#include "daemon/log.h"

namespace spoold::daemon {

struct ControlServer::State : std::enable_shared_from_this<ControlServer::State> {
  uv_loop_t* loop = nullptr;
  RequestHandler handler;
  std::unique_ptr<uv_pipe_t> server;  // released to libuv on close
  std::string path;
  bool listening = false;
};

struct ControlServer::Client {
  uv_pipe_t pipe;
  std::shared_ptr<State> server;
  std::string in;
  bool answered = false;
  bool closing = false;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

namespace {

using Client = ControlServer::Client;

void close_client(Client* c) {
  if (c->closing) return;
  c->closing = true;
  *c->alive = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe),
           [](uv_handle_t* h) { std::unique_ptr<Client> owned(static_cast<Client*>(h->data)); });
}

struct WriteReq {
  uv_write_t req;
  std::string data;
  Client* client;
};

void send_and_close(Client* c, const control::Json& response) {
  if (c->closing) return;
  auto w = std::make_unique<WriteReq>();
  w->data = response.dump() + "\n";
  w->client = c;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  w->req.data = w.get();
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->pipe), &buf, 1, [](uv_write_t* req, int) {
    std::unique_ptr<WriteReq> owned(static_cast<WriteReq*>(req->data));
    close_client(owned->client);
  });
  if (rc == 0) {
    (void)w.release();  // the loop owns the write request until its callback
  } else {
    close_client(c);
  }
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Client*>(s->data);
  std::unique_ptr<char[]> owned(buf->base);
  if (n < 0) {
    close_client(c);
    return;
  }
  if (c->answered) return;
  c->in.append(buf->base, static_cast<size_t>(n));
  auto nl = c->in.find('\n');
  if (nl == std::string::npos) {
    if (c->in.size() > control::kMaxLine) {
      c->answered = true;
      send_and_close(c, control::error_response("request too long"));
    }
    return;
  }
  c->answered = true;
  uv_read_stop(s);
  auto req = control::Json::parse(std::string_view(c->in).substr(0, nl));
  if (!req.ok() || !req->is_object()) {
    send_and_close(c,
                   control::error_response(req.ok() ? "request must be a JSON object" : req.error().message));
    return;
  }
  std::weak_ptr<bool> alive = c->alive;
  c->server->handler(*req, [c, alive](const control::Json& response) {
    if (alive.expired() || !*alive.lock()) return;  // the client hung up meanwhile
    send_and_close(c, response);
  });
}

void on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* st = static_cast<ControlServer::State*>(server->data);
  auto c = std::make_unique<Client>();
  uv_pipe_init(st->loop, &c->pipe, 0);
  c->pipe.data = c.get();
  c->server = st->shared_from_this();
  Client* raw = c.release();  // owned by libuv until close_client's callback
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&raw->pipe)) != 0) {
    close_client(raw);
    return;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&raw->pipe),
      [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
        buf->base = std::make_unique<char[]>(suggested).release();
        buf->len = suggested;
      },
      on_read);
}

bool socket_alive(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

ControlServer::ControlServer(uv_loop_t* loop, RequestHandler handler) : state_(std::make_shared<State>()) {
  state_->loop = loop;
  state_->handler = std::move(handler);
}

ControlServer::~ControlServer() {
  close();
}

Result<void> ControlServer::listen(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return make_error("control_socket path too long: " + path);
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) ::mkdir(path.substr(0, slash).c_str(), 0755);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return make_error(fmt::format("{} exists and is not a socket", path));
    if (socket_alive(path)) return make_error(fmt::format("{}: another spoold is already listening", path));
    ::unlink(path.c_str());
  }
  state_->server = std::make_unique<uv_pipe_t>();
  uv_pipe_init(state_->loop, state_->server.get(), 0);
  state_->server->data = state_.get();
  state_->listening = true;    // from here on close() must uv_close the handle
  mode_t old = ::umask(0117);  // the socket file is created 0660
  int rc = uv_pipe_bind(state_->server.get(), path.c_str());
  ::umask(old);
  if (rc != 0) return make_error(fmt::format("{}: {}", path, uv_strerror(rc)));
  ::chmod(path.c_str(), 0660);
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(state_->server.get()), 64, on_connection);
  if (rc != 0) return make_error(fmt::format("{}: {}", path, uv_strerror(rc)));
  state_->path = path;
  return {};
}

void ControlServer::close() {
  if (!state_->listening) return;
  state_->listening = false;
  uv_close(reinterpret_cast<uv_handle_t*>(state_->server.release()),
           [](uv_handle_t* h) { std::unique_ptr<uv_pipe_t> owned(reinterpret_cast<uv_pipe_t*>(h)); });
  if (!state_->path.empty()) ::unlink(state_->path.c_str());
}

}  // namespace spoold::daemon
