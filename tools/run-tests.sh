#!/usr/bin/env bash
# Builds dlrt and runs every test: the default build (CUDA engines compiled
# when nvcc is present; GPU tests run where a GPU is, and skip with a reason
# where not), the CPU-only build, the ASan+UBSan build (leak checks
# included), and the installed-package consumer. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
jobs=${DLRT_JOBS:-$(nproc)}

run_preset() {
  local preset=$1
  echo "=== preset $preset: configure, build, test"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
}

run_preset default
run_preset cpu-only
run_preset asan
echo "=== all test suites passed"
