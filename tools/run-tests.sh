#!/usr/bin/env bash
# Builds dlrt and runs every test: the default build (CUDA engines compiled
# when nvcc is present; GPU tests run where a GPU is, and skip with a reason
# where not), the CPU-only build, the ASan+UBSan build (leak checks
# included), the ThreadSanitizer build, the installed-package consumer, a
# bounded libFuzzer run of each fuzz target (DLRT_FUZZ_SECONDS, default 60),
# and, where nvcc is, the resource check of the fast Cuda kernels
# (tools/check-cuda-resources.sh) and the dry run of the GPU suite
# (tools/gpu-suite.sh --dry-run on the default build's binaries). CI runs
# exactly this.
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

# tools/check-cuda-resources.sh on the default build's flags: no spills,
# LDS.128 in variant 3, HMMA in variant 4. It reads the SASS with cuobjdump
# and nvdisasm, which it installs from NVIDIA's pip wheels when the toolkit
# lacks them; where they are missing and cannot be installed (no network, a
# Python that refuses pip), the check is skipped with the reason instead of
# failing. A check that runs and fails fails the suite.
resource_check="not run"
sass_tool() {  # where check-cuda-resources.sh will find `tool`, or nothing
  local tool=$1 nvcc=$2
  command -v "$tool" && return
  [[ -x $(dirname "$nvcc")/$tool ]] && { echo "$(dirname "$nvcc")/$tool"; return; }
  python3 - "$tool" <<'EOF' 2>/dev/null || true
import glob, os, site, sys
for base in site.getsitepackages() + [site.getusersitepackages()]:
    for path in glob.glob(os.path.join(base, "nvidia", "cu*", "bin", sys.argv[1])):
        print(path)
        raise SystemExit
EOF
}
have_sass_tools() { [[ -n $(sass_tool cuobjdump "$1") && -n $(sass_tool nvdisasm "$1") ]]; }
run_cuda_resource_check() {
  local nvcc build=build/default major pip_log
  nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  if [[ ! -x $nvcc ]]; then
    resource_check="skipped: no nvcc"
    echo "=== cuda resource check: $resource_check"
    return
  fi
  if ! have_sass_tools "$nvcc"; then
    major=$("$nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    echo "=== cuda resource check: installing NVIDIA's cuobjdump and nvdisasm ${major}.x with pip"
    pip_log=$(python3 -m pip install --quiet --disable-pip-version-check --retries 1 --timeout 20 \
      "nvidia-cuda-cuobjdump>=${major}.0,<$((major + 1)).0" \
      "nvidia-cuda-nvdisasm>=${major}.0,<$((major + 1)).0" 2>&1) || true
    if ! have_sass_tools "$nvcc"; then
      resource_check="skipped: the CUDA toolkit has no cuobjdump/nvdisasm and pip could not install them (no network?): $(tail -n 1 <<<"$pip_log")"
      echo "=== cuda resource check: $resource_check"
      return
    fi
  fi
  echo "=== cuda resource check: tools/check-cuda-resources.sh"
  # The build's include paths and defines, where the default build compiled CUDA.
  if grep -q '\.cu"' "$build/compile_commands.json" 2>/dev/null; then
    NVCC=$nvcc tools/check-cuda-resources.sh "$build"
  else
    NVCC=$nvcc tools/check-cuda-resources.sh
  fi
  resource_check="passed"
}

# tools/gpu-suite.sh --dry-run: bundles the default build's binaries as a
# GPU machine receives them (no rebuild), resolves the CUDA libraries against
# a fake layout of NVIDIA's Python wheels, runs the tests, the quick
# benchmarks, the sanitizer plumbing and the report, and checks the suite's
# rules (about 20 s). Where the default build has no CUDA engines there is
# nothing to bundle, and it says so.
gpu_suite_dry_run="not run"
run_gpu_suite_dry_run() {
  if ! grep -q '^DLRT_WITH_CUDA:BOOL=ON' build/default/CMakeCache.txt 2>/dev/null; then
    gpu_suite_dry_run="skipped: the default build has no CUDA engines (no nvcc)"
    echo "=== gpu suite dry run: $gpu_suite_dry_run"
    return
  fi
  echo "=== gpu suite dry run: tools/gpu-suite.sh --dry-run"
  DLRT_SUITE_DRY_RUN_FROM=build/default tools/gpu-suite.sh --dry-run
  gpu_suite_dry_run="passed"
}

run_preset default
run_cuda_resource_check
run_gpu_suite_dry_run
run_preset cpu-only
run_preset asan
run_preset tsan
run_preset fuzz -DDLRT_FUZZ_SECONDS="${DLRT_FUZZ_SECONDS:-60}"
echo "=== all test suites passed (tests that skip say why: no GPU here, or an engine declines the case)"
echo "total: $((total - skipped)) passed, 0 failed, $skipped skipped"
echo "cuda resource check: $resource_check"
echo "gpu suite dry run: $gpu_suite_dry_run"
