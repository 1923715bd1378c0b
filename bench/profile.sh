#!/usr/bin/env bash
# bench/profile.sh — where spoold spends its time on W1 (drain, static next hop), for the
# optimiser: (1) strace -f -c of the file-system and socket calls, divided by the messages
# delivered (fsyncs per message); (2) perf record (flat, user + kernel) and the top symbols.
# Run as root after bench/run.sh has built spoold (same BENCH_REV / build dir), e.g.
#   BENCH_REV=HEAD bench/run.sh profile          # PROFILE_N messages (default 1000)
# Rule: same loopback-only namespace as the benchmark; output goes to $BENCH_DIR/profile/.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=spoold-bench-prof
N=${PROFILE_N:-1000}
OUT=${BENCH_DIR:-/var/tmp/spoold-bench}/profile
mkdir -p "$OUT"
if [[ -n "${BENCH_REV:-}" ]]; then
  export BENCH_BUILD=/var/tmp/spoold-bench-src/$(git rev-parse --short "$BENCH_REV")/build/bench
fi
export BENCH_BUILD=${BENCH_BUILD:-$PWD/build/bench}
[[ -x $BENCH_BUILD/daemon/spoold ]] || { echo "build first: bench/run.sh (BENCH_REV=$BENCH_REV)" >&2; exit 1; }
ip netns add "$NS"
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
ip netns exec "$NS" ip link set lo up
export BENCH_NET="private network namespace '$NS'" BENCH_REPS=1 BENCH_N=$N

calls=fsync,fdatasync,sync_file_range,rename,renameat,renameat2,openat,unlink,unlinkat,link,linkat,write,writev,sendmsg,sendto,read,recvfrom,readv,getdents64,newfstatat,statx,fstat,utimensat,mkdir,close,epoll_wait,futex,io_uring_enter
echo "== strace -f -c, W1 $N messages" >&2
ip netns exec "$NS" /usr/bin/python3 bench/bench.py --only W1 --systems spoold \
  --wrap "strace -f -c -o $OUT/strace.txt -e trace=$calls" --json "$OUT/strace.json" >/dev/null
/usr/bin/python3 - "$OUT/strace.txt" "$N" <<'PY'
import sys
n = int(sys.argv[2])
print("syscall                   calls   per message   seconds")
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls = int(f[3])
        print("%-22s %8d   %10.2f   %8.3f" % (f[-1], calls, calls / n, float(f[1])))
PY

if command -v perf >/dev/null; then
  echo "== perf record, W1 $N messages" >&2
  ip netns exec "$NS" /usr/bin/python3 bench/bench.py --only W1 --systems spoold \
    --wrap "perf record -F 1999 -g -o $OUT/perf.data" --json "$OUT/perf.json" >/dev/null 2>"$OUT/perf.err" || true
  perf report -i "$OUT/perf.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | cut -c1-120 | head -40 >"$OUT/perf-top.txt" || true
  perf report -i "$OUT/perf.data" --no-children -g none --sort dso --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -15 >"$OUT/perf-dso.txt" || true
  echo "-- by DSO"; cat "$OUT/perf-dso.txt"
  echo "-- top symbols (self)"; cat "$OUT/perf-top.txt"
fi
echo "-- fsyncs by directory/file (strace -y, 20 messages)"
ip netns exec "$NS" env BENCH_N=20 /usr/bin/python3 bench/bench.py --only W1 --systems spoold \
  --wrap "strace -f -y -e trace=fsync,fdatasync -o $OUT/fsync-paths.txt" --json "$OUT/y.json" >/dev/null
grep -o 'fsync([0-9]*<[^>]*>' "$OUT/fsync-paths.txt" | sed -E 's/.*<//; s#.*/spool/##; s/[0-9A-F]{30}/ID/g; s/t\.[0-9a-f]+\.[0-9a-f]+\.tmp/t.N.tmp/' \
  | sort | uniq -c | sort -rn | awk '{printf "%6.2f per message  %s\n", $1/20, $2}'
echo "W1 under strace (slowed down by it): $(tr -d ' \n' <"$OUT/strace.json")" | cut -c1-300
