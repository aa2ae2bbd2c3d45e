#!/usr/bin/env bash
# Puts CC0 photographs for the demos into DIR (default build/default/sample-images):
# camera.png (CC0, Lav Varshney) and chelsea.png / coffee.png (CC0, Stefan van der
# Walt / Rachel Michetti), from scikit-image's sample data as Debian packages it
# in python3-skimage. The package is downloaded and unpacked, not installed.
# Two textures for the style-transfer demo, both CC0 from CC0Textures (Gravel04,
# Bricks25) as skimage/data/_fetchers.py says: gravel.png and brick.png.
set -euo pipefail
dir=${1:-build/default/sample-images}
mkdir -p "$dir"
if [[ -f "$dir/camera.png" && -f "$dir/chelsea.png" && -f "$dir/coffee.png" &&
      -f "$dir/gravel.png" && -f "$dir/brick.png" ]]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download python3-skimage >/dev/null 2>&1) || {
  apt-get update -qq >/dev/null && (cd "$work" && apt-get download python3-skimage >/dev/null)
}
dpkg -x "$work"/python3-skimage_*.deb "$work/unpacked"
data="$work/unpacked/usr/lib/python3/dist-packages/skimage/data"
cp "$data/camera.png" "$data/chelsea.png" "$data/coffee.png" "$data/gravel.png" "$data/brick.png" "$dir/"
echo "sample images in $dir: camera.png chelsea.png coffee.png gravel.png brick.png (CC0, from scikit-image via Debian's python3-skimage)"
