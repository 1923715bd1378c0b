#!/usr/bin/env bash
# fuzz/run.sh — build every fuzz/*_fuzz.cpp with clang++-14 and libFuzzer (+ASan/UBSan) into
# build/fuzz/, then run each for $FUZZ_SECONDS (default 30) from its seed corpus fuzz/corpus/<target>/.
# Rule: exit 0 when no target finds anything; exit 1 on a finding (the crashing input is kept in
# build/fuzz/artifacts/); exit 0 with a message when clang++-14 or libFuzzer is not installed.
#
# Which library sources a target needs is inferred from its #include "lib/…" lines, followed
# through those libraries' own .cpp files to a fixed point (lib = a top-level folder with .cpp
# files). A target may instead list its sources itself in a line:  // fuzz-sources: a/x.cpp b/y.cpp
# Usage: fuzz/run.sh [TARGET…]      (default: every fuzz/*_fuzz.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH="${FUZZ_SECONDS:-30}"
CXX="${FUZZ_CXX:-clang++-14}"
OUT="$ROOT/build/fuzz"
FLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -I"$ROOT")
LINK_LIBS=(-lfmt -lssl -lcrypto -luv -lcares -lidn2 -lyaml-cpp -lpthread)

if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "fuzz: $CXX not found, skipping the fuzz targets" >&2
  exit 0
fi
mkdir -p "$OUT/obj" "$OUT/artifacts" "$OUT/work"
probe="$OUT/probe.cpp"
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >"$probe"
if ! "$CXX" -fsanitize=fuzzer "$probe" -o "$OUT/probe" >/dev/null 2>&1; then
  echo "fuzz: libFuzzer is not available for $CXX (install libclang-rt-14-dev), skipping" >&2
  exit 0
fi

# Libraries named by #include "lib/…" in the given files (only folders that hold .cpp files).
libs_included_by() {
  grep -ho '^#include "[a-z_]*/' "$@" 2>/dev/null | sed 's/#include "//; s#/$##' | sort -u |
    while read -r lib; do
      if [[ "$lib" != tests && "$lib" != fuzz ]] && compgen -G "$lib/*.cpp" >/dev/null; then echo "$lib"; fi
    done
}

sources_for() {  # sources_for TARGET.cpp → library .cpp files, one per line
  local target="$1" listed
  listed=$(sed -n 's#^// fuzz-sources:##p' "$target" | head -1)
  if [[ -n "$listed" ]]; then
    for s in $listed; do echo "$s"; done
    return
  fi
  local libs new files
  libs=$(libs_included_by "$target")
  while :; do
    files=$(for l in $libs; do ls "$l"/*.cpp; done)
    # shellcheck disable=SC2086
    new=$( (echo "$libs"; [[ -n "$files" ]] && libs_included_by $files $(for l in $libs; do ls "$l"/*.h 2>/dev/null; done)) | sort -u | sed '/^$/d')
    [[ "$new" == "$libs" ]] && break
    libs=$new
  done
  for l in $libs; do ls "$l"/*.cpp; done
}

compile() {  # compile SRC → prints the object path; recompiles only when SRC or a header changed
  local src="$1" obj="$OUT/obj/${1//\//_}.o"
  if [[ ! -f "$obj" || "$src" -nt "$obj" || -n "$(find "$ROOT" -path "$ROOT/build" -prune -o -name '*.h' -newer "$obj" -print -quit)" ]]; then
    "$CXX" "${FLAGS[@]}" -c "$src" -o "$obj"
  fi
  echo "$obj"
}

targets=("$@")
if ((${#targets[@]} == 0)); then
  for t in fuzz/*_fuzz.cpp; do targets+=("$(basename "$t" .cpp)"); done
fi

status=0
for name in "${targets[@]}"; do
  src="fuzz/$name.cpp"
  [[ -f "$src" ]] || { echo "fuzz: no $src" >&2; exit 2; }
  echo "== fuzz: building $name"
  objs=()
  while read -r s; do
    [[ -n "$s" ]] && objs+=("$(compile "$s")")
  done < <(sources_for "$src")
  objs+=("$(compile "$src")")
  "$CXX" "${FLAGS[@]}" "${objs[@]}" "${LINK_LIBS[@]}" -o "$OUT/$name"
  work="$OUT/work/$name"
  mkdir -p "$work"
  seeds=()
  [[ -d "fuzz/corpus/$name" ]] && seeds+=("fuzz/corpus/$name")
  echo "== fuzz: running $name for ${SECONDS_EACH}s"
  if ! ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    "$OUT/$name" "$work" "${seeds[@]}" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$OUT/artifacts/$name-" -print_final_stats=1 >"$OUT/$name.log" 2>&1; then
    echo "fuzz: $name FOUND A PROBLEM — see $OUT/$name.log and $OUT/artifacts/" >&2
    tail -40 "$OUT/$name.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_runs|^Done' "$OUT/$name.log" | tr '\n' ' ' || true
    echo
  fi
done
exit $status
