#!/usr/bin/env bash
# The whole GPU suite on a machine with an NVIDIA GPU, in one command:
#
#   tools/gpu-suite.sh              (or: OUT=/some/dir tools/gpu-suite.sh)
#   tools/gpu-suite.sh --dry-run    (or DLRT_SUITE_DRY_RUN=1): every step that can
#                                   run on a machine without a GPU; see below
#
#  1. the binaries: the prebuilt bundle .gpu-bundle/dlrt-gpu-bundle.tar.xz
#     (tools/gpu-bundle.sh makes it), which needs no compiler; without a
#     bundle, or when it does not load here (a glibc older than the one it
#     was built against), a build from source (Release, DLRT_WITH_CUDA=ON, the
#     local GPU's architecture) where nvcc, OpenBLAS and GoogleTest are;
#  2. the CUDA libraries the binaries load (cudart, cuBLAS, cuBLASLt, cuDNN),
#     from CUDNN_ROOT, the CUDA toolkit, the loader's cache or NVIDIA's Python
#     wheels (located with python3, both the nvidia/cudnn/lib and the
#     nvidia/cu13/lib layouts), the bundle's cudart last. They and the
#     bundle's lib/ go on LD_LIBRARY_PATH only in the environment of dlrt's
#     own binaries, never for the rest of this script (python3 and
#     compute-sanitizer run with the machine's own libraries);
#  3. a probe of cuda_available() through the test binary; a GPU that
#     nvidia-smi lists but dlrt cannot use fails the suite, loudly;
#  4. every test (dlrt_tests, dlrt_internal_tests), and again with the
#     devices hidden, to learn which tests need a GPU: any of those that
#     skips for lack of a device on a machine with a GPU fails the suite;
#  5. the benchmarks (conv ResNet-50, pool, RNN small-batch, conv DeepBench),
#     time-boxed;
#  6. compute-sanitizer memcheck and racecheck on the GPU tests, where the
#     device allows it (a sandbox that refuses it, e.g. gVisor, is reported
#     as "sanitizer unavailable", not as a failure);
#  7. $OUT (default ./gpu-suite-out): report.md (the summary table, each
#     step's notes, the benchmark tables), ratios.png, bench-*.json and
#     logs.tar.gz; the summary table is also the last thing printed.
#
# NVIDIA_TF32_OVERRIDE=0 holds for every run. The default time box is 390 s
# in all: the tests come first, the benchmarks and the sanitizers share
# what they leave (a build from source eats into that). docs/gpu-suite.md
# describes the bundle, each step and the table.
#
# The dry run (no GPU needed, about 20 s): makes a bundle from an existing
# build (DLRT_SUITE_DRY_RUN_FROM, default build/default; xz -0) or
# takes DLRT_SUITE_BUNDLE, unpacks it, resolves the CUDA libraries against a
# fake wheel layout (site-packages/nvidia/cudnn/lib and nvidia/cu13/lib
# holding links to this toolkit's libraries, found by the same python3
# locator through a python3 shim), checks that the binaries load from it,
# runs the probe, the tests (GPU tests skip, as DLRT_SUITE_ALLOW_NO_GPU=1
# allows), the benchmarks on the quick tables with a tiny time box, the
# sanitizer plumbing through a pass-through stand-in, self-tests of the
# verdict rules, and the report. It exits 0 only when every step worked.
#
# Environment:
#   OUT                    output folder (default ./gpu-suite-out; dry run:
#                          build/gpu-suite-dry-run/out)
#   DLRT_SUITE_BUNDLE      the bundle (default .gpu-bundle/dlrt-gpu-bundle.tar.xz or .tar.gz)
#   DLRT_SUITE_BUILD=1     build from source even when a bundle is present
#   DLRT_SUITE_BUILD_DIR   work folder: unpacked bundle, build (default build/gpu-suite;
#                          dry run: build/gpu-suite-dry-run)
#   DLRT_SUITE_BUDGET_S    the time box in seconds (default 390; dry run 120;
#                          3600 with DLRT_SUITE_FULL=1)
#   DLRT_SUITE_FULL=1      benchmarks on every table with 5 repetitions and the
#                          default CPU caps, not time-boxed (takes longer)
#   DLRT_SUITE_ALLOW_NO_GPU=1  go on where no GPU is listed (GPU tests then skip)
#   DLRT_SUITE_PYTHON      interpreters searched for NVIDIA's wheels (default:
#                          python3 on PATH, /usr/bin/python3, /opt/conda/bin/python3)
#   DLRT_SUITE_SANITIZER   compute-sanitizer to use (default: PATH, the toolkit, the wheels)
#   DLRT_SUITE_DRY_RUN_FROM  the build the dry run bundles (default build/default)
#   DLRT_CUDA_ARCH         CUDA architecture for a build (default: from nvidia-smi, else 90)
#   CUDNN_ROOT             where cuDNN 9 is (searched first)
#   DLRT_SUITE_CMAKE_ARGS  extra CMake arguments for a build (word-split)
# Exit status: 0 when every test passed, dlrt used the GPU that is there,
# no GPU test skipped for lack of a device and no sanitizer found an error
# (dry run: when every step worked); 1 otherwise.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
dry_run=${DLRT_SUITE_DRY_RUN:-0}
for arg in "$@"; do
  case $arg in
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-suite: unknown argument '$arg' (--dry-run, --help)" >&2; exit 2 ;;
  esac
done
[[ $dry_run == 1 ]] && allow_no_gpu=1 || allow_no_gpu=${DLRT_SUITE_ALLOW_NO_GPU:-0}
if [[ $dry_run == 1 ]]; then
  work=${DLRT_SUITE_BUILD_DIR:-$root/build/gpu-suite-dry-run}
  OUT=${OUT:-$work/out}
else
  work=${DLRT_SUITE_BUILD_DIR:-$root/build/gpu-suite}
  OUT=${OUT:-$PWD/gpu-suite-out}
fi
mkdir -p "$OUT" "$work"
OUT=$(cd "$OUT" && pwd)
work=$(cd "$work" && pwd)
full=${DLRT_SUITE_FULL:-0}
if [[ $full == 1 ]]; then
  budget=${DLRT_SUITE_BUDGET_S:-3600}
elif [[ $dry_run == 1 ]]; then
  budget=${DLRT_SUITE_BUDGET_S:-120}
else
  budget=${DLRT_SUITE_BUDGET_S:-390}
fi
jobs=$(nproc 2> /dev/null || echo 4)

# Never exported: dlrt's binaries get their library path from run_dlrt.
original_ld_path=${LD_LIBRARY_PATH-}
export NVIDIA_TF32_OVERRIDE=0

logs=$(mktemp -d "${TMPDIR:-/tmp}/dlrt-gpu-suite.XXXXXX")
summary=$logs/summary.md
t_start=$(date +%s)
failures=()     # what fails the suite, one line each
rows=()         # the summary table: "check|result"
dry_steps=()    # dry run: "step|ok or FAILED|detail"

# Only the files named here stay in $OUT: leftovers of an earlier run go.
rm -f "$OUT"/report.md "$OUT"/ratios.png "$OUT"/bench-*.json "$OUT"/logs.tar.gz

elapsed() { echo $(( $(date +%s) - t_start )); }
remaining() { echo $(( budget - $(elapsed) )); }
note() { echo "- [$(printf '%4d' "$(elapsed)") s] $*" | tee -a "$summary"; }
fail() { failures+=("$*"); note "FAILED: $*"; }
row() { rows+=("$1|$2"); }
dry_step() {  # name, 0 (worked) or not, detail
  local status=ok
  [[ $2 == 0 ]] || status=FAILED
  dry_steps+=("$1|$status|$3")
  [[ $dry_run == 1 ]] && note "dry run, $1: $status ($3)"
}
finish() {
  tar -czf "$OUT/logs.tar.gz" -C "$logs" . 2> /dev/null
  rm -rf "$logs"
}
trap finish EXIT

# ---- rules, kept apart so that the dry run can test them -------------------

# A skip whose reason is a missing device (texts of tests/support's
# engine_unavailable and of the tests that place tensors on a GPU).
device_skip_re='no CUDA device|built without CUDA|DLRT_WITH_CUDA=OFF|needs a CUDA device|needs a GPU|no usable GPU|no GPU[^-]|no GPU$'
# compute-sanitizer refusing the device or the process (sandboxes such as
# gVisor, drivers it does not support).
sanitizer_refusal_re='[Dd]evice not supported|not supported on this (device|platform|system)|[Uu]nable to access|cuInit failed|CUDA_ERROR_NOT_SUPPORTED|CUDA_ERROR_NO_DEVICE|[Ff]ailed to (initialize|launch|attach|create)|[Uu]nable to (initialize|launch|attach)|Target application terminated before first instrumented API call|[Uu]nsupported (device|driver|GPU)|no CUDA-capable device|[Ii]nsufficient driver|ptrace'

