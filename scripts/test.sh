#!/usr/bin/env bash
# scripts/test.sh — set up a fresh Debian 12 machine and run the whole suite twice:
# a warnings-as-errors build, then the same tests under AddressSanitizer + UBSan,
# then each libFuzzer target for a short bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"

scripts/deps.sh

run_suite() {  # run_suite NAME CMAKE_ARGS...
  local name="$1"; shift
  echo "== build: $name"
  cmake -S . -B "build/$name" -G Ninja -DSPOOLD_WERROR=ON "$@" >/dev/null
  cmake --build "build/$name" -j"$JOBS"
  echo "== test: $name"
  ctest --test-dir "build/$name" --output-on-failure -j"$JOBS" --timeout 600
}

run_suite release -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  run_suite asan -DCMAKE_BUILD_TYPE=Debug -DSPOOLD_SANITIZE=ON

# Crash points are compiled out of release builds; a third build compiles them in, only for the
# tests that kill spoold at every named step (tests/reliability/crash_test.cpp). It is an
# ASan+UBSan build, so the recovery paths a crash leads to are checked for memory errors too.
echo "== build: crash points (ASan+UBSan)"
cmake -S . -B build/crash-asan -G Ninja -DSPOOLD_WERROR=ON -DCMAKE_BUILD_TYPE=Debug -DSPOOLD_SANITIZE=ON \
  -DSPOOLD_CRASHPOINTS=ON >/dev/null
cmake --build build/crash-asan -j"$JOBS" --target spoold reliability_crash_tests
echo "== test: crash points"
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  ctest --test-dir build/crash-asan -R reliability_crash_tests --output-on-failure --timeout 900

if [[ -x fuzz/run.sh ]]; then
  echo "== fuzz"
  FUZZ_SECONDS="${FUZZ_SECONDS:-30}" fuzz/run.sh
fi
echo "== all tests passed"
