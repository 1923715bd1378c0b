// control/spool_options.h — how spoold and its tools open the spool: the spool::Options a config
// says. One home for the mapping, so the daemon and spoolctl/sendmail/mailq (which answer from the
// same directories, control/views.h and control/ops.h) can never disagree on the tiers or limits.
#pragma once

#include <chrono>

#include "config/config.h"
#include "spool/spool.h"

namespace spoold::control {

inline spool::Options spool_options(const config::Config& c) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  spool::Options o;
  o.dir = c.spool_dir;
  for (const auto& t : c.queue.tiers) o.tier_delays.push_back(duration_cast<seconds>(t.delay));
  o.max_message_size = c.queue.max_message_size;
  o.lock_stale_after = duration_cast<seconds>(c.queue.lock_stale_after);
  o.instance = c.instance;
  o.hostname = c.hostname;
  return o;
}

}  // namespace spoold::control
