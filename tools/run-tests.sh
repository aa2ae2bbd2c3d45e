#!/usr/bin/env bash
# Builds dlrt and runs every test: the default build (CUDA engines compiled
# when nvcc is present; GPU tests run where a GPU is, and skip with a reason
# where not), the CPU-only build, the ASan+UBSan build (leak checks
# included), the ThreadSanitizer build, the installed-package consumer, and
# a bounded libFuzzer run of each fuzz target
# (DLRT_FUZZ_SECONDS, default 60). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
jobs=${DLRT_JOBS:-$(nproc)}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
total=0 skipped=0

run_preset() {
  local preset=$1
  shift
  echo "=== preset $preset: configure, build, test"
  cmake --preset "$preset" "$@" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs" | tee "$log"
  # ctest exits non-zero on any failure (and set -e stops here), so only
  # passing runs are added up.
  total=$((total + $(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -n 1)))
  skipped=$((skipped + $(grep -c '\*\*\*Skipped' "$log" || true)))
}

run_preset default
run_preset cpu-only
run_preset asan
run_preset tsan
run_preset fuzz -DDLRT_FUZZ_SECONDS="${DLRT_FUZZ_SECONDS:-60}"
echo "=== all test suites passed (tests that skip say why: no GPU here, or an engine declines the case)"
echo "total: $((total - skipped)) passed, 0 failed, $skipped skipped"
