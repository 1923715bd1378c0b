#!/usr/bin/env bash
# tests/packaging/check_package.sh SOURCE_DIR BUILD_DIR VERSION — builds the .deb with CPack and
# checks what an administrator gets: the control fields (Provides/Conflicts mail-transport-agent,
# conffiles, computed Depends), every file and link with its mode, the layout unpacked into a scratch
# root, the shipped config (as shipped and with every key uncommented), the sysusers/tmpfiles
# entries applied to a scratch root, `systemd-analyze verify` of the unit, the man pages, lintian.
# Rule: every check can fail; any diagnostic from a checker (verify, groff, man) is a failure.
set -uo pipefail

SRC=${1:?source dir}
BUILD=${2:?build dir}
VERSION=${3:?version}

failures=0
checks=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { checks=$((checks + 1)); }
check() {  # check DESCRIPTION COMMAND... : the command must succeed
  local what=$1; shift
  if "$@"; then pass; else fail "$what"; fi
}
need() { command -v "$1" >/dev/null 2>&1 || { echo "FAIL: $1 is not installed (scripts/deps.sh)" >&2; exit 1; }; }
for tool in cpack dpkg-deb dpkg lintian systemd-analyze systemd-sysusers systemd-tmpfiles groff man lexgrog gzip; do
  need "$tool"
done