# ok | allowed | fail: GPU listed?, cuda_available()?, GPU tests skipped
# for lack of a device, no-GPU runs allowed?
device_verdict() {
  local gpu_seen=$1 cuda_ok=$2 device_skips=$3 allow=$4
  if [[ $gpu_seen == 1 ]]; then
    if [[ $cuda_ok != 1 ]]; then echo fail; elif (( device_skips > 0 )); then echo fail; else echo ok; fi
  elif [[ $allow == 1 ]]; then
    echo allowed
  else
    echo fail
  fi
}

# clean | errors | unavailable | time-boxed | failed, from a sanitizer log and status.
sanitizer_verdict() {
  local log=$1 rc=$2 errors
  errors=$(grep -oE '(ERROR SUMMARY: [0-9]+ error|\(([0-9]+) errors?,)' "$log" | grep -oE '[0-9]+' | tail -n1)
  # The tool's own lines start with "========="; other text counts only where
  # no test ran at all (a refusal before the program started).
  if [[ -n $errors && $errors != 0 ]] || [[ $rc == 99 ]]; then
    echo errors
  elif grep -qE "^=+ .*($sanitizer_refusal_re)" "$log" \
       || { ! grep -q '^\[==========\]' "$log" && grep -qE "$sanitizer_refusal_re" "$log"; }; then
    echo unavailable
  elif [[ $rc == 124 || $rc == 137 ]]; then
    echo time-boxed
  elif [[ $rc == 0 ]] && grep -qE 'ERROR SUMMARY|RACECHECK SUMMARY' "$log"; then
    echo clean
  elif [[ $rc == 0 ]]; then
    echo unavailable  # ran, but the tool said nothing: nothing was checked
  else
    echo failed
  fi
}

# A gtest log as lines NAME<TAB>OK|FAILED|SKIPPED|CRASHED<TAB>skip message.
gtest_results() {
  awk '
    function flush(status) { print cur "\t" status "\t" msg; cur = ""; msg = ""; inskip = 0 }
    function name_of(field) { sub(/,$/, "", field); return field }
    /^\[ RUN      \] / { if (cur != "") flush("CRASHED"); cur = name_of($4); next }
    /^\[       OK \] / { if (cur != "" && name_of($4) == cur) flush("OK"); next }
    /^\[  FAILED  \] / { if (cur != "" && name_of($4) == cur) flush("FAILED"); next }
    /^\[  SKIPPED \] / { if (cur != "" && name_of($4) == cur) flush("SKIPPED"); next }
    cur != "" && /: Skipped$/ { inskip = 1; next }
    cur != "" && inskip { gsub(/\t/, " "); msg = msg (msg == "" ? "" : " ") $0; next }
    END { if (cur != "") flush("CRASHED") }
  ' "$@"
}

# ---- the machine ----------------------------------------------------------------
echo "## Suite" > "$summary"
echo >> "$summary"
note "dlrt GPU suite$([[ $dry_run == 1 ]] && echo ' (dry run)') in $root, output in $OUT, time box ${budget} s"

gpu_seen=0 gpu_name="no GPU" driver="" cap=""
if command -v nvidia-smi > /dev/null; then
  nvidia-smi > "$logs/nvidia-smi.txt" 2>&1
  nvidia-smi -L > "$logs/nvidia-smi-L.txt" 2>&1
  if grep -q '^GPU [0-9]' "$logs/nvidia-smi-L.txt"; then
    gpu_seen=1
    gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -n1)
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2> /dev/null | head -n1)
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -n1 | tr -d ' .')
    note "GPU: $gpu_name, driver $driver, compute capability ${cap:-?} ($(grep -c '^GPU [0-9]' "$logs/nvidia-smi-L.txt") listed)"
  else
    note "nvidia-smi lists no GPU: $(head -n1 "$logs/nvidia-smi-L.txt")"
  fi
fi
if [[ $gpu_seen == 0 ]] && compgen -G '/dev/nvidia[0-9]*' > /dev/null; then
  gpu_seen=1
  gpu_name="NVIDIA device $(compgen -G '/dev/nvidia[0-9]*' | head -n1) (nvidia-smi lists none)"
  note "GPU device nodes present although nvidia-smi lists no GPU: counting it as a GPU"
fi
ls -l /dev/nvidia* > "$logs/dev-nvidia.txt" 2>&1
if [[ $gpu_seen == 0 ]]; then
  if [[ $allow_no_gpu == 1 ]]; then
    note "no GPU here; going on without one ($([[ $dry_run == 1 ]] && echo 'dry run' || echo 'DLRT_SUITE_ALLOW_NO_GPU=1'))"
  else
    note "no GPU here (nvidia-smi lists none): this suite needs one (DLRT_SUITE_ALLOW_NO_GPU=1 or --dry-run to try it anyway)"
    exit 1
  fi
fi
row machine "$gpu_name${driver:+, driver $driver}"

# The toolkit, if any: nvcc is needed only to build from source.
nvcc=$(command -v nvcc || true)
for candidate in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
  [[ -z $nvcc && -n $candidate && -x $candidate/bin/nvcc ]] && nvcc=$candidate/bin/nvcc
done
cuda_home=""
if [[ -n $nvcc ]]; then
  cuda_home=$(cd "$(dirname "$nvcc")/.." && pwd)
else
  for candidate in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    [[ -z $cuda_home && -n $candidate && -d $candidate ]] && cuda_home=$candidate
  done
fi
if [[ -n $nvcc ]]; then
  "$nvcc" --version > "$logs/nvcc-version.txt" 2>&1
  note "nvcc: $nvcc ($(grep -o 'release [0-9.]*' "$logs/nvcc-version.txt" | head -n1))"
else
  note "no nvcc (PATH, CUDA_HOME, CUDA_PATH, /usr/local/cuda): the bundle is the only way to binaries here"
fi

# ---- locating libraries -------------------------------------------------------------
# The interpreters that may hold NVIDIA's wheels; the dry run points this at
# its shim.
read -r -a pythons <<< "${DLRT_SUITE_PYTHON:-python3 /usr/bin/python3 /opt/conda/bin/python3}"
wheel_globs=1  # also look in the usual site-packages folders without python
wheel_find() {  # file names -> "NAME<TAB>FOLDER" lines, first interpreter that has each
  local p n d names=("$@") out=""
  for p in "${pythons[@]}"; do
    command -v "$p" > /dev/null 2>&1 || continue
    out+=$("$p" "$here/gpu-wheel-libs.py" "${names[@]}" 2> /dev/null)$'\n'
  done
  # Without a python3 that finds them: the usual site-packages folders.
  if [[ $wheel_globs == 1 ]]; then
    for n in "${names[@]}"; do
      grep -q "^$n"$'\t' <<< "$out" && continue
      for d in /usr/local/lib/python3*/dist-packages/nvidia /usr/local/lib/python3*/site-packages/nvidia \
               /usr/lib/python3/dist-packages/nvidia /opt/conda/lib/python3*/site-packages/nvidia \
               "${HOME:-/root}"/.local/lib/python3*/site-packages/nvidia; do
        [[ -d $d ]] || continue
        p=$(find "$d" -maxdepth 4 -name "$n" 2> /dev/null | sort | head -n1)
        [[ -n $p ]] && { out+="$n"$'\t'"$(dirname "$p")"$'\n'; break; }
      done
    done
  fi
  awk -F'\t' 'NF == 2 && !seen[$1]++' <<< "$out"
}

# Where each CUDA library the binaries need comes from, in search order.
# Fills lib_dir[NAME] (empty: the loader's cache) and lib_source[NAME].
declare -A lib_dir lib_source
resolve_cuda_libs() {  # names...
  local name d found sources wheels=""
  lib_dir=() lib_source=()
  read -r -a sources <<< "${DLRT_SUITE_LIB_SEARCH:-cudnn_root toolkit system wheels bundle}"
  for name in "$@"; do
    found=0
    for src in "${sources[@]}"; do
      case $src in
        cudnn_root)
          [[ -n ${CUDNN_ROOT:-} ]] || continue
          for d in "$CUDNN_ROOT/lib" "$CUDNN_ROOT/lib64" "$CUDNN_ROOT/lib/x86_64-linux-gnu"; do
            if [[ -e $d/$name ]]; then lib_dir[$name]=$d lib_source[$name]="CUDNN_ROOT $d"; found=1; break; fi
          done ;;
        toolkit)
          [[ -n $cuda_home ]] || continue
          for d in "$cuda_home/lib64" "$cuda_home/lib" "$cuda_home/targets/x86_64-linux/lib" \
                   "$cuda_home/targets/sbsa-linux/lib"; do
            if [[ -e $d/$name ]]; then lib_dir[$name]=$(cd "$d" && pwd) lib_source[$name]="toolkit $d"; found=1; break; fi
          done ;;
        system)
          d=$(ldconfig -p 2> /dev/null | awk -v n="$name" '$1 == n { print $NF; exit }')
          if [[ -n $d ]]; then lib_dir[$name]="" lib_source[$name]="loader cache $(dirname "$d")"; found=1; fi ;;
        wheels)
          [[ -z $wheels ]] && wheels=$(wheel_find "$@")
          d=$(awk -F'\t' -v n="$name" '$1 == n { print $2; exit }' <<< "$wheels")
          if [[ -n $d ]]; then lib_dir[$name]=$d lib_source[$name]="wheel $d"; found=1; fi ;;
        bundle)
          if [[ -n ${bundle_dir:-} && -e $bundle_dir/cuda/$name ]]; then
            lib_dir[$name]=$bundle_dir/cuda lib_source[$name]="bundle $bundle_dir/cuda"; found=1
          fi ;;
      esac
      (( found )) && break
    done
    (( found )) || lib_source[$name]="NOT FOUND"
  done
}
# The folders of resolve_cuda_libs, deduplicated, in the order of the names.
cuda_lib_path() {
  local name path=""
  for name in "$@"; do
    [[ -n ${lib_dir[$name]:-} && ":$path:" != *":${lib_dir[$name]}:"* ]] && path+=${path:+:}${lib_dir[$name]}
  done
  echo "$path"
}

