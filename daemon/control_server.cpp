// daemon/control_server.cpp — see control_server.h. The listener and every client are uv::Pipes
// (common/uv_stream.h) held by the server's State; a client is dropped (and its pipe closed) when
// its answer is written or it hangs up, and all of them with the server. A reply that arrives
// after its client or the server went away is dropped.
#include "daemon/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "common/uv_stream.h"
#include "control/protocol.h"
#include "daemon/log.h"

namespace spoold::daemon {

namespace {
constexpr std::size_t kReadBuffer = 64 * 1024;
}

struct ControlServer::Client {
  uv::Pipe pipe;
  std::string in;
  bool answered = false;
  bool streaming = false;  // kept open after its response: see ControlStream
};

struct ControlServer::State : std::enable_shared_from_this<ControlServer::State> {
  uv_loop_t* loop = nullptr;
  RequestHandler handler;
  uv::Pipe server;
  std::string path;
  std::map<std::uint64_t, Client> clients;  // by id: a Reply finds its client, if still there
  std::uint64_t next_id = 1;

  void on_connection(int status);
  void on_read(std::uint64_t id, int status, std::string_view bytes);
  void send_and_close(std::uint64_t id, const control::Json& response);
  std::shared_ptr<ControlStream> start_stream(std::uint64_t id, const control::Json& first);
};

namespace {

class StreamImpl : public ControlStream {
 public:
  StreamImpl(std::weak_ptr<ControlServer::State> state, std::uint64_t id)
      : state_(std::move(state)), id_(id) {}
  bool open() const override { return client() != nullptr; }
  void send(const control::Json& line) override;
  std::uint64_t lost() const override { return lost_; }

 private:
  ControlServer::Client* client() const;
  std::weak_ptr<ControlServer::State> state_;
  std::uint64_t id_;
  std::uint64_t lost_ = 0;
  std::uint64_t unreported_ = 0;  // lost since the last "lost" line
};

}  // namespace

// Replies run later, from the handler: they reach the client through the server's State, by id,
// and only while both are still there.
void ControlServer::State::send_and_close(std::uint64_t id, const control::Json& response) {
  auto it = clients.find(id);
  if (it == clients.end()) return;
  int rc = it->second.pipe.write({response.dump() + "\n"},
                                 [this, id](int, const uv::Pieces&) { clients.erase(id); });
  if (rc != 0) clients.erase(it);
}

ControlServer::Client* StreamImpl::client() const {
  auto st = state_.lock();
  if (!st) return nullptr;
  auto it = st->clients.find(id_);
  return it == st->clients.end() ? nullptr : &it->second;
}

void StreamImpl::send(const control::Json& line) {
  ControlServer::Client* c = client();
  if (!c) return;
  if (c->pipe.queued_bytes() >= kMaxQueued) {
    ++lost_;
    ++unreported_;
    return;
  }
  std::string out;
  if (unreported_ > 0)
    out = control::Json().set("event", "lost").set("count", std::exchange(unreported_, 0)).dump() + "\n";
  out += line.dump() + "\n";
  auto st = state_.lock();
  if (c->pipe.write({std::move(out)}) != 0) st->clients.erase(id_);
}

// The response goes out and the client stays: it is read on (what it sends is dropped) only to
// see it hang up.
std::shared_ptr<ControlStream> ControlServer::State::start_stream(std::uint64_t id,
                                                                  const control::Json& first) {
  auto it = clients.find(id);
  if (it == clients.end()) return nullptr;
  Client& c = it->second;
  c.streaming = true;
  if (c.pipe.write({first.dump() + "\n"}) != 0) {
    clients.erase(it);
    return nullptr;
  }
  c.pipe.read_start(kReadBuffer, [this, id](int st, std::string_view) {
    if (st < 0) clients.erase(id);
  });
  return std::make_shared<StreamImpl>(weak_from_this(), id);
}

// The callback of the client's own pipe: erasing the client here closes that pipe, which
// uv::Pipe allows. Touch nothing of it after an erase.
void ControlServer::State::on_read(std::uint64_t id, int status, std::string_view bytes) {
  auto it = clients.find(id);
  if (it == clients.end()) return;
  Client& c = it->second;
  if (status < 0) {
    clients.erase(it);
    return;
  }
  if (c.answered) return;
  c.in.append(bytes);
  auto nl = c.in.find('\n');
  if (nl == std::string::npos) {
    if (c.in.size() > control::kMaxLine) {
      c.answered = true;
      send_and_close(id, control::error_response("request too long"));
    }
    return;
  }
  c.answered = true;
  c.pipe.read_stop();
  auto req = control::Json::parse(std::string_view(c.in).substr(0, nl));
  if (!req.ok() || !req->is_object()) {
    send_and_close(id,
                   control::error_response(req.ok() ? "request must be a JSON object" : req.error().message));
    return;
  }
  handler(*req,
          Reply(
              [weak = weak_from_this(), id](const control::Json& response) {
                if (auto st = weak.lock()) st->send_and_close(id, response);
              },
              [weak = weak_from_this(), id](const control::Json& first) -> std::shared_ptr<ControlStream> {
                auto st = weak.lock();
                return st ? st->start_stream(id, first) : nullptr;
              }));
}

void ControlServer::State::on_connection(int status) {
  if (status < 0) return;
  uv::Pipe pipe(loop);
  if (server.accept(pipe) != 0) return;  // the pipe closes here
  std::uint64_t id = next_id++;
  Client& c = clients.emplace(id, Client{std::move(pipe), {}, false}).first->second;
  c.pipe.read_start(kReadBuffer, [this, id](int st, std::string_view bytes) { on_read(id, st, bytes); });
}

namespace {

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
  state_->server = uv::Pipe(state_->loop);  // from here on close() closes it
  mode_t old = ::umask(0117);               // the socket file is created 0660
  int rc = state_->server.bind(path);
  ::umask(old);
  if (rc != 0) return make_error(fmt::format("{}: {}", path, uv_strerror(rc)));
  ::chmod(path.c_str(), 0660);
  rc = state_->server.listen(64, [st = state_.get()](int status) { st->on_connection(status); });
  if (rc != 0) return make_error(fmt::format("{}: {}", path, uv_strerror(rc)));
  state_->path = path;
  return {};
}

// A client that has not sent its request yet is closed too: one that connects and says nothing
// would otherwise keep the loop, and so a stop, waiting until it hangs up; so is a stream. One
// whose request is being handled still gets its answer.
void ControlServer::close() {
  if (!state_->server) return;
  state_->server.close();
  if (!state_->path.empty()) ::unlink(state_->path.c_str());
  std::erase_if(state_->clients, [](const auto& kv) { return !kv.second.answered || kv.second.streaming; });
}

}  // namespace spoold::daemon
