#!/usr/bin/env bash
# bench/run.sh — spoold vs Postfix benchmark (issue 8). Run as root on Debian 12:
#   bench/run.sh                       # full: 10,000 messages, 3 repetitions, every workload
#   BENCH_QUICK=1 bench/run.sh         # quick: 1,000 messages, 1 repetition
#   bench/run.sh --only W1,W4          # some workloads; --systems spoold,postfix,limit
#   bench/run.sh profile               # perf + strace of spoold on a small W1 (bench/profile.sh)
# Installs what it needs (postfix for smtp-sink/smtp-source and as the peer, dnsmasq, time),
# builds spoold (Release) into build/bench, and runs every process inside a private network
# namespace that has only `lo` (falls back to 127.0.0.1 when `ip netns` is unavailable).
# Rule: nothing but loopback is ever used, and the system Postfix is never left running.
# Parameters (environment): BENCH_N BENCH_REPS BENCH_N_W2B BENCH_N_W4 BENCH_W5_ENTRIES BENCH_W5_DUE
# BENCH_W5_IDLE BENCH_N_W6 BENCH_DOMAINS BENCH_SESSIONS BENCH_DIR BENCH_KEEP=1 BENCH_SKIP_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
NS=spoold-bench
[[ $(id -u) == 0 ]] || { echo "bench/run.sh: run as root" >&2; exit 1; }

if [[ "${1:-}" == profile ]]; then
  shift
  exec bench/profile.sh "$@"
fi

install_deps() {
  local need=()
  command -v smtp-sink >/dev/null || need+=(postfix)
  command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
  [[ -x /usr/bin/time ]] || need+=(time)
  command -v cmake >/dev/null || need+=(cmake)
  if ((${#need[@]})); then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # policy-rc.d keeps the package scripts from starting the system Postfix
    local prc=/usr/sbin/policy-rc.d created=0
    if [[ ! -e $prc ]]; then printf '#!/bin/sh\nexit 101\n' >$prc; chmod 755 $prc; created=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
    ((created)) && rm -f $prc
  fi
  scripts/deps.sh --run-only >/dev/null 2>&1 || true
}

stop_system_postfix() {
  # the benchmark runs private Postfix instances only; the system one must not hold port 25
  if [[ -f /var/spool/postfix/pid/master.pid ]] && kill -0 "$(cat /var/spool/postfix/pid/master.pid)" 2>/dev/null; then
    postfix stop >/dev/null 2>&1 || true
  fi
}

install_deps
stop_system_postfix
# BENCH_REV=<commit>: benchmark a committed revision (exported with git archive, so edits in
# progress in the working tree do not matter); default: the working tree into build/bench.
SRC=. BUILD=build/bench
if [[ -n "${BENCH_REV:-}" ]]; then
  rev=$(git rev-parse --short "$BENCH_REV")
  SRC=/var/tmp/spoold-bench-src/$rev BUILD=$SRC/build/bench
  if [[ ! -f $SRC/CMakeLists.txt ]]; then
    mkdir -p "$SRC" && git archive "$rev" | tar -x -C "$SRC"
  fi
fi
export BENCH_BUILD="$PWD/$BUILD"
[[ $BUILD == /* ]] && export BENCH_BUILD="$BUILD"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPOOLD_TESTS=OFF >/dev/null
  nice cmake --build "$BUILD" -j"${JOBS:-2}" --target spoold spoolctl >/dev/null
fi
# the disk's own ceiling for W7/W8 (system "limit"), built beside spoold
if [[ ! -x $BUILD/disk_ceiling || bench/disk_ceiling.cpp -nt $BUILD/disk_ceiling ]]; then
  g++ -O2 -std=c++20 -Wall -Wextra -Werror -pthread bench/disk_ceiling.cpp -o "$BUILD/disk_ceiling"
fi

cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "/etc/netns/$NS"
  stop_system_postfix
}
trap cleanup EXIT

RUN=()
if ip netns add "$NS" 2>/dev/null || ip netns list | grep -qw "$NS"; then
  ip netns exec "$NS" ip link set lo up
  # resolvers inside the namespace (Postfix's smtp client) ask the benchmark's dnsmasq
  mkdir -p "/etc/netns/$NS"
  echo "nameserver 127.0.0.1" >"/etc/netns/$NS/resolv.conf"
  RUN=(ip netns exec "$NS")
  export BENCH_NET="private network namespace '$NS' (lo only)"
else
  export BENCH_NET="host loopback 127.0.0.1 (ip netns unavailable); W3 for Postfix uses the host resolver"
fi

{
  echo "machine: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "spoold: ${rev:-working tree at $(git rev-parse --short HEAD)} ($("$BENCH_BUILD/daemon/spoold" --version 2>/dev/null || true)); Postfix $(postconf -d -h mail_version 2>/dev/null)"
  echo "command: $(env | grep -E '^BENCH_' | grep -v '^BENCH_NET=' | tr '\n' ' ')bench/run.sh $*"
}

"${RUN[@]}" /usr/bin/python3 bench/bench.py "$@"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