# The CUDA libraries a binary or library needs (its NEEDED entries), and
# what those pull in: cuBLAS needs cuBLASLt of its version.
needed_cuda_libs() {
  local f names
  names=$(for f in "$@"; do
            { objdump -p "$f" 2> /dev/null || readelf -d "$f" 2> /dev/null; } \
              | grep -oE 'lib(cudart|cublas|cublasLt|cudnn)\.so\.[0-9]+' 
          done | sort -u)
  [[ -z $names ]] && names=$'libcudart.so.13\nlibcublas.so.13\nlibcudnn.so.9'
  if grep -q '^libcublas\.so\.' <<< "$names"; then
    names+=$'\n'$(sed -n 's/^libcublas\.so\./libcublasLt.so./p' <<< "$names" | head -n1)
  fi
  sort -u <<< "$names" | grep -v '^$'
}

# ldd of each file with a library path: "FILE: problem" lines, nothing when
# everything resolves (missing libraries and missing symbol versions).
load_problems() {
  local path=$1 f
  shift
  command -v ldd > /dev/null || return 0
  for f in "$@"; do
    [[ -f $f ]] || continue
    env LD_LIBRARY_PATH="$path" ldd "$f" 2>&1 | grep -E 'not found|No such file' | sed "s|^|$(basename "$f"): |"
  done
}

# The bundle's lib-base libraries that ldd problems ask for: a library not
# found, or a symbol version missing from this machine's copy.
base_libs_for() {
  awk '
    / => not found/ { for (i = 1; i < NF; i++) if ($(i + 1) == "=>") print $i }
    /version `/ {
      v = $0; sub(/.*version `/, "", v); sub(/'"'"'.*/, "", v)
      if (v ~ /^(GLIBCXX|CXXABI)_/) print "libstdc++.so.6"
      else if (v ~ /^GCC_/) print "libgcc_s.so.1"
      else if (v ~ /^(GOMP|OMP)_/) print "libgomp.so.1"
      else if (v ~ /^ZLIB_/) print "libz.so.1"
    }' <<< "$1" | sort -u
}

# ---- the binaries: bundle first -------------------------------------------------------
bundle=${DLRT_SUITE_BUNDLE:-}
if [[ -z $bundle && $dry_run == 1 ]]; then
  from=${DLRT_SUITE_DRY_RUN_FROM:-$root/build/default}
  [[ -d $from ]] && from=$(cd "$from" && pwd)
  bundle=$work/dlrt-gpu-bundle.tar.xz
  t0=$(date +%s)
  if DLRT_BUNDLE_XZ_LEVEL=0 DLRT_BUNDLE_OUT=$bundle "$here/gpu-bundle.sh" "$from" > "$logs/gpu-bundle.log" 2>&1; then
    dry_step "bundle from $from" 0 "$(( $(date +%s) - t0 )) s, $(( $(stat -c %s "$bundle") / 1024 / 1024 )) MB (xz -0; -6 makes it smaller)"
  else
    dry_step "bundle from $from" 1 "tools/gpu-bundle.sh failed: $(tail -n1 "$logs/gpu-bundle.log")"
    bundle=""
  fi
fi
if [[ -z $bundle ]]; then
  for candidate in "$root/.gpu-bundle/dlrt-gpu-bundle.tar.xz" "$root/.gpu-bundle/dlrt-gpu-bundle.tar.gz"; do
    [[ -z $bundle && -f $candidate ]] && bundle=$candidate
  done
fi

mode="" bundle_dir="" bin_dir="" base_libs="" cuda_names=() dlrt_ld_path=""
if [[ -n $bundle && -f $bundle && ${DLRT_SUITE_BUILD:-0} != 1 ]]; then
  bundle_dir=$work/bundle
  rm -rf "$bundle_dir" && mkdir -p "$bundle_dir"
  if tar -xf "$bundle" -C "$bundle_dir" 2> "$logs/bundle-unpack.log"; then
    bundle_commit=$(cat "$bundle_dir/COMMIT" 2> /dev/null || echo unknown)
    bundle_arch=$(cat "$bundle_dir/ARCH" 2> /dev/null || echo unknown)
    tree_commit=$(git -C "$root" rev-parse --short=12 HEAD 2> /dev/null || echo unknown)
    note "bundle $bundle: commit $bundle_commit, $bundle_arch, $(sed -n 's/^cuda_built_with=//p' "$bundle_dir/BUILD_INFO" 2> /dev/null) toolkit, $(sed -n 's/^built_on=//p' "$bundle_dir/BUILD_INFO" 2> /dev/null)"
    [[ $bundle_commit != "$tree_commit"* ]] && note "note: the bundle's commit ($bundle_commit) is not this tree's HEAD ($tree_commit)"
    [[ -n $cap && " $bundle_arch " != *" sm_$cap "* ]] && note "WARNING: the bundle has machine code for $bundle_arch, this GPU is sm_$cap (PTX JIT at best)"
    dry_step "unpack the bundle" 0 "$(find "$bundle_dir" -type f | wc -l) files"
    mode=bundle
  else
    note "could not unpack the bundle $bundle: $(head -n1 "$logs/bundle-unpack.log")"
    dry_step "unpack the bundle" 1 "$(head -n1 "$logs/bundle-unpack.log")"
  fi
elif [[ $dry_run == 1 ]]; then
  dry_step "unpack the bundle" 1 "no bundle"
fi

# The dry run's fake wheel layout: links to this toolkit's libraries in
# site-packages/nvidia/cudnn/lib and nvidia/cu13/lib, and a python3 shim
# whose only site-packages is that tree.
if [[ $dry_run == 1 && $mode == bundle ]]; then
  fake=$work/fake-wheels
  rm -rf "$fake" && mkdir -p "$fake/site-packages/nvidia/cudnn/lib" "$fake/site-packages/nvidia/cu13/lib" "$fake/bin"
  real_python=$(command -v python3 || true)
  linked=0
  if [[ -n $cuda_home && -n $real_python ]]; then
    for f in "$cuda_home"/lib*/libcudnn*.so.[0-9] "$cuda_home"/targets/*/lib/libcudnn*.so.[0-9]; do
      [[ -e $f && ! -e $fake/site-packages/nvidia/cudnn/lib/$(basename "$f") ]] \
        && ln -s "$(readlink -f "$f")" "$fake/site-packages/nvidia/cudnn/lib/$(basename "$f")" && linked=$((linked + 1))
    done
    for f in "$cuda_home"/lib*/libcublas*.so.[0-9]* "$cuda_home"/lib*/libcudart.so.[0-9]* \
             "$cuda_home"/targets/*/lib/libcublas*.so.[0-9]* "$cuda_home"/targets/*/lib/libcudart.so.[0-9]*; do
      [[ -e $f && $(basename "$f") =~ ^lib[a-zA-Z]+\.so\.[0-9]+$ && ! -e $fake/site-packages/nvidia/cu13/lib/$(basename "$f") ]] \
        && ln -s "$(readlink -f "$f")" "$fake/site-packages/nvidia/cu13/lib/$(basename "$f")" && linked=$((linked + 1))
    done
    touch "$fake/site-packages/nvidia/cudnn/__init__.py"
    printf '#!/bin/sh\n# python3 that sees only the fake wheels (no site-packages)\nPYTHONPATH=%s exec %s -S "$@"\n' \
      "$fake/site-packages" "$real_python" > "$fake/bin/python3"
    chmod +x "$fake/bin/python3"
  fi
  if (( linked > 0 )); then
    pythons=("$fake/bin/python3") wheel_globs=0
    export DLRT_SUITE_LIB_SEARCH="wheels bundle"
    dry_step "fake wheel layout" 0 "$linked links under $fake/site-packages/nvidia/{cudnn,cu13}/lib"
  else
    dry_step "fake wheel layout" 1 "no CUDA toolkit libraries or no python3 here to build it from"
  fi
