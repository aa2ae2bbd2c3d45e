#!/usr/bin/env bash
# The whole suite on a machine with an NVIDIA GPU, in one command:
#
#   tools/gpu-suite.sh            (or: OUT=/some/dir tools/gpu-suite.sh)
#
#  1. configures and builds dlrt (Release, DLRT_WITH_CUDA=ON, the CUDA
#     architecture of the local GPU from nvidia-smi, else 90) — or, when
#     .gpu-bundle/dlrt-gpu-bundle.tar.xz is there (tools/gpu-bundle.sh makes
#     it on a machine with the Debian packages), unpacks those prebuilt
#     binaries and their libraries instead, for machines that lack OpenBLAS,
#     GoogleTest or Google Benchmark;
#  2. runs every test (ctest);
#  3. runs dlrt_bench_conv and dlrt_bench_pool on the shape tables, time-boxed;
#  4. runs the GPU tests (names with "Cuda" or "Cudnn") under compute-sanitizer
#     memcheck and racecheck, when compute-sanitizer is found;
#  5. writes to $OUT (default ./gpu-suite-out): report.md (suite summary and
#     benchmark tables), ratios.png, the benchmark JSON files and logs.tar.gz
#     (configure, build, test, sanitizer and benchmark logs).
#
# The default run fits in about 9 minutes on an H100, build included.
# Environment:
#   OUT                    output folder (default ./gpu-suite-out)
#   DLRT_SUITE_BUILD_DIR   build folder (default <repo>/build/gpu-suite)
#   DLRT_SUITE_BUDGET_S    the time box in seconds (default 540; 3600 when full)
#   DLRT_SUITE_FULL=1      benchmarks on every table with 5 repetitions and the
#                          default CPU caps, not time-boxed (takes longer)
#   DLRT_CUDA_ARCH         CUDA architecture (default: from nvidia-smi, else 90)
#   CUDNN_ROOT             where cuDNN 9 is (default: the CUDA toolkit, else the
#                          nvidia-cudnn Python wheel)
#   DLRT_SUITE_CMAKE_ARGS  extra CMake arguments (word-split)
#   DLRT_SUITE_ALLOW_NO_GPU=1  run without a GPU (to try the script itself)
#   DLRT_SUITE_BUNDLE      the prebuilt bundle (default <repo>/.gpu-bundle/dlrt-gpu-bundle.tar.xz)
#   DLRT_SUITE_BUILD=1     build here even when a bundle is present
# Exit status: 0 when the build, every test and every sanitizer run passed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
OUT=${OUT:-$PWD/gpu-suite-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
build=${DLRT_SUITE_BUILD_DIR:-$root/build/gpu-suite}
full=${DLRT_SUITE_FULL:-0}
budget=${DLRT_SUITE_BUDGET_S:-$([[ $full == 1 ]] && echo 3600 || echo 540)}
jobs=$(nproc 2> /dev/null || echo 4)

logs=$(mktemp -d "${TMPDIR:-/tmp}/dlrt-gpu-suite.XXXXXX")
summary=$logs/summary.md
t_start=$(date +%s)
failed=0

# Only the files named here stay in $OUT: leftovers of an earlier run go.
rm -f "$OUT"/report.md "$OUT"/ratios.png "$OUT"/bench-*.json "$OUT"/logs.tar.gz

elapsed() { echo $(( $(date +%s) - t_start )); }
remaining() { echo $(( budget - $(elapsed) )); }
note() { echo "- [$(printf '%4d' "$(elapsed)") s] $*" | tee -a "$summary"; }
finish() {
  tar -czf "$OUT/logs.tar.gz" -C "$logs" . 2> /dev/null
  rm -rf "$logs"
}
trap finish EXIT

echo "## Suite" > "$summary"
echo >> "$summary"
note "dlrt GPU suite started in $root, output in $OUT, time box ${budget} s (full=$full)"

# ---- the machine ------------------------------------------------------------
gpu_name="no-gpu"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi > "$logs/nvidia-smi.txt" 2>&1
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -n1)
  note "GPU: $gpu_name, driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2> /dev/null | head -n1)"
elif [[ ${DLRT_SUITE_ALLOW_NO_GPU:-0} != 1 ]]; then
  note "no nvidia-smi: this script needs a machine with an NVIDIA GPU (DLRT_SUITE_ALLOW_NO_GPU=1 to try it anyway)"
  exit 1
else
  note "no nvidia-smi; going on without a GPU (DLRT_SUITE_ALLOW_NO_GPU=1)"
fi

