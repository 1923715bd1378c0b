// daemon/connection.cpp — see connection.h.
#include "daemon/connection.h"

#include "daemon/log.h"

namespace spoold::daemon {

using Conn = DeliveryEngine::Conn;

const char* Conn::to_string(St s) {
  switch (s) {
    case St::connecting:
      return "connecting";
    case St::idle:
      return "idle";
    case St::busy:
      return "busy";
    case St::closing:
      return "closing";
  }
  return "?";
}

bool Conn::allowed(St from, St to) {
  if (to == St::closing) return true;  // a server may close at any time, and so may we
  switch (from) {
    case St::connecting:
      return to == St::idle;  // the greeting, EHLO and STARTTLS went through
    case St::idle:
      return to == St::busy;
    case St::busy:
      return to == St::idle;
    case St::closing:
      return false;  // nothing comes back from closing
  }
  return false;
}

Conn::Conn(SlotBroker& slots, std::uint64_t serial_no) : serial(serial_no), slots_(slots) {
  slots_.take();
}

Conn::~Conn() {
  if (st_ == St::idle) slots_.idle_down();
  release_slot();
}

bool Conn::enter(St to) {
  if (st_ == to) return true;
  if (!allowed(st_, to)) {
    log::warning("{}: connection #{}: no step {} -> {} (ignored)", relay(), serial, to_string(st_),
                 to_string(to));
    return false;
  }
  if (log::enabled(config::LogLevel::debug))
    log::debug("{}: connection #{} {} -> {}", relay(), serial, to_string(st_), to_string(to));
  if (st_ == St::idle) slots_.idle_down();
  if (to == St::idle) slots_.idle_up();
  st_ = to;
  if (to == St::closing) release_slot();
  return true;
}

void Conn::release_slot() {
  if (!holds_slot_) return;
  holds_slot_ = false;
  slots_.give_back();
}

}  // namespace spoold::daemon
