#!/usr/bin/env bash
# scripts/dev.sh — set up and run spoold on a working default, for a first look:
#   * installs build dependencies (Debian packages) and builds into build/dev
#   * spool under ./var/spool, config ./var/spoold.yaml (written once; edit it freely)
#   * a local capture SMTP server on 127.0.0.1:2525 (aiosmtpd) that stores every message it receives
#     under ./var/captured/ — the dev config routes ALL mail there, nothing leaves the machine
#   * spoold in the foreground, logging to the terminal; Ctrl-C stops both.
# Then, in another terminal:  printf 'Subject: hi\n\nhello\n' | build/dev/ctl/sendmail -C var/spoold.yaml you@example.com
#   or over SMTP:               swaks --server 127.0.0.1:2587 --to you@example.com
#                        or:  drop a file into var/spool/incoming/ (write elsewhere, then mv it in)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
scripts/deps.sh --run-only
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPOOLD_TESTS=OFF >/dev/null
cmake --build build/dev -j"${JOBS:-2}" --target spoold spoolctl >/dev/null

mkdir -p var/captured
if [[ ! -f var/spoold.yaml ]]; then
  cat > var/spoold.yaml <<YAML
# Development config written by scripts/dev.sh: everything goes to the capture server.
hostname: spoold.localdomain
spool_dir: $ROOT/var/spool
control_socket: $ROOT/var/control.sock
queue:
  scan_interval: 5s
  tiers:
    - { delay: 0,   priority: 1 }
    - { delay: 30s, priority: 2 }
    - { delay: 5m,  priority: 6 }
delivery:
  idle_timeout: 2s
routes:
  - { match: ["*"], hosts: ["127.0.0.1:2525"] }
listen:
  - address: "127.0.0.1:2587"        # SMTP in: swaks --server 127.0.0.1:2587 --to you@example.com
admin_address: you@example.com       # where mail to root and other local names goes
logging: { level: info, format: text }
YAML
fi

/usr/bin/python3 tests/support/smtp_sink.py --port 2525 --outdir var/captured &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
for _ in $(seq 50); do [[ -f var/captured/ready ]] && break; sleep 0.1; done
echo "capture server on 127.0.0.1:2525 → var/captured/ ; starting spoold (Ctrl-C to stop)" >&2
build/dev/daemon/spoold --config var/spoold.yaml