arch=${DLRT_CUDA_ARCH:-}
if [[ -z $arch ]] && command -v nvidia-smi > /dev/null; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -n1 | tr -d ' .')
  [[ $cap =~ ^[0-9]+$ ]] && arch=$cap
fi
arch=${arch:-90}

nvcc=$(command -v nvcc || true)
for candidate in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
  [[ -z $nvcc && -n $candidate && -x $candidate/bin/nvcc ]] && nvcc=$candidate/bin/nvcc
done
if [[ -z $nvcc ]]; then
  note "no nvcc found (PATH, CUDA_HOME, /usr/local/cuda): the CUDA toolkit is needed"
  exit 1
fi
cuda_home=$(cd "$(dirname "$nvcc")/.." && pwd)
export PATH=$cuda_home/bin:$PATH
"$nvcc" --version > "$logs/nvcc-version.txt" 2>&1
note "nvcc: $nvcc ($(grep -o 'release [0-9.]*' "$logs/nvcc-version.txt" | head -n1)), CUDA architecture $arch"

# cuDNN (and, if the toolkit lacks it, cuBLAS) may come from NVIDIA's Python
# wheels: site-packages/nvidia/cudnn/{include,lib}.
python=$(command -v python3 || true)
wheel_dir() {  # $1: module under nvidia (cudnn, cublas, cu13), $2: a header it must hold
  [[ -n $python ]] || return 0
  "$python" - "$1" "$2" << 'EOF' 2> /dev/null
import glob, os, site, sys
name, header = sys.argv[1], sys.argv[2]
roots = []
try:
    import importlib
    mod = importlib.import_module("nvidia." + name)
    roots += list(getattr(mod, "__path__", []))
    if getattr(mod, "__file__", None):
        roots.append(os.path.dirname(mod.__file__))
except Exception:
    pass
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    roots += glob.glob(os.path.join(sp, "nvidia", name))
for r in roots:
    if os.path.exists(os.path.join(r, "include", header)):
        print(r)
        break
EOF
}
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DDLRT_WITH_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch"
            "-DCMAKE_CUDA_COMPILER=$nvcc")
cudnn_source="the CUDA toolkit"
if [[ -n ${CUDNN_ROOT:-} ]]; then
  cmake_args+=("-DCUDNN_ROOT=$CUDNN_ROOT")
  cudnn_source="CUDNN_ROOT=$CUDNN_ROOT"
  export LD_LIBRARY_PATH=$CUDNN_ROOT/lib:$CUDNN_ROOT/lib64:${LD_LIBRARY_PATH:-}
elif ! compgen -G "$cuda_home/include/cudnn.h" > /dev/null && ! compgen -G "/usr/include/cudnn.h" > /dev/null \
     && ! compgen -G "/usr/include/*/cudnn.h" > /dev/null; then
  wheel=$(wheel_dir cudnn cudnn.h)
  if [[ -n $wheel ]]; then
    lib=$(ls "$wheel"/lib/libcudnn.so "$wheel"/lib/libcudnn.so.[0-9]* 2> /dev/null | head -n1)
    cmake_args+=("-DCUDNN_ROOT=$wheel" "-DCUDNN_INCLUDE_DIR=$wheel/include" "-DCUDNN_LIBRARY=$lib")
    export LD_LIBRARY_PATH=$wheel/lib:${LD_LIBRARY_PATH:-}
    cudnn_source="Python wheel at $wheel ($lib)"
  else
    cudnn_source="not found (neither under $cuda_home nor as a Python wheel)"
  fi
fi
note "cuDNN: $cudnn_source"
if ! compgen -G "$cuda_home/lib64/libcublas.so*" > /dev/null \
   && ! compgen -G "$cuda_home/targets/*/lib/libcublas.so*" > /dev/null; then
  for module in cublas cu13 cu12; do
    wheel=$(wheel_dir "$module" cublas_v2.h)
    if [[ -n $wheel ]]; then
      cublas=$(ls "$wheel"/lib/libcublas.so "$wheel"/lib/libcublas.so.[0-9]* 2> /dev/null | head -n1)
      cublaslt=$(ls "$wheel"/lib/libcublasLt.so "$wheel"/lib/libcublasLt.so.[0-9]* 2> /dev/null | head -n1)
      cmake_args+=("-DCUDA_cublas_LIBRARY=$cublas" "-DCUDA_cublasLt_LIBRARY=$cublaslt")
      export CPATH=$wheel/include:${CPATH:-}
      export LD_LIBRARY_PATH=$wheel/lib:${LD_LIBRARY_PATH:-}
      note "cuBLAS: Python wheel at $wheel"
      break
    fi
  done