WORK=$(mktemp -d /tmp/spoold-packaging.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# --- build the package -------------------------------------------------------------------------
echo "== cpack -G DEB"
# CPack installs what is built; make sure that is current (a no-op after a full build).
if ! cmake --build "$BUILD" --target spoold spoolctl spoold_package_files >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log" >&2
  echo "FAIL: building spoold, spoolctl and the package files" >&2
  exit 1
fi
if ! cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$WORK/out" >"$WORK/cpack.log" 2>&1; then
  cat "$WORK/cpack.log" >&2
  echo "FAIL: cpack" >&2
  exit 1
fi
shopt -s nullglob
debs=("$WORK"/out/spoold_*.deb)
if ((${#debs[@]} != 1)); then
  ls -l "$WORK/out" >&2
  echo "FAIL: expected one spoold_*.deb, found ${#debs[@]}" >&2
  exit 1
fi
DEB=${debs[0]}
ARCH=$(dpkg --print-architecture)
check "file name is spoold_${VERSION}_${ARCH}.deb" test "$(basename "$DEB")" = "spoold_${VERSION}_${ARCH}.deb"

# --- control fields ------------------------------------------------------------------------------
echo "== dpkg-deb -I"
field() { dpkg-deb -f "$DEB" "$1"; }
check "Package" test "$(field Package)" = spoold
check "Version" test "$(field Version)" = "$VERSION"
check "Architecture" test "$(field Architecture)" = "$ARCH"
check "Section" test "$(field Section)" = mail
for rel in Provides Conflicts Replaces; do
  check "$rel: mail-transport-agent" grep -qx 'mail-transport-agent' <<<"$(field $rel | tr ',' '\n' | tr -d ' ')"
done
depends=$(field Depends)
dep_names=$(tr ',' '\n' <<<"$depends" | awk '{ print $1 }')
# Computed by dpkg-shlibdeps from the binaries: every shared library they link must be there.
for lib in libc6 libstdc++6 libuv1 libc-ares2 libssl3 libyaml-cpp0.7 libfmt9 adduser; do
  check "Depends names $lib (got: $depends)" grep -qxF "$lib" <<<"$dep_names"
done
check "the long description does not repeat the synopsis" \
  test "$(field Description | sed -n 2p | sed 's/^ *//')" != "$(field Description | sed -n 1p)"
dpkg-deb -e "$DEB" "$WORK/control"
check "conffiles lists exactly /etc/spoold/spoold.yaml" test "$(cat "$WORK/control/conffiles")" = /etc/spoold/spoold.yaml
for script in postinst prerm postrm; do
  check "$script is an executable control file" test -x "$WORK/control/$script"
  check "$script parses with sh -n" sh -n "$WORK/control/$script"
done
check "postinst sets spoolctl set-uid spoold via dpkg-statoverride" \
  grep -q 'dpkg-statoverride --update --add spoold spoold 4755 "\$SPOOLCTL"' "$WORK/control/postinst"

# --- contents: every path, its type, mode and owner ----------------------------------------------
echo "== dpkg-deb -c"
dpkg-deb -c "$DEB" >"$WORK/contents"
# "MODE OWNER PATH[ -> TARGET]" for files and links (directories are checked through the layout).
awk '$1 !~ /^d/ { line = $1 " " $2; for (i = 6; i <= NF; i++) line = line " " $i; print line }' \
  "$WORK/contents" | sort >"$WORK/entries"
cat >"$WORK/expected" <<EOF
-rw-r--r-- root/root ./etc/spoold/spoold.yaml
-rw-r--r-- root/root ./lib/systemd/system/spoold.service
-rw-r--r-- root/root ./usr/lib/sysusers.d/spoold.conf
-rw-r--r-- root/root ./usr/lib/tmpfiles.d/spoold.conf
-rw-r--r-- root/root ./usr/share/doc/spoold/README.md.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/configuration.md.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/control-protocol.md.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/copyright
-rw-r--r-- root/root ./usr/share/doc/spoold/design.md.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/performance.md.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/reliability.md.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/roadmap.md.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/spool-format.md.gz
-rw-r--r-- root/root ./usr/share/doc/spoold/spoolctl.md.gz
-rw-r--r-- root/root ./usr/share/man/man5/spoold.yaml.5.gz
-rw-r--r-- root/root ./usr/share/man/man8/spoolctl.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/spoold.8.gz
-rwxr-xr-x root/root ./usr/sbin/spoolctl
-rwxr-xr-x root/root ./usr/sbin/spoold
lrwxrwxrwx root/root ./usr/bin/mailq -> ../sbin/spoolctl
lrwxrwxrwx root/root ./usr/bin/newaliases -> ../sbin/spoolctl
lrwxrwxrwx root/root ./usr/lib/sendmail -> ../sbin/sendmail
lrwxrwxrwx root/root ./usr/sbin/sendmail -> spoolctl
lrwxrwxrwx root/root ./usr/share/man/man8/mailq.8.gz -> spoolctl.8.gz
lrwxrwxrwx root/root ./usr/share/man/man8/newaliases.8.gz -> spoolctl.8.gz
lrwxrwxrwx root/root ./usr/share/man/man8/sendmail.8.gz -> spoolctl.8.gz
EOF
sort -o "$WORK/expected" "$WORK/expected"
if ! diff -u "$WORK/expected" "$WORK/entries" >"$WORK/contents.diff"; then
  cat "$WORK/contents.diff" >&2
  fail "package contents differ from the expected list (- expected, + in the package)"
else
  pass
fi
check "nothing in the package is set-uid or set-gid (postinst does that)" \
  test -z "$(awk '$1 ~ /[sS]/' "$WORK/contents")"
check "every entry belongs to root/root" test -z "$(awk '$2 != "root/root"' "$WORK/contents")"
for page in $(grep -o 'docs/[a-z-]*\.md' "$SRC/README.md" | sort -u); do
  check "the README's $page is in the package" grep -q "/usr/share/doc/spoold/${page#docs/}.gz" "$WORK/contents"
done

# --- unpacked layout -----------------------------------------------------------------------------
echo "== dpkg -x"
ROOT=$WORK/root
dpkg -x "$DEB" "$ROOT"
resolve() { (cd "$ROOT" && realpath -m --relative-base="$ROOT" "$ROOT$1"); }
for link in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases; do
  check "$link resolves to /usr/sbin/spoolctl" test "$(resolve "$link")" = "usr/sbin/spoolctl"
done
for link in sendmail mailq newaliases; do
  check "man8/$link.8.gz resolves to spoolctl.8.gz" test -f "$ROOT/usr/share/man/man8/$link.8.gz"
done
check "spoold and spoolctl are stripped ELF executables" \
  bash -c "file '$ROOT/usr/sbin/spoold' '$ROOT/usr/sbin/spoolctl' | grep -c 'ELF.*, stripped' | grep -qx 2"
check "the shipped config is packaging/spoold.yaml" cmp -s "$SRC/packaging/spoold.yaml" "$ROOT/etc/spoold/spoold.yaml"
for page in man8/spoold.8 man8/spoolctl.8 man5/spoold.yaml.5; do
  check "$page.gz is the gzipped man/$(basename $page)" \
    cmp -s <(gzip -dc "$ROOT/usr/share/man/$page.gz") "$SRC/man/$(basename $page)"
done
check "spoold --version prints $VERSION" test "$("$ROOT/usr/sbin/spoold" --version)" = "spoold $VERSION"

# The programs through their installed names, on a scratch spool (no daemon, no network).
printf 'spool_dir: %s\ncontrol_socket: %s\nhostname: pkg.test\n' "$WORK/spool" "$WORK/control.sock" \
  >"$WORK/smoke.yaml"
if printf 'Subject: packaging\n\nhello\n' | "$ROOT/usr/lib/sendmail" -C "$WORK/smoke.yaml" you@example.org \
    2>"$WORK/sendmail.err"; then
  pass
else
  cat "$WORK/sendmail.err" >&2
  fail "/usr/lib/sendmail -C ... accepts a message"
fi
drops=("$WORK"/spool/incoming/sendmail.*)
check "sendmail left one drop file in incoming/ (found ${#drops[@]})" test "${#drops[@]}" -eq 1
check "the drop is addressed to you@example.org" grep -qx 'RCPT TO:<you@example.org>' "${drops[0]:-/dev/null}"
check "/usr/bin/mailq answers as mailq, listing the drop not picked up yet" \
  bash -c "'$ROOT/usr/bin/mailq' -C '$WORK/smoke.yaml' 2>/dev/null | grep -q '(incoming, not picked up yet'"
check "/usr/bin/newaliases answers as newaliases" \
  bash -c "'$ROOT/usr/bin/newaliases' -C '$WORK/smoke.yaml' 2>/dev/null | grep -qx '0 aliases (from $WORK/smoke.yaml; no aliases_file)'"
check "/usr/sbin/spoolctl answers as spoolctl" \
  bash -c "'$ROOT/usr/sbin/spoolctl' --config '$WORK/smoke.yaml' --json status 2>/dev/null | grep -q '\"incoming\":1'"

# --- the shipped config --------------------------------------------------------------------------
echo "== config"
check "the shipped config loads" "$ROOT/usr/sbin/spoold" --check-config --config "$ROOT/etc/spoold/spoold.yaml"
# The shipped listener, moved to a free port and a scratch spool: up on loopback, nowhere else,
# and it takes a message.
echo "== listener"
LPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -E -e "s#:25\"#:$LPORT\"#" "$ROOT/etc/spoold/spoold.yaml" >"$WORK/listen.yaml"
printf 'spool_dir: %s\ncontrol_socket: %s\nhostname: pkg.test\n' "$WORK/lspool" "$WORK/l.sock" >>"$WORK/listen.yaml"
"$ROOT/usr/sbin/spoold" --config "$WORK/listen.yaml" 2>"$WORK/listen.log" &
LPID=$!
for _ in $(seq 1 100); do
  ss -ltnH "sport = :$LPORT" 2>/dev/null | grep -q . && break
  sleep 0.1
done
ss -ltnH "sport = :$LPORT" | awk '{print $4}' >"$WORK/bound"
check "the shipped listener is up on 127.0.0.1:$LPORT" grep -qxF "127.0.0.1:$LPORT" "$WORK/bound"
check "the shipped listener is bound to loopback only ($(tr '\n' ' ' <"$WORK/bound"))" \
  bash -c "! grep -qvxE '(127\\.0\\.0\\.1|\\[::1\\]):$LPORT' '$WORK/bound'"
if /usr/bin/python3 - "$LPORT" >"$WORK/listen.client" 2>&1 <<'PY'; then
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as c:
    c.sendmail("app@pkg.test", ["someone@example.org"], "Subject: via the listener\r\n\r\nhi\r\n")
PY
  pass
else
  cat "$WORK/listen.client" "$WORK/listen.log" >&2
  fail "the shipped listener accepts a message from 127.0.0.1"
fi
kill "$LPID" 2>/dev/null
wait "$LPID" 2>/dev/null
check "the listener logged the client (spoold's log: client=localhost[127.0.0.1])" \
  grep -q 'client=localhost\[127.0.0.1\]' "$WORK/listen.log"

# Uncomment every commented key ('#key:' / '#  key:' / '#  - ...'); prose comments start '# Capital'.
printf 'relay-secret\n' >"$WORK/corp.pw"
sed -E -e 's/^#( *([a-z_]+:( |$)|- ))/\1/' -e "s#/etc/spoold/corp.pw#$WORK/corp.pw#" \
  "$ROOT/etc/spoold/spoold.yaml" >"$WORK/uncommented.yaml"
check "the config with every key uncommented loads" \
  "$ROOT/usr/sbin/spoold" --check-config --config "$WORK/uncommented.yaml"
check "uncommenting left no commented key behind" \
  test -z "$(grep -E '^#+ *[a-z_]+: ' "$WORK/uncommented.yaml")"
# Every key the loader accepts (config/loader.cpp's each_key lists) is in the file and in spoold.yaml(5).
keys=$(tr '\n' ' ' <"$SRC/config/loader.cpp" | grep -o 'each_key([^{]*{[^{}]*}' | grep -o '"[a-z_]*"' |
  tr -d '"' | sort -u)
check "found the loader's key lists ($(wc -w <<<"$keys") keys)" test "$(wc -w <<<"$keys")" -ge 60
for key in $keys; do
  check "key '$key' is listed in packaging/spoold.yaml" grep -Eq "^ *(- )?$key:|[{ ]$key:" "$WORK/uncommented.yaml"
  check "key '$key' is described in spoold.yaml(5)" grep -Eq "^\.(B|BR|BI) $key(:| |$)" \
    "$SRC/man/spoold.yaml.5"
done
# A misspelt key must make the check fail (so the check above means something).
sed 's/^#  scan_interval: 20s/queue:\n  scan_intervall: 20s/' "$ROOT/etc/spoold/spoold.yaml" >"$WORK/typo.yaml"
check "a misspelt key is refused" bash -c "! '$ROOT/usr/sbin/spoold' --check-config --config '$WORK/typo.yaml' 2>/dev/null"

# --- sysusers and tmpfiles, applied to a scratch root ------------------------------------------
echo "== sysusers / tmpfiles"
SYS=$WORK/sysroot
mkdir -p "$SYS/etc"
if systemd-sysusers --root="$SYS" "$ROOT/usr/lib/sysusers.d/spoold.conf" 2>"$WORK/sysusers.err"; then
  pass
else
  cat "$WORK/sysusers.err" >&2
  fail "systemd-sysusers"
fi
pw=$(grep '^spoold:' "$SYS/etc/passwd" || true)
check "sysusers creates user spoold (got '$pw')" test -n "$pw"
check "spoold's home is /var/spool/spoold and its shell nologin" \
  test "$(cut -d: -f6,7 <<<"$pw")" = "/var/spool/spoold:/usr/sbin/nologin"
check "sysusers creates group spoold" grep -q '^spoold:' "$SYS/etc/group"
uid=$(cut -d: -f3 <<<"$pw")
check "spoold is a system user (uid $uid < 1000)" test "${uid:-1000}" -lt 1000
if systemd-tmpfiles --root="$SYS" --create "$ROOT/usr/lib/tmpfiles.d/spoold.conf" 2>"$WORK/tmpfiles.err"; then
  pass
else
  cat "$WORK/tmpfiles.err" >&2
  fail "systemd-tmpfiles --create"
fi
for d in "" incoming tmp data queue hold failed bad; do
  check "/var/spool/spoold/$d is 700 spoold:spoold" \
    test "$(stat -c '%a %u %g' "$SYS/var/spool/spoold/$d" 2>&1)" = "700 $uid $(cut -d: -f4 <<<"$pw")"
done
check "/run/spoold is 755 spoold" test "$(stat -c '%a %u' "$SYS/run/spoold" 2>&1)" = "755 $uid"

# --- maintainer scripts, run against stub commands that log what they are asked to do -------------
echo "== maintainer scripts"
STUBS=$WORK/stubs
mkdir -p "$STUBS"
for cmd in systemd-sysusers systemd-tmpfiles adduser install deb-systemd-helper deb-systemd-invoke systemctl; do
  printf '#!/bin/sh\necho "%s $*" >>"$STUB_LOG"\n' "$cmd" >"$STUBS/$cmd"
done
# getent: the user does not exist yet. dpkg-statoverride --list prints $STUB_OVERRIDE when set.
printf '#!/bin/sh\nexit 2\n' >"$STUBS/getent"
printf '%s\n' '#!/bin/sh' \
  'if [ "$1" = --list ]; then [ -n "$STUB_OVERRIDE" ] || exit 1; echo "$STUB_OVERRIDE"; exit 0; fi' \
  'echo "dpkg-statoverride $*" >>"$STUB_LOG"' >"$STUBS/dpkg-statoverride"
cp "$(command -v grep)" "$STUBS/grep"
chmod +x "$STUBS"/*
run_script() {  # run_script LOG OVERRIDE PATH SCRIPT ARGS...
  local log=$1 override=$2 path=$3
  shift 3
  : >"$log"
  env -i STUB_LOG="$log" STUB_OVERRIDE="$override" PATH="$path" /bin/sh "$@"
}
has() { grep -qxF "$2" "$1"; }
L=$WORK/maint.log
check "postinst configure succeeds" run_script "$L" "" "$STUBS:/usr/bin:/bin" "$WORK/control/postinst" configure ""
check "postinst runs systemd-sysusers" has "$L" "systemd-sysusers /usr/lib/sysusers.d/spoold.conf"
check "postinst runs systemd-tmpfiles" has "$L" "systemd-tmpfiles --create /usr/lib/tmpfiles.d/spoold.conf"
check "postinst makes spoolctl 4755 spoold:spoold" \
  has "$L" "dpkg-statoverride --update --add spoold spoold 4755 /usr/sbin/spoolctl"
check "postinst enables the unit" has "$L" "deb-systemd-helper enable spoold.service"
check "postinst with an admin's override succeeds" \
  run_script "$L" "root root 0755 /usr/sbin/spoolctl" "$STUBS:/usr/bin:/bin" "$WORK/control/postinst" configure ""
check "... and keeps that override" test -z "$(grep 'dpkg-statoverride' "$L")"
# Without systemd's tools (only the stubs on PATH, less those two): adduser and install -d.
for cmd in systemd-sysusers systemd-tmpfiles; do mv "$STUBS/$cmd" "$STUBS/$cmd.off"; done
check "postinst without systemd succeeds" run_script "$L" "" "$STUBS" "$WORK/control/postinst" configure ""
check "postinst falls back to adduser --system" \
  grep -q '^adduser .*--system --group --home /var/spool/spoold .* spoold$' "$L"
check "postinst falls back to install -d 0700 for the spool" \
  has "$L" "install -d -o spoold -g spoold -m 0700 /var/spool/spoold/incoming"
for cmd in systemd-sysusers systemd-tmpfiles; do mv "$STUBS/$cmd.off" "$STUBS/$cmd"; done
check "postrm purge succeeds" \
  run_script "$L" "spoold spoold 4755 /usr/sbin/spoolctl" "$STUBS:/usr/bin:/bin" "$WORK/control/postrm" purge
check "postrm purge removes our override" has "$L" "dpkg-statoverride --remove /usr/sbin/spoolctl"
check "postrm purge with an admin's override succeeds" \
  run_script "$L" "root root 0755 /usr/sbin/spoolctl" "$STUBS:/usr/bin:/bin" "$WORK/control/postrm" purge
check "... and keeps that override" test -z "$(grep 'dpkg-statoverride' "$L")"
check "prerm remove succeeds" run_script "$L" "" "$STUBS:/usr/bin:/bin" "$WORK/control/prerm" remove
check "postinst refuses an unknown action" \
  bash -c "! env -i PATH='$STUBS' STUB_LOG=/dev/null /bin/sh '$WORK/control/postinst' bogus 2>/dev/null"

# --- the systemd unit ----------------------------------------------------------------------------
echo "== systemd-analyze"
# verify wants ExecStart's binary to exist: point a copy of the unit at the unpacked one.
mkdir -p "$WORK/units"
sed "s#/usr/sbin/spoold#$ROOT/usr/sbin/spoold#g" "$ROOT/lib/systemd/system/spoold.service" \
  >"$WORK/units/spoold.service"
if MANPATH="$ROOT/usr/share/man" systemd-analyze verify --man=yes "$WORK/units/spoold.service" \
    >"$WORK/verify.log" 2>&1 && ! [[ -s "$WORK/verify.log" ]]; then
  pass
else
  cat "$WORK/verify.log" >&2
  fail "systemd-analyze verify spoold.service (any message counts)"
fi
for key in "Type=notify" "User=spoold" "Group=spoold" "Restart=on-failure" "NoNewPrivileges=true" \
  "ProtectSystem=strict" "ProtectHome=true" "PrivateTmp=true" "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" \
  "AmbientCapabilities=CAP_NET_BIND_SERVICE" \
  "ReadWritePaths=/var/spool/spoold /run/spoold" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
  "SystemCallFilter=@system-service" "ExecReload=/bin/kill -HUP \$MAINPID" \
  "ExecStart=/usr/sbin/spoold --config /etc/spoold/spoold.yaml"; do
  check "spoold.service has $key" grep -qxF "$key" "$ROOT/lib/systemd/system/spoold.service"
done
# Exposure as systemd rates it (0-10, lower is better): keep the hardening from eroding.
if systemd-analyze security --offline=yes --threshold=20 "$WORK/units/spoold.service" >"$WORK/security.log" 2>&1; then
  pass
else
  grep -E 'Overall|✗' "$WORK/security.log" >&2
  fail "systemd-analyze security: exposure above 2.0"
fi

# --- man pages -----------------------------------------------------------------------------------
echo "== man pages"
for page in spoold.8 spoolctl.8 spoold.yaml.5; do
  file=$SRC/man/$page
  out=$(groff -man -ww -z "$file" 2>&1)
  check "groff -ww: $page is clean${out:+: $out}" test -z "$out"
  out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$file" 2>&1 >/dev/null)
  check "man --warnings: $page is clean${out:+: $out}" test -z "$out"
  check "lexgrog finds the NAME section of $page" lexgrog "$file" >/dev/null
  check "$page's .TH names spoold $VERSION" grep -q "^\.TH .* \"spoold $VERSION\" " "$file"
done
check "spoolctl(8) has a SENDMAIL section" grep -qx '.SH SENDMAIL' "$SRC/man/spoolctl.8"
check "spoolctl(8) has a MAILQ section" grep -qx '.SH MAILQ' "$SRC/man/spoolctl.8"
check "man finds spoold(8) in the package" \
  bash -c "MANPATH='$ROOT/usr/share/man' man -w 8 spoold | grep -q '/man8/spoold.8.gz$'"
check "man finds sendmail(8) as a link to spoolctl(8)" \
  bash -c "MANPATH='$ROOT/usr/share/man' man 8 sendmail 2>/dev/null | grep -q 'SPOOLCTL(8)'"

# --- lintian: errors fail, warnings are shown ------------------------------------------------------
echo "== lintian"
lintian --no-cfg --fail-on error --display-level '>=warning' "$DEB" >"$WORK/lintian.log" 2>&1
rc=$?
cat "$WORK/lintian.log"
check "lintian exits 0 with --fail-on error (got $rc)" test "$rc" -eq 0
check "lintian reports no error (E:)" test -z "$(grep '^E: ' "$WORK/lintian.log")"

echo "$checks passed, $failures failed"
((failures == 0))
