#!/usr/bin/env python3
"""Where NVIDIA's Python wheels keep CUDA libraries, for tools/gpu-suite.sh.

    python3 tools/gpu-wheel-libs.py NAME [NAME ...]

Searches the `nvidia` package trees this interpreter can import (every
sys.path entry's nvidia/ folder and the nvidia namespace package's own path:
site-packages, user site-packages, PYTHONPATH) for files named NAME, e.g.
libcudnn.so.9 or libcublas.so.13, and prints one line per name found,
"NAME<TAB>FOLDER", the first match in search order. Both wheel layouts are
covered: one folder per library (nvidia/cudnn/lib, nvidia/cublas/lib) and
the CUDA 13 layout with one shared folder (nvidia/cu13/lib). Prints nothing
for a name it does not find; exits 0 either way. Standard library only; it
imports nothing from the wheels, so it loads no CUDA library itself.
"""

import os
import sys


def nvidia_roots():
    roots = []
    try:
        import nvidia  # a namespace package in the wheels

        roots += [str(p) for p in getattr(nvidia, "__path__", [])]
    except Exception:
        pass
    for entry in sys.path:
        candidate = os.path.join(entry or os.getcwd(), "nvidia")
        if os.path.isdir(candidate):
            roots.append(candidate)
    seen, unique = set(), []
    for root in roots:
        key = os.path.abspath(root)
        if key not in seen:
            seen.add(key)
            unique.append(key)
    return unique


def main(names):
    wanted = list(dict.fromkeys(names))
    found = {}
    for root in nvidia_roots():
        base_depth = root.rstrip(os.sep).count(os.sep)
        for folder, dirs, files in os.walk(root, followlinks=True):
            # nvidia/<package>/lib/<file> is three levels down; allow one more.
            if folder.count(os.sep) - base_depth >= 4:
                dirs[:] = []
            dirs.sort()
            for name in wanted:
                if name not in found and name in files:
                    found[name] = folder
        if len(found) == len(wanted):
            break
    for name in wanted:
        if name in found:
            print(f"{name}\t{found[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
