// daemon/mx_site.h — MX sites: the domains whose MX records name the same set of hosts (one
// provider hosting many domains) share one session limit, as KumoMTA's site_name does.
// Rules: a site is named by its MX host names (sorted, each once) and the route the domains came
// by (a route with a policy of its own is a site of its own); every connection opened for one of
// its destinations holds a seat (SiteSeat) until it is gone, so the count cannot drift; a
// destination that finds its site full waits in the site's line and gets a turn when a seat is
// given back or an idle connection of the site could carry its mail. Loop thread only.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "daemon/slot_broker.h"

namespace spoold::daemon {

// "mx1.example.net,mx2.example.net" (+ "#N" for route N with a policy of its own): the MX hosts
// in any order and case, each counted once. Pure.
std::string mx_site_name(std::vector<std::string> hosts, int route);

struct MxSite {
  std::string name;
  size_t sessions = 0;                      // seats held now
  std::deque<SlotBroker::Waiter*> waiting;  // destinations that found the site full, in order
};

// One connection's place in its site's count: taken at construction, given back at destruction
// (or when moved to another site).
class SiteSeat {
 public:
  SiteSeat() = default;
  explicit SiteSeat(std::shared_ptr<MxSite> site) : site_(std::move(site)) {
    if (site_) ++site_->sessions;
  }
  ~SiteSeat() { release(); }
  SiteSeat(SiteSeat&& o) noexcept : site_(std::move(o.site_)) {}
  SiteSeat& operator=(SiteSeat&& o) noexcept {
    if (this != &o) {
      release();
      site_ = std::move(o.site_);
    }
    return *this;
  }
  SiteSeat(const SiteSeat&) = delete;
  SiteSeat& operator=(const SiteSeat&) = delete;

  const std::shared_ptr<MxSite>& site() const { return site_; }

 private:
  void release() {
    if (site_ && site_->sessions > 0) --site_->sessions;
    site_.reset();
  }
  std::shared_ptr<MxSite> site_;
};

}  // namespace spoold::daemon