fi
if [[ -n ${DLRT_SUITE_CMAKE_ARGS:-} ]]; then
  read -r -a user_args <<< "$DLRT_SUITE_CMAKE_ARGS"
  cmake_args+=("${user_args[@]}")
fi

# ---- prebuilt bundle, or configure and build ----------------------------------
bundle=${DLRT_SUITE_BUNDLE:-$root/.gpu-bundle/dlrt-gpu-bundle.tar.xz}
if [[ -f $bundle && ${DLRT_SUITE_BUILD:-0} != 1 ]]; then
  bundle_dir=$build/bundle
  rm -rf "$bundle_dir" && mkdir -p "$bundle_dir"
  if ! tar -xJf "$bundle" -C "$bundle_dir"; then
    note "could not unpack the bundle $bundle"
    exit 1
  fi
  # The bundle's own libraries first; CUDA's from the toolkit (or the wheels
  # found above).
  export LD_LIBRARY_PATH=$bundle_dir/lib:$cuda_home/lib64:$cuda_home/lib:${LD_LIBRARY_PATH:-}
  for module in cuda_runtime cublas cudnn cu13; do
    wheel=$(wheel_dir "$module" "" 2> /dev/null)
    [[ -n $wheel && -d $wheel/lib ]] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$wheel/lib
  done
  bundle_arch=$(cat "$bundle_dir/ARCH" 2> /dev/null || echo unknown)
  note "using the prebuilt bundle $bundle (commit $(cat "$bundle_dir/COMMIT" 2> /dev/null), $bundle_arch; this GPU: sm_$arch)"
  [[ $bundle_arch != "sm_$arch" ]] && note "WARNING: the bundle was built for $bundle_arch, this GPU is sm_$arch"
  missing=$(LD_LIBRARY_PATH=$LD_LIBRARY_PATH ldd "$bundle_dir/bin/dlrt_tests" | grep 'not found' | awk '{print $1}' | tr '\n' ' ')
  [[ -n $missing ]] && note "WARNING: libraries not found for the bundle: $missing"
  test_binaries=("$bundle_dir/bin/dlrt_tests" "$bundle_dir/bin/dlrt_internal_tests")
  bench_dir=$bundle_dir/bin
else
  generator=()
  command -v ninja > /dev/null && generator=(-G Ninja)
  configure() {
    cmake -S "$root" -B "$build" "${generator[@]}" "${cmake_args[@]}" "$@" >> "$logs/configure.log" 2>&1
  }
  t0=$(date +%s)
  disabled=()
  configured=0
  for attempt in 1 2 3 4 5; do
    echo "== attempt $attempt: ${disabled[*]:-}" >> "$logs/configure.log"
    if configure ${disabled[@]+"${disabled[@]}"}; then
      configured=1
      break
    fi
    # A build folder from another generator or toolkit: start it afresh once.
    if [[ $attempt == 1 && -f $build/CMakeCache.txt ]]; then
      rm -rf "$build"
      continue
    fi
    # Optional parts whose third-party package is missing here are turned off,
    # and the summary says so.
    if grep -q 'Could not find a package configuration file provided by "benchmark"' "$logs/configure.log" \
       && [[ " ${disabled[*]:-} " != *DLRT_BUILD_BENCHMARKS* ]]; then
      disabled+=(-DDLRT_BUILD_BENCHMARKS=OFF)
      note "Google Benchmark not found: building without the benchmarks"
    elif grep -q 'Could NOT find GTest' "$logs/configure.log" && [[ " ${disabled[*]:-} " != *DLRT_BUILD_TESTS* ]]; then
      disabled+=(-DDLRT_BUILD_TESTS=OFF)
      note "GoogleTest not found: building without the tests"
    elif grep -q 'Could NOT find PNG' "$logs/configure.log" \
         && [[ " ${disabled[*]:-} " != *DLRT_BUILD_EXAMPLES* ]]; then
      disabled+=(-DDLRT_BUILD_EXAMPLES=OFF)
      note "libpng not found: building without the examples"
    else
      break
    fi
  done
  if [[ $configured != 1 ]]; then
    note "configure FAILED ($(( $(date +%s) - t0 )) s); see configure.log in logs.tar.gz"
    tail -n 30 "$logs/configure.log"
    exit 1
  fi
  note "configured in $(( $(date +%s) - t0 )) s: ${cmake_args[*]} ${disabled[*]:-}"

  t0=$(date +%s)
  if ! timeout "$(( $(remaining) > 60 ? $(remaining) : 60 ))" \
      cmake --build "$build" -j "$jobs" > "$logs/build.log" 2>&1; then
    note "build FAILED or timed out ($(( $(date +%s) - t0 )) s); see build.log"
    grep -E 'error|FAILED' "$logs/build.log" | head -n 20
    exit 1
  fi
  note "built in $(( $(date +%s) - t0 )) s ($(grep -c -i 'warning' "$logs/build.log") warning lines in build.log)"

  test_binaries=("$build/tests/dlrt_tests" "$build/tests/dlrt_internal_tests")
  bench_dir=$build/bench
