#!/usr/bin/env bash
# Installs, with apt, whatever of dlrt's build and test dependencies is
# missing (Debian 12 package names). The CUDA toolkit and cuDNN are not apt
# packages here: without nvcc the build simply leaves the GPU engines out.
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config libopenblas-dev libopenblas-pthread-dev libgtest-dev libgmock-dev
          libbenchmark-dev libpng-dev python3 python3-matplotlib python3-numpy python3-venv clang libclang-rt-dev
          clang-format libomp-dev libdnnl-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Python's safetensors package (PyPI, for the checkpoint interop test) goes
# into a virtual environment of dlrt's own, never into the system Python.
install_python_packages() {
  local env="${DLRT_PYENV:-$HOME/.cache/dlrt/pyenv}"
  if [[ -x "$env/bin/python3" ]] && "$env/bin/python3" -c "import safetensors, numpy" 2>/dev/null; then
    return 0
  fi
  echo "installing Python's safetensors into $env"
  /usr/bin/python3 -m venv --system-site-packages "$env" &&
    "$env/bin/python3" -m pip install -q safetensors ||
    echo "warning: could not install safetensors; the interop test will skip" >&2
}

if ((${#missing[@]} == 0)); then
  install_python_packages
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_python_packages
