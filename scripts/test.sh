#!/usr/bin/env bash
# scripts/test.sh — set up a fresh Debian 12 machine, check formatting, and run the whole suite
# twice: a warnings-as-errors build (then clang-tidy over the library sources, from its
# compile_commands.json), then the same tests under AddressSanitizer + UBSan, then each libFuzzer
# target for a short bounded time.
# scripts/test.sh --lint: only the lint stage (clang-format, then clang-tidy; LINT_BUILD names the
# build tree whose compile_commands.json clang-tidy reads, configured here, not built).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
CLANG_FORMAT="${CLANG_FORMAT:-clang-format-14}"
CLANG_TIDY="${CLANG_TIDY:-clang-tidy-14}"
LIBRARY_DIRS=(common idna config spool dns smtp control daemon ctl)

scripts/deps.sh

# Every C++ source and header of the repository (not build trees), NUL-separated.
cxx_files() {
  find . \( -path ./.git -o -path './build*' -o -path ./.cache -o -path ./var \) -prune -o \
    -type f \( -name '*.cpp' -o -name '*.h' \) -print0 | sort -z
}

# .clang-format, every file. A few seconds.
lint_format() {
  echo "== lint: clang-format"
  if ! cxx_files | xargs -0 "$CLANG_FORMAT" --dry-run -Werror; then
    echo "lint: the files above are not formatted; fix with: $CLANG_FORMAT -i FILE..." >&2
    return 1
  fi
}

# .clang-tidy over the library sources of one configured build tree; any finding fails. Libraries
# only, not tests/ or fuzz/: the 60-odd library files cost ~10 CPU-minutes, 5-6 min on 2 idle
# cores (10.5 min with the machine also building); clang-analyzer is most of it. The tests would
# add about as much again, for code that the suite itself and ASan exercise.
# Findings in a header show under BUILD/include/<lib>/<lib>/ (cmake/SpooldLayers.cmake's links).
lint_tidy() {  # lint_tidy BUILD_DIR
  local build="$1"
  echo "== lint: clang-tidy (${LIBRARY_DIRS[*]}; $build/compile_commands.json)"
  # -Wno-unknown-warning-option: the database holds g++'s flags (-Wno-maybe-uninitialized).
  python3 - "$build/compile_commands.json" "$PWD" "${LIBRARY_DIRS[@]}" <<'PY' |
import json, os, sys
db, root, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
files = set()
for e in json.load(open(db)):
    rel = os.path.relpath(os.path.join(e["directory"], e["file"]), root)
    if rel.split(os.sep)[0] in dirs:
        files.add(rel)
sys.stdout.write("".join(f + "\0" for f in sorted(files)))
PY
    xargs -0 -r -n1 -P"$JOBS" sh -c 'out=$("$0" -p "$1" --quiet --warnings-as-errors="*" \
        --extra-arg=-Wno-unknown-warning-option "$2" 2>&1) || { printf "%s\n" "$out"; exit 1; }' \
      "$CLANG_TIDY" "$build" || { echo "lint: clang-tidy found the problems above (.clang-tidy)" >&2; return 1; }
}

if [[ "${1:-}" == "--lint" ]]; then
  lint_build="${LINT_BUILD:-build/release}"
  lint_format
  cmake -S . -B "$lint_build" -G Ninja -DSPOOLD_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  lint_tidy "$lint_build"
  echo "== lint passed"
  exit 0
fi

lint_format

run_suite() {  # run_suite NAME CMAKE_ARGS...
  local name="$1"; shift
  echo "== build: $name"
  cmake -S . -B "build/$name" -G Ninja -DSPOOLD_WERROR=ON "$@" >/dev/null
  cmake --build "build/$name" -j"$JOBS"
  echo "== test: $name"
  ctest --test-dir "build/$name" --output-on-failure -j"$JOBS" --timeout 600
}

run_suite release -DCMAKE_BUILD_TYPE=RelWithDebInfo
lint_tidy build/release
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
