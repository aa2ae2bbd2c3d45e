"""safetensors interop: Python's `safetensors` package (with numpy) reads a
checkpoint dlrt wrote, and dlrt reads one Python wrote.

  safetensors_interop.py PEER_EXE WORK_DIR

Exits 77 (ctest's skip code) with the reason when `safetensors` or numpy is
not importable by this interpreter.
"""
import os
import subprocess
import sys

try:
    import numpy as np
    from safetensors.numpy import load_file, save_file
except ImportError as e:
    print(f"skipped: Python's safetensors package is not installed ({e}); "
          "tools/install-deps.sh installs it into ~/.cache/dlrt/pyenv")
    sys.exit(77)


def known():
    return {
        "conv.weight": (0.25 * np.arange(54, dtype=np.float32) - 3).reshape(2, 3, 3, 3),
        "lstm.weight_ih_l0_reverse": (1 / np.arange(1, 41, dtype=np.float32)).reshape(8, 5),
        "steps": (np.arange(6, dtype=np.int32) ** 2 - 7).astype(np.int32),
    }


def main():
    peer, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    from_dlrt = os.path.join(work, "from_dlrt.safetensors")
    subprocess.run([peer, "write", from_dlrt], check=True)
    got = load_file(from_dlrt)
    want = known()
    assert sorted(got) == sorted(want), f"names {sorted(got)} != {sorted(want)}"
    for name, value in want.items():
        assert got[name].dtype == value.dtype, f"{name}: dtype {got[name].dtype}"
        assert got[name].shape == value.shape, f"{name}: shape {got[name].shape}"
        assert np.array_equal(got[name], value), f"{name}: values differ"
    print(f"safetensors (Python) read the file dlrt wrote: {len(got)} tensors match")

    from_python = os.path.join(work, "from_python.safetensors")
    save_file(want, from_python, metadata={"written_by": "python"})
    subprocess.run([peer, "check", from_python], check=True)


if __name__ == "__main__":
    main()