fi

have_sanitizer=0
command -v compute-sanitizer > /dev/null && have_sanitizer=1
# What the later steps keep for themselves: sanitizers and the report.
sanitizer_reserve=$(( have_sanitizer ? 150 : 0 ))

# ---- tests ---------------------------------------------------------------
if [[ -n ${bundle_dir:-} ]]; then
  # The bundle has no CTest files: run the test binaries themselves.
  for b in "${test_binaries[@]}"; do
    name=$(basename "$b")
    t0=$(date +%s)
    cap=$(( ($(remaining) - sanitizer_reserve - 150) / 2 ))
    (( cap < 120 )) && cap=120
    timeout "$cap" "$b" --gtest_output="xml:$logs/$name.xml" > "$logs/$name.log" 2>&1
    rc=$?
    line=$(grep -E '^\[  (PASSED|FAILED) *\]|^\[  SKIPPED \] [0-9]+ test' "$logs/$name.log" | tr '\n' ' ')
    if [[ $rc == 0 ]]; then
      note "$name passed in $(( $(date +%s) - t0 )) s: $line"
    else
      failed=1
      note "$name FAILED (status $rc) in $(( $(date +%s) - t0 )) s: $line"
      grep -E '^\[  FAILED  \] [A-Za-z]' "$logs/$name.log" | head -n 40 | sed 's/^/    /' | tee -a "$summary"
    fi
  done
elif [[ -f $build/CTestTestfile.cmake ]]; then
  t0=$(date +%s)
  cap=$(( $(remaining) - sanitizer_reserve - 150 ))
  (( cap < 120 )) && cap=120
  timeout "$cap" ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 300 \
    --output-junit "$logs/ctest-junit.xml" > "$logs/ctest.log" 2>&1
  rc=$?
  line=$(grep -E 'tests passed|tests failed' "$logs/ctest.log" | tail -n1)
  if [[ $rc == 0 ]]; then
    note "ctest passed in $(( $(date +%s) - t0 )) s: $line"
  else
    failed=1
    [[ $rc == 124 ]] && line="time-boxed at $cap s; $line"
    note "ctest FAILED (status $rc) in $(( $(date +%s) - t0 )) s: $line"
    grep -E '^\s*[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)' "$logs/ctest.log" \
      | head -n 40 | sed 's/^/    /' | tee -a "$summary"
  fi
else
  note "no tests in this build"
fi

# ---- benchmarks ------------------------------------------------------------------
bench_files=()
if [[ -x $bench_dir/dlrt_bench_conv && -x $bench_dir/dlrt_bench_pool ]]; then
  if [[ $full == 1 ]]; then
    flags=(--benchmark_repetitions=5)
  else
    # Three repetitions of at least 10 ms each; CPU engines on a subset.
    flags=(--benchmark_repetitions=3 --benchmark_min_time=0.01
           --dlrt_cpu_max_gflop=2 --dlrt_reference_max_gflop=0.1 --dlrt_cpu_max_mb=512)
  fi
  # Most telling first, so that a time box cuts the tail of the largest table.
  # The fourth field is the Cuda conv variant the run asks for: ResNet-50
  # times the fast kernels (variant 3, which the engine's own rule does not
  # pick until a GPU run has verified them) next to Cudnn; DeepBench the
  # engine's own rule.
  runs=("conv resnet50 0.35 3" "pool cnn 0.2 0" "conv deepbench 1.0 0")
  t_bench=$(date +%s)
  bench_budget=$(( $(remaining) - sanitizer_reserve - 20 ))
  (( bench_budget < 60 )) && bench_budget=60
  if [[ $full == 1 ]]; then
    note "benchmarks: every table, not time-boxed (flags: ${flags[*]})"
  else
    note "benchmarks: ${bench_budget} s in all (flags: ${flags[*]})"
  fi
  for run in "${runs[@]}"; do
    read -r family table share variant <<< "$run"
    export DLRT_CUDA_CONV2D_VARIANT=$variant
    [[ $variant != 0 ]] && note "bench $family/$table: DLRT_CUDA_CONV2D_VARIANT=$variant"
    left=$(( bench_budget - ($(date +%s) - t_bench) ))
    cap=$(awk -v l="$left" -v s="$share" 'BEGIN { c = int(l * s); print (c < 20 ? 20 : c) }')
    file=$OUT/bench-$family-$table.json
    t0=$(date +%s)
    if [[ $full == 1 ]]; then
      "$bench_dir/dlrt_bench_$family" --dlrt_shapes_dir="$root/bench/shapes" --dlrt_tables="$table" "${flags[@]}" \
        --benchmark_out="$file" --benchmark_out_format=json > "$logs/bench-$family-$table.log" 2>&1
      rc=$?
    else
      timeout "$cap" "$bench_dir/dlrt_bench_$family" --dlrt_shapes_dir="$root/bench/shapes" --dlrt_tables="$table" "${flags[@]}" \
        --benchmark_out="$file" --benchmark_out_format=json > "$logs/bench-$family-$table.log" 2>&1
      rc=$?
    fi
    case $rc in
      0) note "bench $family/$table: done in $(( $(date +%s) - t0 )) s" ;;
      124) note "bench $family/$table: time-boxed at $cap s (the report keeps the cases that finished)" ;;
      *) note "bench $family/$table: exit status $rc after $(( $(date +%s) - t0 )) s; see its log" ;;
    esac
    [[ -s $file ]] && bench_files+=("$file")
  done
  unset DLRT_CUDA_CONV2D_VARIANT
