#!/usr/bin/env bash
# Packs what tools/gpu-suite.sh needs to run on a GPU machine without a
# compiler: the test and benchmark binaries, libdlrt.so and the third-party
# libraries they load that such a machine lacks.
#
#   tools/gpu-bundle.sh BUILD_DIR     pack an existing CUDA build as it is (no
#                                     rebuild), e.g. tools/gpu-bundle.sh build/default
#   tools/gpu-bundle.sh [ARCH]        configure and build build/gpu-bundle first
#                                     (Release, DLRT_WITH_CUDA=ON, sm_ARCH, default 90:
#                                     H100 and H200), then pack it
#
# Writes .gpu-bundle/dlrt-gpu-bundle.tar.xz (ignored by git; under 20 MB).
# Copy the .gpu-bundle folder to the GPU machine next to the source tree and
# run tools/gpu-suite.sh there: it finds the bundle and uses it instead of
# building. Environment:
#   DLRT_BUNDLE_OUT       the archive to write (default .gpu-bundle/dlrt-gpu-bundle.tar.xz,
#                         .tar.gz with DLRT_BUNDLE_COMPRESS=gz)
#   DLRT_BUNDLE_COMPRESS  xz (default) or gz (fast, half again as large)
#   DLRT_BUNDLE_XZ_LEVEL  xz's preset, 0-9 (default 6: smallest, about a minute on 2
#                         cores; the suite's dry run uses 0, a few seconds)
#   DLRT_BUNDLE_MAX_MB    refuse an archive larger than this (default 40)
#
# What goes in, and what does not:
#   bin/      dlrt_tests, dlrt_internal_tests, dlrt_bench_{conv,pool,rnn} (and
#             dlrt_filters where built)
#   lib/      libdlrt.so and what the binaries load that is neither the C
#             library, the C++/GCC runtime nor CUDA: OpenBLAS, libgfortran,
#             libquadmath, Google Benchmark, libpng (GoogleTest is linked in)
#   lib-base/ this machine's libstdc++, libgcc_s and zlib. The GPU machine's
#             own come first; the suite adds these only when its own are too
#             old for the binaries (ldd reports a missing version). They need
#             this machine's glibc version or newer (BUILD_INFO names it).
#   cuda/     libcudart.so.13 of the toolkit the binaries were built with,
#             used only where the GPU machine has no CUDA runtime of its own
#             (its own matches its driver; both are CUDA 13.0 on the H200
#             machines).
#   not included: cuBLAS, cuBLASLt and cuDNN (about 1 GB, and the GPU
#             machine has them, from its toolkit or from PyTorch's wheels,
#             matched to its driver), libcuda (the driver), glibc.
#   COMMIT, ARCH, BUILD_INFO, MANIFEST: what was packed, from which commit,
#             for which GPU architecture, against which glibc and CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."

compress=${DLRT_BUNDLE_COMPRESS:-xz}
case $compress in
  xz) default_out=.gpu-bundle/dlrt-gpu-bundle.tar.xz ;;
  gz) default_out=.gpu-bundle/dlrt-gpu-bundle.tar.gz ;;
  *) echo "gpu-bundle: DLRT_BUNDLE_COMPRESS must be xz or gz, not '$compress'" >&2; exit 2 ;;
esac
out=${DLRT_BUNDLE_OUT:-$default_out}
max_mb=${DLRT_BUNDLE_MAX_MB:-40}

