#!/usr/bin/env python3
"""Times PyTorch's CPU recurrent layers on the quick RNN shapes, as a yardstick
for dlrt_bench_rnn's Cpu engine.

    OPENBLAS_NUM_THREADS=1 tools/pytorch_rnn_reference.py [--reps N] [--threads T]
        [--table bench/shapes/quick_rnn.csv] [--compare rnn.json]

For every row of the table (by default bench/shapes/quick_rnn.csv, the
quick set of dlrt_bench_rnn) it builds the matching torch.nn.LSTM, GRU or
RNN (tanh, relu) with the row's sizes and times, in milliseconds:

    forward           inference, under torch.no_grad()
    forward+backward  forward with gradients, then backward of y against a
                      random dy: dx and every weight gradient (what
                      dlrt_bench_rnn's fwd_bwd phase computes)

Inputs are time-major [T, N, I] with every sequence of full length, as in
the benchmark. Each time is the median of --reps runs after two warm-up
runs. With --compare, the dlrt_bench_rnn JSON given is read too, and the
table shows the Cpu engine's median (CpuTasks and Sequential executors) and
the ratio t(pytorch) / t(dlrt cpu_tasks): above 1, dlrt is faster.

PyTorch comes from Debian's python3-torch (1.13) or pip; when the python3 on
PATH lacks it but /usr/bin/python3 has it, the script runs itself there.
Without torch it says so and exits with status 2. OPENBLAS_NUM_THREADS=1 is
PyTorch's fastest setting on a 2-core machine (its own thread pool still
uses the cores); the settings in effect are printed.
"""

import argparse
import csv
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TABLE = os.path.join(os.path.dirname(HERE), "bench", "shapes", "quick_rnn.csv")


def import_torch(argv):
    try:
        import torch  # noqa: F401
        return torch
    except ImportError:
        pass
    system = "/usr/bin/python3"
    also = ""
    if (not os.environ.get("DLRT_PYTORCH_REEXEC") and os.path.exists(system)
            and os.path.realpath(sys.executable) != os.path.realpath(system)):
        import subprocess
        if subprocess.run([system, "-c", "import torch"], capture_output=True).returncode == 0:
            os.environ["DLRT_PYTORCH_REEXEC"] = "1"
            os.execv(system, [system, os.path.abspath(__file__)] + list(argv))
        also = f", nor for {system}"
    sys.stderr.write(
        "pytorch_rnn_reference: PyTorch is not installed for this Python "
        f"({sys.executable}){also}.\n"
        "  Install it (Debian: apt-get install python3-torch; or pip install torch)\n"
        "  and run again. Nothing was timed.\n")
    sys.exit(2)


def read_table(path):
    rows = []
    with open(path) as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    for row in csv.DictReader(lines):
        row = {k.strip(): (v or "").strip() for k, v in row.items()}

        def num(key, fallback=None):
            value = row.get(key, "")
            if value == "":
                if fallback is None:
                    raise SystemExit(f"pytorch_rnn_reference: {path}: column '{key}' is missing")
                return fallback
            return int(value)

        cell = row.get("cell", "")
        cell = "tanh" if cell == "vanilla" else cell
        if cell not in ("tanh", "relu", "lstm", "gru"):
            raise SystemExit(f"pytorch_rnn_reference: {path}: unknown cell '{cell}'")
        hidden = num("hidden")
        rows.append({
            "note": row.get("note", ""),
            "cell": cell,
            "hidden": hidden,
            "input": num("input", hidden),
            "batch": num("batch"),
            "steps": num("timesteps"),
            "layers": num("layers", 1),
            "bidirectional": num("bidirectional", 0) != 0,
        })
    return rows


def label_of(r):
    """dlrt_bench_rnn's case label for a row (bench/bench_rnn.cpp, label_of)."""
    s = f"h{r['hidden']}_n{r['batch']}_t{r['steps']}"
    if r["input"] != r["hidden"]:
        s += f"_i{r['input']}"
    if r["layers"] != 1:
        s += f"_l{r['layers']}"
    if r["bidirectional"]:
        s += "_bi"
    return s


