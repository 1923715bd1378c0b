#!/usr/bin/env bash
# scripts/deps.sh — install what building and testing spoold needs, from Debian only.
# Idempotent and quiet: packages already present are not touched; apt-get runs only if something is missing.
set -euo pipefail

PKGS=(build-essential cmake ninja-build pkg-config
      libuv1-dev libssl-dev libc-ares-dev libyaml-cpp-dev libfmt-dev catch2
      python3 python3-aiosmtpd dnsmasq-base openssl faketime
      clang-14 libclang-rt-14-dev clang-format-14 clang-tidy-14
      dpkg-dev lintian systemd man-db groff-base file)
if [[ "${1:-}" == "--run-only" ]]; then
  PKGS=(build-essential cmake ninja-build pkg-config
        libuv1-dev libssl-dev libc-ares-dev libyaml-cpp-dev libfmt-dev catch2 python3 python3-aiosmtpd)
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
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
