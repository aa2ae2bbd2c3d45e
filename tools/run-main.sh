#!/usr/bin/env bash
# The main job: build dlrt, run the lecture's filter demo on a CC0 photograph
# (output PNGs in build/default/filters-out), the handwriting demo in quick
# mode (CNN + bidirectional LSTM on the OCR letters, figures and checkpoint
# in build/default/handwriting-out), style transfer in quick mode (Gatys et
# al. with a random-weight CNN, PNGs in build/default/style-out), the
# scheduler playing a bidirectional LSTM (Sequential against CpuTasks, with
# its timeline in build/default/rnn-out), then a quick engine comparison on
# the engines this machine has.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "${DLRT_JOBS:-$(nproc)}"
tools/fetch-sample-images.sh build/default/sample-images
build/default/examples/dlrt_filters build/default/sample-images/camera.png --out build/default/filters-out
build/default/examples/dlrt_filters build/default/sample-images/chelsea.png --out build/default/filters-out/chelsea
build/default/examples/dlrt_handwriting --quick --out build/default/handwriting-out
build/default/examples/dlrt_style_transfer --quick --out build/default/style-out
build/default/examples/dlrt_rnn_schedule --out build/default/rnn-out
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  /usr/bin/python3 tools/plot_handwriting.py build/default/handwriting-out/handwriting-metrics.json \
    build/default/handwriting-out
  /usr/bin/python3 tools/trace_timeline.py build/default/rnn-out/rnn_forward_trace.json \
    build/default/rnn-out/rnn_forward_trace.png
fi
if [[ -x tools/bench-quick.sh ]]; then
  tools/bench-quick.sh build/default build/default/bench-quick
fi
