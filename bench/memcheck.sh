#!/usr/bin/env bash
# bench/memcheck.sh — spoold under valgrind memcheck or ThreadSanitizer (issue 7). Not a CI test;
# takes a few minutes. Run as root on Debian 12 (for the private network namespace):
#   bench/memcheck.sh                 # valgrind: RelWithDebInfo build in build/h-vg, no sanitizers
#   bench/memcheck.sh tsan            # -fsanitize=thread build in build/h-tsan: daemon + reliability
#                                     # tests, the same end-to-end run, and a short soak
#   MEMCHECK_SKIP_BUILD=1 …           # reuse the build
#   MEMCHECK_REV=HEAD …               # a committed revision (git archive), not the working tree
# The end-to-end run (bench/memcheck.py): ~200 messages to two sinks on loopback (one plain, one
# with STARTTLS reached through MX records served by dnsmasq), some deferred and then delivered,
# some expired, one bounced by a 550, one by NXDOMAIN, bad drop files, spoolctl commands and a
# SIGHUP while it runs; then SIGTERM; a second daemon stopped by two SIGTERMs while sessions are
# busy (some stalled at DATA by tests/reliability/hostile_smtp.py); one `spoold --once` on 20 drops.
# valgrind: spoold (and spoolctl once) run under
#   valgrind --leak-check=full --error-exitcode=1 --track-fds=yes
# and every error (invalid read/write, uninitialised value, definite/indirect leak, fd open at exit
# other than 0-2) is printed with its stack. tsan: every ThreadSanitizer report (both stacks).
# libuv, built without TSan, closes fds with syscall(SYS_close), which TSan cannot see, so every
# reuse of such an fd number would be reported as a race on the fd; a small LD_PRELOAD shim
# (built here) routes those closes through close(). Exit 1 when anything was found.
# Rule: only 127.0.0.0/8 is used; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
MODE=${1:-valgrind}
case $MODE in valgrind | tsan) ;; *)
  echo "usage: bench/memcheck.sh [valgrind|tsan]" >&2
  exit 2
  ;;
esac

