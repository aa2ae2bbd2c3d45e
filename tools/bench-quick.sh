#!/usr/bin/env bash
# Runs dlrt_bench_conv, dlrt_bench_pool and dlrt_bench_rnn on the quick
# shape set (a few small shapes, every engine this build and machine have)
# and prints the report. Builds nothing.
#
#   tools/bench-quick.sh [BUILD_DIR [OUT_DIR]] [-- EXTRA BENCHMARK FLAGS]
#
# BUILD_DIR defaults to build/default, OUT_DIR to BUILD_DIR/bench-quick.
# OUT_DIR receives conv.json, pool.json, rnn.json, their console logs,
# report.md and (with matplotlib) ratios.png. Extra flags after "--" go to
# every binary, e.g. -- --dlrt_engines=cpu,reference or
# -- --benchmark_repetitions=5.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

positional=()
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help)
      sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) positional+=("$1"); shift ;;
  esac
done
build=${positional[0]:-$root/build/default}
out=${positional[1]:-$build/bench-quick}

for family in conv pool rnn; do
  if [[ ! -x $build/bench/dlrt_bench_$family ]]; then
    echo "bench-quick: $build/bench/dlrt_bench_$family not found; build first, e.g." >&2
    echo "  cmake --preset default && cmake --build --preset default" >&2
    exit 1
  fi
done
mkdir -p "$out"

python=python3
command -v "$python" > /dev/null || { echo "bench-quick: python3 is needed for the report" >&2; exit 1; }

start=$(date +%s)
for family in conv pool rnn; do
  t0=$(date +%s)
  printf 'bench-quick: dlrt_bench_%s on the quick set ... ' "$family"
  # Auto's CPU row beside the engines: the report checks it takes the fastest.
  if ! "$build/bench/dlrt_bench_$family" --dlrt_quick --dlrt_engines=all,auto \
      --benchmark_out="$out/$family.json" --benchmark_out_format=json \
      ${extra[@]+"${extra[@]}"} > "$out/$family.log" 2>&1; then
    echo "failed"
    tail -n 20 "$out/$family.log" >&2
    exit 1
  fi
  echo "$(( $(date +%s) - t0 )) s"
done
echo "bench-quick: benchmarks took $(( $(date +%s) - start )) s; JSON and logs in $out"
echo

"$python" "$here/bench_report" --title "dlrt benchmarks, quick set" \
  --out "$out/report.md" --plot "$out/ratios.png" --check \
  "$out/conv.json" "$out/pool.json" "$out/rnn.json"