if [[ $# -ge 1 && -d $1 ]]; then
  build=${1%/}
  cache=$build/CMakeCache.txt
  if [[ ! -f $cache ]]; then
    echo "gpu-bundle: $build has no CMakeCache.txt: not a build folder" >&2
    exit 2
  fi
  if ! grep -q '^DLRT_WITH_CUDA:BOOL=ON' "$cache"; then
    echo "gpu-bundle: $build was configured without CUDA (DLRT_WITH_CUDA is not ON)" >&2
    exit 2
  fi
  arch=$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$cache" | head -n1)
  # Not in the cache: the project's default (CMakeLists.txt) applied.
  [[ -z $arch ]] && arch=$(sed -n 's/^ *set(CMAKE_CUDA_ARCHITECTURES \([0-9 ;]*\)).*/\1/p' CMakeLists.txt | head -n1)
  arch=${arch:-unknown}
  echo "gpu-bundle: packing the existing build $build (CUDA architectures: $arch), not rebuilding"
else
  arch=${1:-90}
  build=build/gpu-bundle
  tools/install-deps.sh
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDLRT_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DDLRT_WARNINGS_AS_ERRORS=ON > /dev/null
  cmake --build "$build" -j "${DLRT_JOBS:-$(nproc)}"
fi

binaries=()
for b in tests/dlrt_tests tests/dlrt_internal_tests bench/dlrt_bench_conv bench/dlrt_bench_pool \
         bench/dlrt_bench_rnn examples/dlrt_filters; do
  if [[ -x $build/$b ]]; then
    binaries+=("$build/$b")
  elif [[ $b == tests/* ]]; then
    echo "gpu-bundle: $build/$b is missing; build the tests first" >&2
    exit 2
  else
    echo "gpu-bundle: $build/$b not built; the bundle goes without it"
  fi
done
libdlrt=$(ls "$build"/runtime/libdlrt.so.* 2> /dev/null | head -n1)
if [[ -z $libdlrt ]]; then
  echo "gpu-bundle: no libdlrt.so in $build/runtime" >&2
  exit 2
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/dlrt-gpu-bundle.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/lib-base" "$stage/cuda"
cp "${binaries[@]}" "$stage/bin/"
cp -P "$build"/runtime/libdlrt.so* "$stage/lib/"

# Sorted by where each library goes; see the header.
glibc='^(linux-vdso|ld-linux[^ ]*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libmvec)\.so'
base='^(libstdc\+\+|libgcc_s|libz|libgomp|libatomic)\.so'
cuda_runtime='^libcudart\.so'
cuda_elsewhere='^(libcuda|libcublas|libcublasLt|libcudnn[a-z_]*|libnvrtc|libnvJitLink)\.so'
missing=()
while read -r name path; do
  [[ $name == libdlrt.so* || $name =~ $glibc || $name =~ $cuda_elsewhere ]] && continue
  if [[ $path == "not" ]]; then
    missing+=("$name")
  elif [[ $name =~ $cuda_runtime ]]; then
    cp -L "$path" "$stage/cuda/$name"
  elif [[ $name =~ $base ]]; then
    cp -L "$path" "$stage/lib-base/$name"
  else
    cp -L "$path" "$stage/lib/$name"
  fi
done < <(for b in "${binaries[@]}" "$libdlrt"; do
           ldd "$b" | awk '$2 == "=>" { print $1, ($3 ~ /^\// ? $3 : "not") }'
         done | sort -u)
if (( ${#missing[@]} > 0 )); then
  echo "gpu-bundle: libraries not found here for the binaries: ${missing[*]}" >&2
  exit 1
fi

commit=$(git describe --always --dirty --abbrev=12 2> /dev/null || echo unknown)
echo "$commit" > "$stage/COMMIT"
# One word per architecture with machine code: "sm_80 sm_90".
if [[ $arch =~ ^[0-9] ]]; then
  tr ' ;' '\n\n' <<< "$arch" | sed -n 's/^\([0-9][0-9]*[af]\{0,1\}\)\(-real\)\{0,1\}$/sm_\1/p' | tr '\n' ' ' \
    | sed 's/ $//' > "$stage/ARCH"
  echo >> "$stage/ARCH"
else
  echo "$arch" > "$stage/ARCH"
fi
max_glibc=$(for f in "$stage"/bin/* "$stage"/lib/* "$stage"/lib-base/* "$stage"/cuda/*; do
              objdump -T "$f" 2> /dev/null | grep -o 'GLIBC_[0-9][0-9.]*'
            done | sort -uV | tail -n1)
max_glibc_dlrt=$(for f in "$stage"/bin/* "$stage"/lib/*; do
                   objdump -T "$f" 2> /dev/null | grep -o 'GLIBC_[0-9][0-9.]*'
                 done | sort -uV | tail -n1)
cuda_version=$(sed -n 's/^CMAKE_CUDA_COMPILER_VERSION:[A-Z]*=//p' "$build/CMakeCache.txt" | head -n1)
[[ -z $cuda_version ]] && cuda_version=$(cat "$build"/CMakeFiles/*/CMakeCUDACompiler.cmake 2> /dev/null \
  | sed -n 's/^set(CMAKE_CUDA_COMPILER_VERSION "\([0-9.]*\)")/\1/p' | head -n1)
{
  echo "built_on=$(. /etc/os-release 2> /dev/null && echo "$PRETTY_NAME" || uname -sr)"
  echo "glibc_here=$(ldd --version 2> /dev/null | head -n1 | grep -o '[0-9][0-9.]*$')"
  echo "glibc_needed_bin_lib=${max_glibc_dlrt#GLIBC_}"
  echo "glibc_needed_all=${max_glibc#GLIBC_}"
  echo "cuda_built_with=${cuda_version:-unknown}"
  echo "build_dir=$(cd "$build" && pwd)"
  echo "build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" | head -n1)"
} > "$stage/BUILD_INFO"
(cd "$stage" && find . -type f -printf '%P %s\n' | sort) > "$stage/MANIFEST"

mkdir -p "$(dirname "$out")"
if [[ $compress == xz ]]; then
  tar -c -f - -C "$stage" . | xz "-${DLRT_BUNDLE_XZ_LEVEL:-6}" -T0 > "$out.tmp"
else
  tar -c -z -f "$out.tmp" -C "$stage" .
fi
mv "$out.tmp" "$out"
size=$(stat -c %s "$out")
echo "gpu-bundle: $out ($(( size / 1024 / 1024 )) MB, $compress${DLRT_BUNDLE_XZ_LEVEL:+ -$DLRT_BUNDLE_XZ_LEVEL}, commit $commit, $(cat "$stage/ARCH"))"
echo "  bin: $(ls "$stage/bin" | tr '\n' ' ')"
echo "  lib: $(ls "$stage/lib" | tr '\n' ' ')"
echo "  lib-base: $(ls "$stage/lib-base" | tr '\n' ' ')"
echo "  cuda: $(ls "$stage/cuda" | tr '\n' ' ')"
echo "  needs glibc ${max_glibc_dlrt#GLIBC_} (with lib-base: ${max_glibc#GLIBC_}); CUDA ${cuda_version:-unknown}"
if (( size > max_mb * 1024 * 1024 )); then
  echo "gpu-bundle: $out is larger than $max_mb MB" >&2
  exit 1
fi
