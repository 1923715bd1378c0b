#!/usr/bin/env bash
# bench/soak.sh — soak run of spoold (issue 7): a long run against failing sinks, with restarts.
# A benchmark-style script, not a CI test. Run as root on Debian 12 (for the network namespace):
#   bench/soak.sh                        # 30 minutes of drops, then drain (~35 min in all)
#   SOAK_MINUTES=2 bench/soak.sh         # quick check
#   SOAK_REV=HEAD bench/soak.sh          # a committed revision (git archive), not the working tree
# It builds spoold Release into build/h-soak (SOAK_SKIP_BUILD=1 reuses it) and runs bench/soak.py
# in a private network namespace that has only `lo` (without `ip netns`: 127.0.0.1, free ports).
# spoold gets short tiers (0, 5s, 10s, 20s) and is restarted every few minutes (SIGTERM, sometimes
# SIGKILL) while messages are dropped into incoming/ at a steady rate and two sinks answer RCPT and
# DATA with random 4xx / 5xx replies. Checks, printed as a table at the end (exit 1 if one fails):
#   * RSS (VmRSS/VmHWM) and open fds of spoold per minute: flat, not growing;
#   * lost = dropped − (delivered ∪ bounced ∪ still queued) = 0, per message and per recipient;
#   * no damaged body (sha256 per message), the spool drained at the end, every SIGTERM obeyed.
# Parameters: SOAK_MINUTES SOAK_RATE SOAK_RESTART_EVERY SOAK_KILL_FRACTION SOAK_SAMPLE SOAK_RCPT_TEMP
# SOAK_RCPT_PERM SOAK_DATA_TEMP SOAK_DATA_PERM SOAK_DRAIN_TIMEOUT SOAK_SEED SOAK_DIR (see bench/soak.py).
# Rule: only 127.0.0.0/8 is used; every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

SRC=. BUILD=build/h-soak
if [[ -n "${SOAK_REV:-}" ]]; then
  rev=$(git rev-parse --short "$SOAK_REV")
  SRC=/var/tmp/spoold-soak-src/$rev BUILD=$SRC/build/h-soak
  if [[ ! -f $SRC/CMakeLists.txt ]]; then
    mkdir -p "$SRC" && git archive "$rev" | tar -x -C "$SRC"
  fi
fi
[[ $BUILD == /* ]] || BUILD="$ROOT/$BUILD"
export SOAK_BUILD="$BUILD"
if [[ "${SOAK_SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPOOLD_TESTS=OFF >/dev/null
  nice -n 5 cmake --build "$BUILD" -j"${JOBS:-2}" --target spoold spoolctl >/dev/null
fi
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || {
  echo "bench/soak.sh: needs python3-aiosmtpd (apt-get install -y python3-aiosmtpd)" >&2
  exit 1
}

NS=spoold-soak-$$
RUN=()
cleanup() {
  ((${#RUN[@]})) && ip netns del "$NS" 2>/dev/null
  return 0
}
trap cleanup EXIT
if [[ $(id -u) == 0 ]] && ip netns add "$NS" 2>/dev/null; then
  ip netns exec "$NS" ip link set lo up
  RUN=(ip netns exec "$NS")
  export SOAK_SINKS="${SOAK_SINKS:-127.0.0.1:2525,127.0.0.2:2525}"
  echo "network: private namespace $NS (lo only)"
else
  export SOAK_SINKS=free
  echo "network: host loopback 127.0.0.1, free ports (no private namespace)"
fi
echo "spoold: ${rev:-working tree at $(git rev-parse --short HEAD)} ($("$BUILD/daemon/spoold" --version 2>/dev/null || true))"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: $(env | grep -E '^SOAK_' | grep -v -e '^SOAK_BUILD=' -e '^SOAK_SINKS=' | tr '\n' ' ')bench/soak.sh"

rc=0
"${RUN[@]}" /usr/bin/python3 bench/soak.py || rc=$?
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
