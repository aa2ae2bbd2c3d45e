#!/usr/bin/env bash
# The main job: build dlrt, run the lecture's filter demo on a CC0 photograph
# (output PNGs in build/default/filters-out), then a quick engine comparison
# on the engines this machine has.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "${DLRT_JOBS:-$(nproc)}"
tools/fetch-sample-images.sh build/default/sample-images
build/default/examples/dlrt_filters build/default/sample-images/camera.png --out build/default/filters-out
build/default/examples/dlrt_filters build/default/sample-images/chelsea.png --out build/default/filters-out/chelsea
if [[ -x tools/bench-quick.sh ]]; then
  tools/bench-quick.sh build/default build/default/bench-quick
fi