else
  note "no benchmark binaries in this build: no benchmarks"
fi

# ---- compute-sanitizer ----------------------------------------------------
if [[ $have_sanitizer == 1 ]]; then
  compute-sanitizer --version > "$logs/compute-sanitizer-version.txt" 2>&1
  binaries=()
  for b in "${test_binaries[@]}"; do
    [[ -x $b ]] && binaries+=("$b")
  done
  # memcheck on every GPU test; racecheck (shared-memory hazards, slow) on
  # dlrt's own kernels, the "Cuda" tests.
  checks=()
  for b in ${binaries[@]+"${binaries[@]}"}; do
    checks+=("memcheck $b *Cuda*:*Cudnn*" "racecheck $b *Cuda*")
  done
  for i in "${!checks[@]}"; do
    read -r tool binary filter <<< "${checks[$i]}"
    name=$(basename "$binary")
    left=$(( $(remaining) - 15 ))
    cap=$(( left / (${#checks[@]} - i) ))
    (( cap > 240 )) && cap=240
    (( cap < 30 )) && cap=30
    t0=$(date +%s)
    log=$logs/sanitizer-$tool-$name.log
    timeout "$cap" compute-sanitizer --tool "$tool" --error-exitcode 99 \
      "$binary" "--gtest_filter=$filter" > "$log" 2>&1
    rc=$?
    errors=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -n1)
    tests=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ tests?' "$log" | sed -E 's/^(\[[^]]*\] [0-9]+ tests?).*/\1/' \
      | tr '\n' ' ')
    case $rc in
      0) note "compute-sanitizer $tool on $name ($filter): clean in $(( $(date +%s) - t0 )) s; $errors; $tests" ;;
      124) note "compute-sanitizer $tool on $name ($filter): time-boxed at $cap s; $errors" ;;
      *) failed=1
         note "compute-sanitizer $tool on $name ($filter): FAILED (status $rc); $errors; $tests" ;;
    esac
  done
else
  note "compute-sanitizer not found on PATH or in $cuda_home/bin: no sanitizer runs"
fi

# ---- report ---------------------------------------------------------------
report_body=$logs/bench-report.md
if (( ${#bench_files[@]} > 0 )) && [[ -n $python ]]; then
  "$python" "$here/bench_report" --title "Benchmarks" --out "$report_body" \
    --plot "$OUT/ratios.png" "${bench_files[@]}" > /dev/null 2> "$logs/report.log"
  grep -q 'matplotlib is not installed' "$logs/report.log" \
    && note "no ratios.png: matplotlib is not installed for $python"
fi
note "suite finished in $(elapsed) s; status: $([[ $failed == 0 ]] && echo passed || echo FAILED)"

slug=$(echo "$gpu_name" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')
{
  echo "# dlrt GPU suite: $(date -u +%Y-%m-%d), $gpu_name"
  echo
  echo "Commit: $(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2> /dev/null || echo ' (with local changes)')."
  echo "Record it as docs/results/$(date -u +%Y-%m-%d)-$slug.md (see docs/results/README.md)."
  echo
  cat "$summary"
  echo
  if [[ -s $report_body ]]; then
    sed 's/^#/##/' "$report_body"
  else
    echo "No benchmark report (see logs.tar.gz)."
  fi
} > "$OUT/report.md"
echo
echo "gpu-suite: results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
exit $failed
