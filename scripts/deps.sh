#!/usr/bin/env bash
# scripts/deps.sh — install what building and testing spoold needs, from Debian only.
# Idempotent and quiet: packages already present are not touched; apt-get runs only if something is missing.
set -euo pipefail

PKGS=(build-essential cmake ninja-build pkg-config
      libuv1-dev libssl-dev libc-ares-dev libidn2-dev libyaml-cpp-dev libfmt-dev catch2
      python3 python3-aiosmtpd dnsmasq-base openssl faketime swaks curl iproute2
      postfix
      clang-14 libclang-rt-14-dev clang-format-14 clang-tidy-14
      dpkg-dev lintian systemd man-db groff-base file)
if [[ "${1:-}" == "--run-only" ]]; then
  PKGS=(build-essential cmake ninja-build pkg-config
        libuv1-dev libssl-dev libc-ares-dev libidn2-dev libyaml-cpp-dev libfmt-dev catch2 python3 python3-aiosmtpd swaks)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # postfix is there for smtp-source (the listener's load test) and the benchmark's peer: installed
  # unconfigured, and its package scripts may not start it (policy-rc.d), so it never holds port 25.
  created_prc=0
  if [[ " ${missing[*]} " == *" postfix "* ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
      $SUDO chmod 755 /usr/sbin/policy-rc.d
      created_prc=1
    fi
  fi
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if ((created_prc)); then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