fi

if [[ $mode == bundle ]]; then
  mapfile -t cuda_names < <(needed_cuda_libs "$bundle_dir"/lib/libdlrt.so* "$bundle_dir"/bin/dlrt_tests)
  resolve_cuda_libs "${cuda_names[@]}"
  for name in "${cuda_names[@]}"; do note "library $name: ${lib_source[$name]}"; done
  cuda_path=$(cuda_lib_path "${cuda_names[@]}")
  missing_cuda=()
  for name in "${cuda_names[@]}"; do
    [[ ${lib_source[$name]} == "NOT FOUND" ]] && missing_cuda+=("$name")
  done
  if (( ${#missing_cuda[@]} > 0 )); then
    # Building from source would not find them either.
    fail "${missing_cuda[*]} not found (CUDNN_ROOT, the toolkit, the loader cache, the Python wheels of: ${pythons[*]})"
    dry_step "libraries from the fake wheels" 1 "not found: ${missing_cuda[*]}"
    mode=""
  fi
fi
if [[ $mode == bundle ]]; then
  # The binaries and libdlrt must load; cuDNN's sub-libraries (loaded at run
  # time) are checked too, but a gap there is a warning.
  check_files=("$bundle_dir"/bin/dlrt_tests "$bundle_dir"/bin/dlrt_internal_tests "$bundle_dir"/bin/dlrt_bench_*
               "$bundle_dir"/lib/libdlrt.so.*)
  base_libs="the machine's"
  path_try=$bundle_dir/lib${cuda_path:+:$cuda_path}${original_ld_path:+:$original_ld_path}
  problems=$(load_problems "$path_try" "${check_files[@]}")
  # What this machine lacks or has too old among the C++/GCC runtime and
  # zlib comes from the bundle's lib-base, one library at a time (the
  # bundle's libstdc++ needs the bundle machine's glibc: only where needed).
  picked=$bundle_dir/lib-picked
  rm -rf "$picked" && mkdir -p "$picked"
  added_base=()
  for attempt in 1 2 3 4; do
    [[ -n $problems && -d $bundle_dir/lib-base ]] || break
    (( attempt == 1 )) && echo "$problems" > "$logs/ldd-own-base-libs.txt"
    added=0
    while read -r want; do
      [[ -n $want && -e $bundle_dir/lib-base/$want && ! -e $picked/$want ]] || continue
      ln -s "../lib-base/$want" "$picked/$want"
      added_base+=("$want")
      added=1
    done < <(base_libs_for "$problems")
    (( added )) || break
    path_try=$bundle_dir/lib:$picked${cuda_path:+:$cuda_path}${original_ld_path:+:$original_ld_path}
    problems=$(load_problems "$path_try" "${check_files[@]}")
  done
  if (( ${#added_base[@]} > 0 )); then
    base_libs="the machine's, with the bundle's ${added_base[*]}"
    note "this machine's runtime libraries lack what the bundle needs ($(head -n1 "$logs/ldd-own-base-libs.txt")); using the bundle's ${added_base[*]}"
  fi
  if [[ -n $problems ]]; then
    echo "$problems" > "$logs/ldd-problems.txt"
    note "the bundle does not load here: $(head -n3 <<< "$problems" | tr '\n' ';')"
    dry_step "bundle loads" 1 "$(head -n1 <<< "$problems")"
    if [[ -n $nvcc ]]; then
      note "building from source instead (nvcc is here)"
      mode=""
    else
      fail "the bundle does not load (see ldd-problems.txt) and there is no nvcc to build from source"
    fi
  else
    dlrt_ld_path=$path_try
    bin_dir=$bundle_dir/bin
    cudnn_dir=${lib_dir[libcudnn.so.9]:-}
    if [[ -n $cudnn_dir ]]; then
      sub=$(load_problems "$dlrt_ld_path" "$cudnn_dir"/libcudnn_*.so.[0-9])
      [[ -n $sub ]] && note "WARNING: cuDNN sub-libraries with gaps: $(head -n2 <<< "$sub" | tr '\n' ';')"
    fi
    note "the bundle's binaries load (base libraries: $base_libs); their LD_LIBRARY_PATH: $dlrt_ld_path"
    if [[ $dry_run == 1 ]]; then
      # Resolved from the fake wheels (or, for cudart, the bundle), by the
      # loader itself.
      bad=""
      resolved=$(env LD_LIBRARY_PATH="$dlrt_ld_path" ldd "$bundle_dir"/lib/libdlrt.so.*[0-9] "$bundle_dir/bin/dlrt_tests" 2>&1)
      for name in "${cuda_names[@]}"; do
        where=$(awk -v n="$name" '$1 == n && $2 == "=>" { print $3; exit }' <<< "$resolved")
        [[ $where == "${fake:-/nonexistent}"/* || $where == "$bundle_dir"/cuda/* ]] || bad+=" $name=>$where"
      done
      dry_step "libraries from the fake wheels" "$([[ -z $bad && -n ${fake:-} ]] && echo 0 || echo 1)" \
        "${bad:-$(for n in "${cuda_names[@]}"; do printf '%s ' "$n=>${lib_dir[$n]#"$work"/}"; done)}"
      dry_step "bundle loads" 0 "ldd clean for bin/ and libdlrt, base libraries: $base_libs"
      [[ -n ${sub:-} ]] && dry_step "cuDNN sub-libraries load" 1 "$(head -n1 <<< "$sub")" \
        || dry_step "cuDNN sub-libraries load" 0 "$(find "${cudnn_dir:-/nonexistent}" -name 'libcudnn_*.so.[0-9]' 2> /dev/null | wc -l) checked with ldd"
    fi
  fi
fi
if [[ -n $bundle_dir && ${#cuda_names[@]} -gt 0 ]]; then
  libs_row=""
  for name in "${cuda_names[@]}"; do libs_row+="${libs_row:+; }${name%%.so*}: ${lib_source[$name]}"; done
  row libraries "$libs_row${base_libs:+; base libraries: $base_libs}"
fi

# ---- or configure and build ----------------------------------------------------------------
if [[ -z $mode && ${#failures[@]} == 0 ]]; then
  if [[ $dry_run == 1 ]]; then
    fail "no bundle to run (the dry run does not build from source)"
  elif [[ -z $nvcc ]]; then
    fail "no bundle$([[ -n $bundle ]] && echo ' that loads') and no nvcc: nothing to run (make the bundle with tools/gpu-bundle.sh and carry .gpu-bundle)"
  else
    mode=build
    build=$work/build
    arch=${DLRT_CUDA_ARCH:-${cap:-90}}
    export PATH=$cuda_home/bin:$PATH
    cmake_args=(-DCMAKE_BUILD_TYPE=Release -DDLRT_WITH_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch"
                "-DCMAKE_CUDA_COMPILER=$nvcc" -DDLRT_BUILD_EXAMPLES=OFF)
    # cuDNN (and cuBLAS) headers and libraries from the wheels when the
    # toolkit lacks them.
    if [[ -n ${CUDNN_ROOT:-} ]]; then
      cmake_args+=("-DCUDNN_ROOT=$CUDNN_ROOT")
    elif ! compgen -G "$cuda_home/include/cudnn.h" > /dev/null && ! compgen -G "/usr/include/cudnn.h" > /dev/null \
         && ! compgen -G "/usr/include/*/cudnn.h" > /dev/null; then
      found=$(wheel_find cudnn.h libcudnn.so.9)
      inc=$(awk -F'\t' '$1 == "cudnn.h" { print $2 }' <<< "$found")
      lib=$(awk -F'\t' '$1 == "libcudnn.so.9" { print $2 }' <<< "$found")
      [[ -n $inc && -n $lib ]] && cmake_args+=("-DCUDNN_ROOT=$(dirname "$inc")" "-DCUDNN_INCLUDE_DIR=$inc"
                                               "-DCUDNN_LIBRARY=$lib/libcudnn.so.9")
    fi
    if ! compgen -G "$cuda_home/include/cublas_v2.h" > /dev/null; then
      found=$(wheel_find cublas_v2.h libcublas.so.13 libcublasLt.so.13)
      inc=$(awk -F'\t' '$1 == "cublas_v2.h" { print $2 }' <<< "$found")
      lib=$(awk -F'\t' '$1 == "libcublas.so.13" { print $2 }' <<< "$found")
      if [[ -n $inc && -n $lib ]]; then
        export CPATH=$inc${CPATH:+:$CPATH}
        cmake_args+=("-DCUDA_cublas_LIBRARY=$lib/libcublas.so.13" "-DCUDA_cublasLt_LIBRARY=$lib/libcublasLt.so.13")
      fi
    fi
    if [[ -n ${DLRT_SUITE_CMAKE_ARGS:-} ]]; then
      read -r -a user_args <<< "$DLRT_SUITE_CMAKE_ARGS"
      cmake_args+=("${user_args[@]}")
    fi
    generator=()
    command -v ninja > /dev/null && generator=(-G Ninja)
    t0=$(date +%s)
    [[ -f $build/CMakeCache.txt ]] || rm -rf "$build"
    if ! cmake -S "$root" -B "$build" "${generator[@]}" "${cmake_args[@]}" > "$logs/configure.log" 2>&1; then
      fail "configure failed ($(grep -m1 -E 'Could NOT find|CMake Error' "$logs/configure.log")); see configure.log"
      mode=""
    else
      note "configured in $(( $(date +%s) - t0 )) s: ${cmake_args[*]}"
      t0=$(date +%s)
      # The build leaves 150 s of the time box for the tests and sanitizers.
      if ! timeout "$(( $(remaining) > 210 ? $(remaining) - 150 : 60 ))" \
          cmake --build "$build" -j "$jobs" --target dlrt_tests dlrt_internal_tests dlrt_bench_conv \
            dlrt_bench_pool dlrt_bench_rnn > "$logs/build.log" 2>&1; then
        fail "build failed or timed out ($(( $(date +%s) - t0 )) s); see build.log"
        grep -m 10 -E 'error:|FAILED:' "$logs/build.log"
        mode=""
      else
        note "built in $(( $(date +%s) - t0 )) s"
        bin_dir=$work/bin
        mkdir -p "$bin_dir"
        for b in tests/dlrt_tests tests/dlrt_internal_tests bench/dlrt_bench_conv bench/dlrt_bench_pool bench/dlrt_bench_rnn; do
          [[ -x $build/$b ]] && ln -sf "$build/$b" "$bin_dir/"
        done
        mapfile -t cuda_names < <(needed_cuda_libs "$build"/runtime/libdlrt.so.*)
        resolve_cuda_libs "${cuda_names[@]}"
        cuda_path=$(cuda_lib_path "${cuda_names[@]}")
        dlrt_ld_path=${cuda_path}${original_ld_path:+${cuda_path:+:}$original_ld_path}
        libs_row=""
        for name in "${cuda_names[@]}"; do libs_row+="${libs_row:+; }${name%%.so*}: ${lib_source[$name]}"; done
        row libraries "$libs_row"
      fi
    fi
  fi
fi
row binaries "$(case $mode in bundle) echo "bundle $(basename "$bundle") (commit ${bundle_commit:-?}, ${bundle_arch:-?})" ;;
                build) echo "built here from source (sm_${arch:-?})" ;; *) echo "none" ;; esac)"

# Runs one of dlrt's binaries with its libraries, and only it: time box, binary, arguments.
run_dlrt() {
  local cap=$1
  shift
  timeout -k 10 "$cap" env LD_LIBRARY_PATH="$dlrt_ld_path" "$@"
}

# ---- cuda_available(), through the test binary --------------------------------------------------------
tests_bin=$bin_dir/dlrt_tests
internal_bin=$bin_dir/dlrt_internal_tests
probe_test='Conv2d/LectureExamples.LaplacianWithoutPadding/cuda'
cuda_ok=0 cuda_reason="not probed"
probe() {  # -> cuda_ok, cuda_reason
  local log=$logs/probe.log rc status="" msg=""
  run_dlrt 120 "$tests_bin" "--gtest_filter=$probe_test:Runtime.CudaAvailabilityIsAnAnswerNotACrash" > "$log" 2>&1
  rc=$?
  IFS=$'\t' read -r _ status msg < <(gtest_results "$log" | awk -F'\t' -v t="$probe_test" '$1 == t')
  if [[ $status == SKIPPED ]]; then
    cuda_ok=0 cuda_reason=${msg:-skipped without a reason}
  elif [[ $status == OK || $status == FAILED ]]; then
    cuda_ok=1 cuda_reason=""
  elif grep -q 'error while loading shared libraries' "$log"; then
    cuda_ok=0 cuda_reason="the test binary does not load: $(grep -m1 'error while loading' "$log")"
  else
    cuda_ok=0 cuda_reason="probe inconclusive (status $rc, no result for $probe_test): $(tail -n1 "$log")"
  fi
}
if [[ -n $mode ]]; then
  probe
  # A runtime that does not start with this driver: the bundle's cudart
  # (that of the toolkit the binaries were built with) instead.
  if [[ $gpu_seen == 1 && $cuda_ok == 0 && $mode == bundle && -e $bundle_dir/cuda/libcudart.so.13 \
        && ${lib_source[libcudart.so.13]:-} != bundle* ]]; then
    note "cuda_available() is false with the machine's cudart ($cuda_reason); trying the bundle's"
    first_reason=$cuda_reason
    saved_path=$dlrt_ld_path
    dlrt_ld_path=$bundle_dir/cuda:$dlrt_ld_path
    probe
    if [[ $cuda_ok == 1 ]]; then
      lib_source[libcudart.so.13]="bundle $bundle_dir/cuda (the machine's failed: $first_reason)"
    else
      dlrt_ld_path=$saved_path
      cuda_reason="$first_reason; with the bundle's cudart: $cuda_reason"
    fi
  fi
  if [[ $cuda_ok == 1 ]]; then
    note "cuda_available(): true"
    row "cuda_available()" "true"
  else
    note "cuda_available(): false: $cuda_reason"
    row "cuda_available()" "false: $cuda_reason"
  fi
  [[ $dry_run == 1 ]] && dry_step "probe cuda_available()" "$([[ $cuda_ok == 1 || $cuda_reason == *"no CUDA device"* ]] && echo 0 || echo 1)" \
    "$([[ $cuda_ok == 1 ]] && echo true || echo "false: $cuda_reason")"
  if [[ $gpu_seen == 1 && $cuda_ok == 0 ]]; then
    {
      echo
      echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
      echo "!!! nvidia-smi lists a GPU ($gpu_name) but dlrt cannot use it:"
      echo "!!! $cuda_reason"
      echo "!!! Nothing on the GPU is verified by this run. See probe.log, nvidia-smi.txt"
      echo "!!! and dev-nvidia.txt in logs.tar.gz."
      echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
      echo
    } | tee -a "$summary"
    fail "a GPU is listed but dlrt's cuda_available() is false: $cuda_reason"
  fi
fi

# ---- tests -------------------------------------------------------------------------
gpu_usable=$(( gpu_seen == 1 && cuda_ok == 1 ))
results=$logs/test-results.tsv nodev=$logs/nodev-results.tsv
: > "$results"; : > "$nodev"
if [[ -n $mode ]]; then
  test_binaries=()
  for b in "$tests_bin" "$internal_bin"; do [[ -x $b ]] && test_binaries+=("$b"); done
  # With the devices hidden, the tests that need one skip, saying so: that is
  # the list of GPU tests.
  hidden_pass=$(( gpu_usable == 1 || dry_run == 1 ))
  # Every run at once (the binaries, and the hidden-device runs), each with
  # a temporary folder of its own: tests write files under fixed names
  # there. The tests come first in the time box; what they leave goes to the
  # benchmarks and the sanitizers.
  cap=$(( $(remaining) - 200 ))
  (( cap < 120 )) && cap=120
  (( cap > 300 )) && cap=300
  pids=()
  t0=$(date +%s)
  for b in "${test_binaries[@]}"; do
    name=$(basename "$b")
    mkdir -p "$logs/tmp-$name" "$logs/tmp-hidden-$name"
    TMPDIR=$logs/tmp-$name/ TEST_TMPDIR=$logs/tmp-$name/ \
      run_dlrt "$cap" "$b" --gtest_output="xml:$logs/$name.xml" > "$logs/$name.log" 2>&1 &
    pids+=("$!:$name")
    if (( hidden_pass )); then
      CUDA_VISIBLE_DEVICES="" TMPDIR=$logs/tmp-hidden-$name/ TEST_TMPDIR=$logs/tmp-hidden-$name/ \
        run_dlrt "$cap" "$b" > "$logs/$name-nodevice.log" 2>&1 &
      pids+=("$!:")
    fi
  done
  for entry in "${pids[@]}"; do
    wait "${entry%%:*}"
    rc=$?
    name=${entry#*:}
    [[ -n $name ]] || continue
    gtest_results "$logs/$name.log" > "$logs/$name.tsv"
    cat "$logs/$name.tsv" >> "$results"
    counts=$(awk -F'\t' '{ n[$2]++ } END { printf "%d passed, %d failed, %d crashed, %d skipped", n["OK"], n["FAILED"], n["CRASHED"], n["SKIPPED"] }' "$logs/$name.tsv")
    note "$name: $counts, $(( $(date +%s) - t0 )) s (status $rc)"
    row "$name" "$counts"
    bad=$(awk -F'\t' '$2 == "FAILED" || $2 == "CRASHED" { print $1 " (" $2 ")" }' "$logs/$name.tsv")
    if [[ -n $bad ]]; then
      fail "$name: $(wc -l <<< "$bad") tests failed"
      head -n 30 <<< "$bad" | sed 's/^/    /' | tee -a "$summary"
    elif [[ $rc != 0 ]]; then
      fail "$name exited with status $rc$([[ $rc == 124 || $rc == 137 ]] && echo " (time-boxed at $cap s)"): $(tail -n1 "$logs/$name.log")"
    fi
    (( $(wc -l < "$logs/$name.tsv") == 0 )) && fail "$name ran no test: $(tail -n1 "$logs/$name.log")"
  done
  if (( hidden_pass )); then
    for b in "${test_binaries[@]}"; do gtest_results "$logs/$(basename "$b")-nodevice.log"; done > "$nodev"
  fi

  # The GPU tests: those that skip for lack of a device when there is none.
  gpu_tests=$logs/gpu-tests.txt
  if (( hidden_pass )); then src=$nodev; else src=$results; fi
  awk -F'\t' -v re="$device_skip_re" '$2 == "SKIPPED" && $3 ~ re { print $1 }' "$src" | sort -u > "$gpu_tests"
  device_skipped=$(awk -F'\t' -v re="$device_skip_re" '$2 == "SKIPPED" && $3 ~ re' "$results" | wc -l)
  n_gpu=$(wc -l < "$gpu_tests")
  # Per family and engine: GPU tests that passed here / GPU tests.
  awk -F'\t' -v re="$device_skip_re" '
    FNR == NR { gpu[$1] = 1; next }
    ($1 in gpu) {
      name = tolower($1)
      family = "runtime"
      if (name ~ /optim/) family = "optimizer"
      if (name ~ /pointwise/) family = "pointwise"
      if (name ~ /loss/) family = "loss"
      if (name ~ /linear/) family = "linear"
      if (name ~ /rnn|lstm|gru/) family = "rnn"
      if (name ~ /pool/) family = "pool2d"
      if (name ~ /conv/) family = "conv2d"
      engine = name ~ /cudnn/ ? "cudnn" : "cuda"
      total[family, engine]++; families[family] = 1
      if ($2 == "OK") ok[family, engine]++
      else if ($2 == "SKIPPED" && $3 !~ re) declined[family, engine]++
    }
    END {
      for (f in families)
        printf "%s\t%d/%d\t%d/%d\t%d\n", f, ok[f, "cuda"], total[f, "cuda"], ok[f, "cudnn"], total[f, "cudnn"], declined[f, "cuda"] + declined[f, "cudnn"]
    }' "$gpu_tests" "$results" | sort > "$logs/paths.tsv"
  verified=$(awk -F'\t' 'FNR == NR { gpu[$1] = 1; next } ($1 in gpu) && $2 == "OK"' "$gpu_tests" "$results" | wc -l)
  declined=$(awk -F'\t' -v re="$device_skip_re" 'FNR == NR { gpu[$1] = 1; next } ($1 in gpu) && $2 == "SKIPPED" && $3 !~ re' "$gpu_tests" "$results" | wc -l)
  note "GPU tests: $n_gpu; verified on the GPU: $verified; declined by an engine: $declined; skipped for lack of a device: $device_skipped"
  row "GPU tests" "$n_gpu: $verified verified on the GPU, $declined declined by an engine (their reason), $device_skipped skipped for lack of a device"
  verdict=$(device_verdict "$gpu_seen" "$cuda_ok" "$device_skipped" "$allow_no_gpu")
  if [[ $gpu_seen == 1 && $cuda_ok == 1 && $device_skipped -gt 0 ]]; then
    fail "$device_skipped GPU tests skipped for lack of a device on a machine with a GPU"
    awk -F'\t' -v re="$device_skip_re" '$2 == "SKIPPED" && $3 ~ re { print "    " $1 ": " $3 }' "$results" | head -n 20 | tee -a "$summary"
  elif [[ $gpu_seen == 1 && $cuda_ok == 1 && $n_gpu == 0 ]]; then
    fail "no GPU test found (the run with hidden devices skipped none)"
  elif [[ $verdict == allowed ]]; then
    note "no GPU: the $device_skipped GPU tests skipped, as allowed without one"
  fi
  if [[ $dry_run == 1 ]]; then
    tests_failed=$(awk -F'\t' '$2 == "FAILED" || $2 == "CRASHED"' "$results" | wc -l)
    dry_step "tests" "$([[ $tests_failed == 0 && -s $results ]] && echo 0 || echo 1)" \
      "$(wc -l < "$results") results, $tests_failed failed"
    # The hidden-device run and the plain run must name the same GPU tests
    # here (no GPU either way): the parser and the skip texts agree.
    plain=$(awk -F'\t' -v re="$device_skip_re" '$2 == "SKIPPED" && $3 ~ re { print $1 }' "$results" | sort -u)
    dry_step "GPU tests found by their skips" "$([[ $n_gpu -gt 0 && $plain == "$(cat "$gpu_tests")" ]] && echo 0 || echo 1)" \
      "$n_gpu GPU tests, the same in the plain and the hidden-device runs: $([[ $plain == "$(cat "$gpu_tests")" ]] && echo yes || echo no)"
  fi
fi

# ---- the rules themselves (dry run) ----------------------------------------------------------
if [[ $dry_run == 1 ]]; then
  got="$(device_verdict 1 0 0 1) $(device_verdict 1 1 3 1) $(device_verdict 1 1 0 0) $(device_verdict 0 0 5 1) $(device_verdict 0 0 5 0)"
  dry_step "verdict rules" "$([[ $got == "fail fail ok allowed fail" ]] && echo 0 || echo 1)" \
    "GPU without cuda_available, GPU with device skips, GPU clean, no GPU allowed, no GPU refused: $got"
  canned=$logs/sanitizer-selftest
  mkdir -p "$canned"
  printf '========= COMPUTE-SANITIZER\n========= Error: Device not supported\n' > "$canned/refused.log"
  printf '========= COMPUTE-SANITIZER\n========= Internal Sanitizer Error: cuInit failed: CUDA_ERROR_NOT_SUPPORTED\n' > "$canned/gvisor.log"
  printf '[  PASSED  ] 3 tests.\n========= ERROR SUMMARY: 0 errors\n' > "$canned/clean.log"
  printf '========= Invalid __global__ read of size 4 bytes\n========= ERROR SUMMARY: 2 errors\n' > "$canned/errors.log"
  printf '========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)\n' > "$canned/race.log"
  printf '[ RUN      ] A.B\n' > "$canned/slow.log"
  printf '[==========] 2 tests ran.\nfailed to create the plan\n[  FAILED  ] 1 test\n========= ERROR SUMMARY: 0 errors\n' > "$canned/testfail.log"
  printf 'cuInit failed: operation not supported\n' > "$canned/early.log"
  got="$(sanitizer_verdict "$canned/refused.log" 1) $(sanitizer_verdict "$canned/gvisor.log" 255) $(sanitizer_verdict "$canned/early.log" 1) $(sanitizer_verdict "$canned/clean.log" 0) $(sanitizer_verdict "$canned/errors.log" 99) $(sanitizer_verdict "$canned/race.log" 99) $(sanitizer_verdict "$canned/slow.log" 124) $(sanitizer_verdict "$canned/testfail.log" 1)"
  dry_step "sanitizer verdict rules" "$([[ $got == "unavailable unavailable unavailable clean errors errors time-boxed failed" ]] && echo 0 || echo 1)" "$got"
  printf '[ RUN      ] S.a\n[       OK ] S.a (0 ms)\n[ RUN      ] S.b/cuda\nx.cpp:1: Skipped\nno CUDA device on this machine: r\n[  SKIPPED ] S.b/cuda (0 ms)\n[ RUN      ] S.c/1\nx.cpp:2: Failure\n[  FAILED  ] S.c/1, where GetParam() = 1 (0 ms)\n[ RUN      ] S.d\n' > "$canned/gtest.log"
  got=$(gtest_results "$canned/gtest.log" | tr '\t\n' ',;')
  dry_step "gtest log parser" "$([[ $got == "S.a,OK,;S.b/cuda,SKIPPED,no CUDA device on this machine: r;S.c/1,FAILED,;S.d,CRASHED,;" ]] && echo 0 || echo 1)" "$got"
fi

# ---- benchmarks --------------------------------------------------------------------------
# What the sanitizer step keeps for itself, and the report.
have_sanitizer=""
sanitizer=${DLRT_SUITE_SANITIZER:-}
if [[ $dry_run == 1 && -z $sanitizer ]]; then
  # A stand-in that runs its target unchanged and reports no error: the
  # plumbing (wrapper, filters, logs, verdicts) runs as on a GPU machine.
  sanitizer=$work/fake-compute-sanitizer
  cat > "$sanitizer" << 'EOF'
#!/usr/bin/env bash
# Pass-through stand-in for compute-sanitizer (the suite's dry run).
[[ ${1:-} == --version ]] && { echo "fake compute-sanitizer (dry run)"; exit 0; }
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in --tool|--error-exitcode|--target-processes|--print-limit|--racecheck-report) shift 2 ;; *) shift ;; esac
done
echo "========= COMPUTE-SANITIZER (stand-in)"
"$@"
rc=$?
echo "========= ERROR SUMMARY: 0 errors"
exit $rc
EOF
  chmod +x "$sanitizer"
fi
if [[ -z $sanitizer ]]; then
  sanitizer=$(command -v compute-sanitizer || true)
  for candidate in "$cuda_home/bin/compute-sanitizer" "$cuda_home/compute-sanitizer/compute-sanitizer"; do
    [[ -z $sanitizer && -n $cuda_home && -x $candidate ]] && sanitizer=$candidate
  done
  if [[ -z $sanitizer ]]; then
    d=$(wheel_find compute-sanitizer | awk -F'\t' '{ print $2; exit }')
    [[ -n $d && -x $d/compute-sanitizer ]] && sanitizer=$d/compute-sanitizer
  fi
fi
[[ -n $sanitizer && ( $gpu_usable == 1 || $dry_run == 1 ) ]] && have_sanitizer=1
sanitizer_reserve=$(( have_sanitizer ? (dry_run ? 20 : 140) : 0 ))

bench_files=()
bench_row=""
if [[ -n $mode && ( $gpu_usable == 1 || $gpu_seen == 0 ) && -x $bin_dir/dlrt_bench_conv ]]; then
  if [[ $full == 1 ]]; then
    flags=(--benchmark_repetitions=5)
    runs=("conv resnet50 1 3" "pool cnn 1 0" "rnn small_batch 1 0" "conv deepbench 1 0")
  elif [[ $dry_run == 1 ]]; then
    # The quick tables, one short repetition: the plumbing, not the numbers.
    flags=(--benchmark_repetitions=1 --benchmark_min_time=0.001 --dlrt_warmup=0
           --dlrt_cpu_max_gflop=0.1 --dlrt_reference_max_gflop=0.01 --dlrt_cpu_max_mb=16 --dlrt_reference_max_mb=4
           --dlrt_rnn_cpu_max_gflop=0.1 --dlrt_rnn_reference_max_gflop=0.01)
    runs=("conv quick 0.4 0" "pool quick 0.5 0" "rnn quick 1.0 0")
  else
    # Three repetitions of at least 10 ms each; CPU engines on a subset.
    flags=(--benchmark_repetitions=3 --benchmark_min_time=0.01
           --dlrt_cpu_max_gflop=2 --dlrt_reference_max_gflop=0.1 --dlrt_cpu_max_mb=512
           --dlrt_rnn_cpu_max_gflop=2 --dlrt_rnn_reference_max_gflop=0.1)
    # Most telling first, so that a time box cuts the tail of the largest
    # table. The fourth field is the Cuda conv variant the run asks for:
    # ResNet-50 times the fast kernels (variant 3, which the engine's own
    # rule does not pick until a GPU run has verified them) next to Cudnn;
    # the others the engine's own rule. The third field is the share of the
    # benchmark time left when the run starts.
    runs=("conv resnet50 0.35 3" "pool cnn 0.25 0" "rnn small_batch 0.35 0" "conv deepbench 1.0 0")
  fi
  t_bench=$(date +%s)
  bench_budget=$(( $(remaining) - sanitizer_reserve - 15 ))
  (( dry_run && bench_budget < 30 )) && bench_budget=30
  if [[ $full != 1 ]] && (( bench_budget < 20 )); then
    note "benchmarks: no time left in the time box (${bench_budget} s)"
    bench_row="not run: no time left"
  else
    note "benchmarks: $([[ $full == 1 ]] && echo 'every table, not time-boxed' || echo "${bench_budget} s in all") (flags: ${flags[*]})"
    for run in "${runs[@]}"; do
      read -r family table share variant <<< "$run"
      [[ -x $bin_dir/dlrt_bench_$family ]] || { note "bench $family/$table: no dlrt_bench_$family"; continue; }
      left=$(( bench_budget - ($(date +%s) - t_bench) ))
      cap=$(awk -v l="$left" -v s="$share" 'BEGIN { c = int(l * s); print (c < 10 ? 10 : c) }')
      [[ $full == 1 ]] && cap=3000
      file=$OUT/bench-$family-$table.json
      t0=$(date +%s)
      DLRT_CUDA_CONV2D_VARIANT=$variant run_dlrt "$cap" "$bin_dir/dlrt_bench_$family" \
        --dlrt_shapes_dir="$root/bench/shapes" --dlrt_tables="$table" "${flags[@]}" \
        --benchmark_out="$file" --benchmark_out_format=json > "$logs/bench-$family-$table.log" 2>&1
      rc=$?
      case $rc in
        0) what="done in $(( $(date +%s) - t0 )) s" ;;
        124|137) what="time-boxed at $cap s (the report keeps the cases that finished)" ;;
        *) what="exit status $rc after $(( $(date +%s) - t0 )) s; see its log" ;;
      esac
      [[ $variant != 0 ]] && what+=", DLRT_CUDA_CONV2D_VARIANT=$variant"
      note "bench $family/$table: $what"
      bench_row+="${bench_row:+; }$family/$table ${what%%;*}"
      [[ -s $file ]] && bench_files+=("$file")
    done
  fi
elif [[ -n $mode ]]; then
  note "benchmarks: not run ($([[ $gpu_usable == 0 ]] && echo 'dlrt cannot use the GPU' || echo 'no benchmark binaries'))"
  bench_row="not run"
fi
[[ -n $bench_row ]] && row benchmarks "$bench_row"

# Key ratios, from the JSON (python3 with the machine's own libraries).
python=$(command -v python3 || true)
ratios=$logs/ratios.tsv
: > "$ratios"
if (( ${#bench_files[@]} > 0 )) && [[ -n $python ]]; then
  "$python" "$here/gpu-ratios.py" "${bench_files[@]}" > "$ratios" 2> "$logs/ratios.log"
  key=$(awk -F'\t' '$2 != "-" && ($2 == "cuda/cudnn" || $2 == "cpu/reference") {
          printf "%s%s %s %sx (%d cases)", (n++ ? "; " : ""), $1, $2, $4, $3 }' "$ratios")
  row "key ratios (geometric mean, >1: first slower)" "${key:-none (no case with both engines measured)}"
  bench_failed=$(awk -F'\t' '{ s += $8 } END { print s + 0 }' "$ratios")
  (( bench_failed > 0 )) && fail "$bench_failed benchmark runs stopped with an error (see the report's Failed lists)"
  if [[ $dry_run == 1 ]]; then
    measured=$(awk -F'\t' '!seen[$1]++ { s += $7 } END { print s + 0 }' "$ratios")
    dry_step "benchmarks" "$([[ $measured -gt 0 && ${#bench_files[@]} -ge 3 ]] && echo 0 || echo 1)" \
      "${#bench_files[@]} JSON files, $measured engine runs measured, $bench_failed failed"
    dry_step "key ratios" "$([[ -n $key ]] && echo 0 || echo 1)" "${key:-none}"
  fi
elif [[ $dry_run == 1 ]]; then
  dry_step "benchmarks" 1 "no benchmark JSON$([[ -z $python ]] && echo ', no python3')"
fi

# ---- compute-sanitizer ------------------------------------------------------------------
sanitizer_row=""
if [[ $have_sanitizer == 1 && -n $mode ]]; then
  "$sanitizer" --version > "$logs/compute-sanitizer-version.txt" 2>&1
  note "compute-sanitizer: $sanitizer ($(grep -m1 -iE 'version|stand-in|dry run' "$logs/compute-sanitizer-version.txt"))"
  sanitize() {  # tool, binary, filter, time box -> verdict in $verdict, log in $log
    local tool=$1 binary=$2 filter=$3 cap=$4 rc
    log=$logs/sanitizer-$tool-$(basename "$binary")-$5.log
    timeout -k 10 "$cap" "$sanitizer" --tool "$tool" --error-exitcode 99 --target-processes all \
      env LD_LIBRARY_PATH="$dlrt_ld_path" "$binary" "--gtest_filter=$filter" > "$log" 2>&1
    rc=$?
    verdict=$(sanitizer_verdict "$log" "$rc")
  }
  # The GPU tests of each binary, own kernels and cuDNN apart, as gtest
  # filters (the list from the test step; patterns where it is too long).
  filter_of() {  # binary tsv, cudnn|own
    local names
    names=$(awk -F'\t' 'FNR == NR { gpu[$1] = 1; next } ($1 in gpu) { print $1 }' "$gpu_tests" "$1" \
              | if [[ $2 == cudnn ]]; then grep -i cudnn; else grep -vi cudnn; fi | tr '\n' ':')
    names=${names%:}
    if (( ${#names} > 60000 )); then
      [[ $2 == cudnn ]] && names='*cudnn*:*Cudnn*' || names='*/cuda*:*Cuda*:*Gpu*:*Device*-*cudnn*:*Cudnn*'
    fi
    echo "$names"
  }
  # A first short run: does the tool work on this device at all?
  if (( $(remaining) < 40 )); then
    verdict="not run"
    note "compute-sanitizer: no time left in the time box"
    sanitizer_row="not run: no time left"
  else
    sanitize memcheck "$tests_bin" "$probe_test" 60 preflight
  fi
  if [[ $verdict == "not run" ]]; then
    :
  elif [[ $verdict == unavailable ]]; then
    why=$(grep -m1 -E "$sanitizer_refusal_re" "$log" || tail -n1 "$log")
    note "sanitizer unavailable on this machine: ${why#========= }"
    sanitizer_row="unavailable: ${why#========= }"
  elif [[ $verdict != clean ]]; then
    note "compute-sanitizer memcheck on $probe_test: $verdict; see $(basename "$log")"
    [[ $verdict == errors ]] && fail "compute-sanitizer memcheck found errors in $probe_test"
    sanitizer_row="preflight $verdict"
  else
    checks=() cudnn_checks=()
    for b in "$internal_bin" "$tests_bin"; do
      [[ -x $b ]] || continue
      tsv=$logs/$(basename "$b").tsv
      own=$(filter_of "$tsv" own)
      cudnn=$(filter_of "$tsv" cudnn)
      [[ -n $own ]] && checks+=("memcheck|$b|$own|own" "racecheck|$b|$own|own")
      [[ -n $cudnn ]] && cudnn_checks+=("memcheck|$b|$cudnn|cudnn")
    done
    # dlrt's own kernels first (the fast kernels of the internal tests, then
    # the engines), cuDNN's calls last: a time box cuts the least telling.
    checks+=(${cudnn_checks[@]+"${cudnn_checks[@]}"})
    for i in "${!checks[@]}"; do
      IFS='|' read -r tool binary filter part <<< "${checks[$i]}"
      left=$(( $(remaining) - 10 ))
      cap=$(( left / (${#checks[@]} - i) ))
      (( cap > 150 )) && cap=150
      (( dry_run && cap < 30 )) && cap=30
      if (( cap < 15 )); then
        note "compute-sanitizer $tool on $(basename "$binary") ($part): no time left"
        sanitizer_row+="${sanitizer_row:+; }$tool $(basename "$binary") $part: no time"
        continue
      fi
      t0=$(date +%s)
      sanitize "$tool" "$binary" "$filter" "$cap" "$part"
      summary_line=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -n1 | sed 's/^========= //')
      ran=$(gtest_results "$log" | awk -F'\t' '{ n[$2]++ } END { printf "%d passed, %d skipped, %d failed", n["OK"], n["SKIPPED"], n["FAILED"] + n["CRASHED"] }')
      note "compute-sanitizer $tool on $(basename "$binary") ($part GPU tests): $verdict in $(( $(date +%s) - t0 )) s; ${summary_line:-no summary}; tests $ran"
      sanitizer_row+="${sanitizer_row:+; }$tool $(basename "$binary") $part: $verdict"
      case $verdict in
        errors) fail "compute-sanitizer $tool found errors in $(basename "$binary") ($part): $summary_line" ;;
        failed) fail "tests failed under compute-sanitizer $tool in $(basename "$binary") ($part): $ran" ;;
        unavailable) note "sanitizer unavailable for this run: $(grep -m1 -E "$sanitizer_refusal_re" "$log")" ;;
      esac
    done
  fi
  if [[ $dry_run == 1 ]]; then
    dry_step "sanitizer plumbing (stand-in)" "$([[ $sanitizer_row != *errors* && $sanitizer_row != *failed* && $sanitizer_row == *memcheck* && $sanitizer_row == *racecheck* ]] && echo 0 || echo 1)" \
      "$sanitizer_row"
  fi
elif [[ -n $mode ]]; then
  if [[ -z $sanitizer ]]; then
    sanitizer_row="unavailable: compute-sanitizer not found (PATH, the toolkit, the wheels)"
  else
    sanitizer_row="not run: dlrt cannot use the GPU"
  fi
  note "sanitizer: $sanitizer_row"
fi
[[ -n $sanitizer_row ]] && row sanitizer "$sanitizer_row"

# ---- report ----------------------------------------------------------------------------
if [[ $dry_run == 1 ]]; then
  dry_step "environment confined" "$([[ ${LD_LIBRARY_PATH-} == "$original_ld_path" ]] && "${python:-false}" -c 'import json, ssl' 2> /dev/null && echo 0 || echo 1)" \
    "LD_LIBRARY_PATH of the script: '${LD_LIBRARY_PATH-}' (as it came); python3 imports json and ssl"
fi
report_body=$logs/bench-report.md
if (( ${#bench_files[@]} > 0 )) && [[ -n $python ]]; then
  plot=(--plot "$OUT/ratios.png")
  [[ $dry_run == 1 ]] && plot=(--no-plot)
  "$python" "$here/bench_report" --title "Benchmarks" --out "$report_body" \
    "${plot[@]}" "${bench_files[@]}" > /dev/null 2> "$logs/report.log"
  grep -q 'matplotlib is not installed' "$logs/report.log" \
    && note "no ratios.png: matplotlib is not installed for $python"
fi

status=passed
(( ${#failures[@]} > 0 )) && status=FAILED
if [[ $dry_run == 1 ]]; then
  for s in "${dry_steps[@]}"; do
    IFS='|' read -r _ step_status _ <<< "$s"
    [[ $step_status == ok ]] || status=FAILED
  done
fi
failure_list=""
for f in ${failures[@]+"${failures[@]}"}; do failure_list+="${failure_list:+; }$f"; done
row failures "${failure_list:-none}"
row status "$status in $(elapsed) s$([[ $dry_run == 1 ]] && echo ' (dry run)')"
note "suite finished in $(elapsed) s; status: $status"

table=$logs/table.md
{
  echo "| check | result |"
  echo "|---|---|"
  for r in "${rows[@]}"; do echo "| ${r%%|*} | ${r#*|} |"; done
  if [[ -s $logs/paths.tsv ]]; then
    echo
    echo "Paths verified (GPU tests that passed on the GPU / GPU tests; declined: an engine's own reason):"
    echo
    echo "| family | cuda | cudnn | declined |"
    echo "|---|---|---|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }' "$logs/paths.tsv"
  fi
  if [[ -s $ratios ]]; then
    echo
    echo "Ratios per op (geometric mean over the cases with both engines; min-max):"
    echo
    echo "| op | ratio | cases | geomean | range |"
    echo "|---|---|---|---|---|"
    awk -F'\t' '$2 != "-" { printf "| %s | %s | %s | %s | %s-%s |\n", $1, $2, $3, $4, $5, $6 }' "$ratios"
  fi
  if [[ $dry_run == 1 ]]; then
    echo
    echo "Dry-run steps:"
    echo
    echo "| step | result | detail |"
    echo "|---|---|---|"
    for s in "${dry_steps[@]}"; do
      IFS='|' read -r a b c <<< "$s"
      echo "| $a | $b | $c |"
    done
  fi
} > "$table"

slug=$(echo "$gpu_name" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')
{
  echo "# dlrt GPU suite: $(date -u +%Y-%m-%d), $gpu_name$([[ $dry_run == 1 ]] && echo ' (dry run)')"
  echo
  echo "Commit: $(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2> /dev/null || echo ' (with local changes)')."
  [[ $dry_run == 1 ]] || echo "Record it as docs/results/$(date -u +%Y-%m-%d)-$slug.md (see docs/results/README.md)."
  echo
  echo "## Summary"
  echo
  cat "$table"
  echo
  cat "$summary"
  echo
  if [[ -s $report_body ]]; then
    sed 's/^#/##/' "$report_body"
  else
    echo "No benchmark report (see logs.tar.gz)."
  fi
} > "$OUT/report.md"
if [[ $dry_run == 1 ]]; then
  ok=0
  grep -q '^| status |' "$OUT/report.md" && grep -q '^| GPU tests |' "$OUT/report.md" && ok=1
  if [[ $ok != 1 ]]; then
    status=FAILED
    echo "dry run: report.md lacks its summary table" | tee -a "$summary"
  fi
fi

table_text=$(cat "$table")
finish
trap - EXIT
echo
echo "=== dlrt GPU suite$([[ $dry_run == 1 ]] && echo ' (dry run)'): $status; results in $OUT: $(cd "$OUT" && echo *)"
echo
echo "$table_text"
[[ $status == passed ]]
