#!/usr/bin/env bash
# Installs, with apt, whatever of dlrt's build and test dependencies is
# missing (Debian 12 package names). The CUDA toolkit and cuDNN are not apt
# packages here: without nvcc the build simply leaves the GPU engines out.
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config libopenblas-dev libopenblas-pthread-dev libgtest-dev libgmock-dev
          libbenchmark-dev libpng-dev python3 python3-matplotlib clang libclang-rt-dev
          clang-format libomp-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0
echo "installing: ${missing[*]}"
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