need=()
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v openssl >/dev/null || need+=(openssl)
[[ $MODE == valgrind ]] && ! command -v valgrind >/dev/null && need+=(valgrind)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
if ((${#need[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

# MEMCHECK_REV=<commit>: check a committed revision (git archive), not the working tree.
SRC=$ROOT BROOT=$ROOT/build
if [[ -n "${MEMCHECK_REV:-}" ]]; then
  rev=$(git rev-parse --short "$MEMCHECK_REV")
  SRC=/var/tmp/spoold-memcheck-src/$rev BROOT=$SRC/build
  if [[ ! -f $SRC/CMakeLists.txt ]]; then
    mkdir -p "$SRC" && git archive "$rev" | tar -x -C "$SRC"
  fi
fi
if [[ $MODE == valgrind ]]; then
  BUILD=$BROOT/h-vg
  if [[ "${MEMCHECK_SKIP_BUILD:-0}" != 1 ]]; then
    cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOOLD_TESTS=OFF \
      -DSPOOLD_SANITIZE=OFF >/dev/null
    nice -n 5 cmake --build "$BUILD" -j"${JOBS:-2}" --target spoold spoolctl >/dev/null
  fi
else
  BUILD=$BROOT/h-tsan
  if [[ "${MEMCHECK_SKIP_BUILD:-0}" != 1 ]]; then
    cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSPOOLD_TESTS=ON -DSPOOLD_SANITIZE=OFF \
      "-DCMAKE_CXX_FLAGS=-fsanitize=thread -fno-omit-frame-pointer" -DCMAKE_C_FLAGS=-fsanitize=thread \
      -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null
    nice -n 5 cmake --build "$BUILD" -j"${JOBS:-2}" >/dev/null
  fi
  SHIM=$BUILD/uvclose-shim.so
  cat >"$BUILD/uvclose-shim.c" <<'EOF'
/* LD_PRELOAD for TSan runs: libuv closes fds with syscall(SYS_close), unseen by TSan's close()
 * interceptor, so a reused fd number looks like a race. Route SYS_close through close(). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

long syscall(long n, ...) {
  va_list ap;
  long a[6];
  va_start(ap, n);
  for (int i = 0; i < 6; ++i) a[i] = va_arg(ap, long);
  va_end(ap);
  if (n == SYS_close) return close((int)a[0]);
  static long (*real)(long, ...);
  if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
EOF
  gcc -O2 -shared -fPIC -o "$SHIM" "$BUILD/uvclose-shim.c" -ldl
  # TSan may refuse to start with a high mmap randomisation (newer kernels): then run without ASLR.
  SETARCH=()
  if ! "$BUILD/daemon/spoold" --version >/dev/null 2>&1; then SETARCH=(setarch "$(uname -m)" -R); fi
fi

NS=spoold-memcheck-$$
RUN=()
cleanup() {
  ((${#RUN[@]})) && ip netns del "$NS" 2>/dev/null
  return 0
}
trap cleanup EXIT
if [[ $(id -u) == 0 ]] && ip netns add "$NS" 2>/dev/null; then
  ip netns exec "$NS" ip link set lo up
  RUN=(ip netns exec "$NS")
  export MEMCHECK_HOSTS=127.0.0.1,127.0.0.3,127.0.0.4
  echo "network: private namespace $NS (lo only)"
else
  export MEMCHECK_HOSTS=127.0.0.1,127.0.0.1,127.0.0.1
  echo "network: host loopback 127.0.0.1 (no private namespace)"
fi
echo "spoold: ${rev:-working tree at $(git rev-parse --short HEAD)}, build $BUILD; $(date -u '+%Y-%m-%d %H:%M UTC')"
export MEMCHECK_BUILD=$BUILD MEMCHECK_TOOL=$MODE

rc=0
if [[ $MODE == valgrind ]]; then
  export MEMCHECK_DIR=${MEMCHECK_DIR:-/var/tmp/spoold-memcheck}
  "${RUN[@]}" /usr/bin/python3 bench/memcheck.py || rc=$?
  exit $rc
fi

# ---- tsan: the daemon's tests, the end-to-end run, a short soak
LOGS=${MEMCHECK_DIR:-/var/tmp/spoold-tsan}
rm -rf "$LOGS" && mkdir -p "$LOGS/ctest"
export MEMCHECK_TSAN_SHIM=$SHIM
echo "== ctest -R 'daemon|reliability_tests' (TSan reports of every process: $LOGS/ctest/tsan.PID)"
LD_PRELOAD=$SHIM TSAN_OPTIONS="log_path=$LOGS/ctest/tsan second_deadlock_stack=1" \
  "${SETARCH[@]}" timeout 3600 ctest --test-dir "$BUILD" -R 'daemon|reliability_tests' --output-on-failure \
  >"$LOGS/ctest.log" 2>&1 || { rc=1; echo "ctest failed: see $LOGS/ctest.log"; }
grep -E "tests passed|Passed|Failed|\*\*\*" "$LOGS/ctest.log" || true
echo "== end-to-end run (bench/memcheck.py)"
MEMCHECK_DIR=$LOGS/e2e "${RUN[@]}" "${SETARCH[@]}" /usr/bin/python3 bench/memcheck.py || rc=1
echo "== soak, ${MEMCHECK_TSAN_SOAK_MINUTES:-3} min (bench/soak.py with the TSan build)"
mkdir -p "$LOGS/soak-tsan"
LD_PRELOAD=$SHIM TSAN_OPTIONS="log_path=$LOGS/soak-tsan/tsan second_deadlock_stack=1" \
  SOAK_BUILD=$BUILD SOAK_MINUTES=${MEMCHECK_TSAN_SOAK_MINUTES:-3} SOAK_DIR=$LOGS/soak SOAK_RATE=${SOAK_RATE:-5} \
  SOAK_SINKS=$( ((${#RUN[@]})) && echo 127.0.0.1:2525,127.0.0.2:2525 || echo free) \
  "${RUN[@]}" "${SETARCH[@]}" /usr/bin/python3 bench/soak.py >"$LOGS/soak.out" 2>&1 || { rc=1; echo "soak failed: see $LOGS/soak.out"; }
grep -E "^(PASS|FAIL)|lost" "$LOGS/soak.out" || true
n=0
for f in "$LOGS"/ctest/tsan.* "$LOGS"/soak-tsan/tsan.*; do
  [[ -e $f ]] || continue
  echo "== $f"
  cat "$f"
  n=$((n + $(grep -c '^WARNING: ThreadSanitizer' "$f" || true)))
done
echo "ThreadSanitizer reports from the tests and the soak: $n (the end-to-end run's are listed above)"
((n == 0)) || rc=1
exit $rc
