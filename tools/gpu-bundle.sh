#!/usr/bin/env bash
# Builds dlrt here, with the CUDA engines for Hopper GPUs (sm_90: H100 and
# H200) by default, and packs what tools/gpu-suite.sh needs to run on a GPU
# machine without building: the test, benchmark and demo binaries,
# libdlrt.so, and every shared library they load that is not part of the C
# library or of CUDA (OpenBLAS, libgfortran, libgomp, libstdc++, libpng,
# ...), for machines that have the CUDA toolkit but none of the Debian
# packages.
#
#   tools/gpu-bundle.sh [ARCH]      (default 90)
#
# Writes .gpu-bundle/dlrt-gpu-bundle.tar.xz (ignored by git). Copy the
# .gpu-bundle folder to the GPU machine and run tools/gpu-suite.sh there: it
# finds the bundle and uses it instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
build=build/gpu-bundle
tools/install-deps.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDLRT_WITH_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DDLRT_WARNINGS_AS_ERRORS=ON > /dev/null
cmake --build "$build" -j "${DLRT_JOBS:-$(nproc)}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
binaries=("$build/tests/dlrt_tests" "$build/tests/dlrt_internal_tests" "$build/bench/dlrt_bench_conv"
          "$build/bench/dlrt_bench_pool" "$build/examples/dlrt_filters")
cp "${binaries[@]}" "$stage/bin/"
cp -P "$build"/runtime/libdlrt.so* "$stage/lib/"
# The C library and CUDA's own libraries come from the GPU machine.
skip='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libcuda|libcudart|libcublas|libcublasLt|libcudnn.*)\.so'
for b in "${binaries[@]}" "$build"/runtime/libdlrt.so; do
  ldd "$b" | awk '/=> \//{print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip || $name == libdlrt.so* ]] && continue
  cp -L "$path" "$stage/lib/$name"
done
git rev-parse --short HEAD > "$stage/COMMIT" 2> /dev/null || echo unknown > "$stage/COMMIT"
echo "sm_$arch" > "$stage/ARCH"
mkdir -p .gpu-bundle
tar -cJf .gpu-bundle/dlrt-gpu-bundle.tar.xz -C "$stage" .
echo "gpu-bundle: .gpu-bundle/dlrt-gpu-bundle.tar.xz ($(du -h .gpu-bundle/dlrt-gpu-bundle.tar.xz | cut -f1)," \
  "commit $(cat "$stage/COMMIT"), sm_$arch): $(ls "$stage/lib" | tr '\n' ' ')"