def median_ms(fn, reps):
    fn()
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def time_row(torch, r, reps):
    torch.manual_seed(0)
    kwargs = dict(input_size=r["input"], hidden_size=r["hidden"], num_layers=r["layers"],
                  bidirectional=r["bidirectional"])
    if r["cell"] == "lstm":
        module = torch.nn.LSTM(**kwargs)
    elif r["cell"] == "gru":
        module = torch.nn.GRU(**kwargs)
    else:
        module = torch.nn.RNN(nonlinearity=r["cell"], **kwargs)
    d = 2 if r["bidirectional"] else 1
    x = torch.rand(r["steps"], r["batch"], r["input"]) * 2 - 1
    dy = torch.rand(r["steps"], r["batch"], d * r["hidden"]) * 2 - 1

    def forward():
        with torch.no_grad():
            module(x)

    xg = x.clone().requires_grad_(True)

    def training():
        module.zero_grad(set_to_none=True)
        xg.grad = None
        y, _ = module(xg)
        y.backward(dy)

    return median_ms(forward, reps), median_ms(training, reps)


def dlrt_times(path):
    """(phase, cell, executor, label) -> median seconds of the Cpu engine's quick cases."""
    with open(path) as f:
        data = json.load(f)
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    out, runs = {}, {}
    for entry in data.get("benchmarks", []):
        parts = entry.get("run_name", entry.get("name", "")).split("/")
        if len(parts) < 7 or parts[0] != "rnn" or parts[3] != "cpu" or entry.get("error_occurred"):
            continue
        key = (parts[1], parts[2], parts[4], parts[6])
        seconds = entry["real_time"] * scale[entry.get("time_unit", "ns")]
        if entry.get("run_type") == "aggregate":
            if entry.get("aggregate_name") == "median":
                out[key] = seconds
        else:
            runs.setdefault(key, []).append(seconds)
    for key, values in runs.items():
        out.setdefault(key, statistics.median(values))
    return out


def main(argv):
    parser = argparse.ArgumentParser(description="PyTorch CPU RNN times on the quick RNN shapes.")
    parser.add_argument("--table", default=DEFAULT_TABLE, help="shape table (CSV)")
    parser.add_argument("--reps", type=int, default=10, help="timed runs per case (median)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads (default: PyTorch's own choice)")
    parser.add_argument("--compare", help="dlrt_bench_rnn JSON to compare with")
    args = parser.parse_args(argv)
    torch = import_torch(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = read_table(args.table)
    dlrt = dlrt_times(args.compare) if args.compare else {}

    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, "
          f"median of {args.reps}; table {os.path.relpath(args.table)}")
    header = ["case", "torch fwd", "torch fwd+bwd"]
    if dlrt:
        header += ["dlrt fwd (tasks / seq)", "torch/dlrt fwd", "dlrt fwd+bwd (tasks / seq)",
                   "torch/dlrt fwd+bwd"]
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for r in rows:
        fwd, train = time_row(torch, r, args.reps)
        name = f"{r['cell']} {label_of(r)}" + (f" ({r['note']})" if r["note"] else "")
        cells = [name, f"{fwd:.2f} ms", f"{train:.2f} ms"]
        if dlrt:
            for phase, torch_ms in (("fwd", fwd), ("fwd_bwd", train)):
                tasks = dlrt.get((phase, r["cell"], "cpu_tasks", label_of(r)))
                seq = dlrt.get((phase, r["cell"], "sequential", label_of(r)))
                text = " / ".join(f"{s * 1e3:.2f}" if s else "-" for s in (tasks, seq)) + " ms"
                cells.append(text)
                cells.append(f"{torch_ms / (tasks * 1e3):.2f}" if tasks else "")
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
