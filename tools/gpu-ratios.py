#!/usr/bin/env python3
"""Key ratios of dlrt benchmark runs, one line per op and engine pair, for
the summary table of tools/gpu-suite.sh.

    python3 tools/gpu-ratios.py run1.json [run2.json ...]

Reads the JSON with tools/bench_report's own loader (so cases, engines and
the pairs compared are those the report's tables show) and prints, per op
(conv fwd, conv bwd_data, ..., pool fwd, rnn fwd_bwd) and engine pair
(cuda/cudnn, cpu/reference, ...):

    OP<TAB>PAIR<TAB>CASES<TAB>GEOMEAN<TAB>MIN<TAB>MAX<TAB>MEASURED<TAB>FAILED

GEOMEAN is the geometric mean over the cases where both engines were
measured of t(first) / t(second): above 1 the first engine is slower.
MEASURED counts the engine runs with a time, FAILED those that stopped with
an error other than a skip. Prints nothing when no file could be read.
Standard library only.
"""

import importlib.machinery
import importlib.util
import math
import os
import sys


def load_bench_report():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_report")
    loader = importlib.machinery.SourceFileLoader("dlrt_bench_report", path)
    spec = importlib.util.spec_from_loader("dlrt_bench_report", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main(paths):
    report = load_bench_report()
    readable = [p for p in paths if os.path.isfile(p) and os.path.getsize(p) > 0]
    if not readable:
        return 0
    try:
        _, ops = report.load(readable)
    except SystemExit as e:  # bench_report reports unreadable files this way
        print(f"gpu-ratios: {e}", file=sys.stderr)
        return 1
    for op, cases in ops.items():
        measured = sum(1 for engines in cases.values() for c in set(engines.values())
                       if report.measured(c))
        failed = sum(1 for engines in cases.values() for c in set(engines.values())
                     if c.error is not None and not report.is_skip(c.error))
        printed = False
        for pair in report.RATIOS:
            values = [r for r in (report.ratio(e, pair) for e in cases.values())
                      if r is not None and r > 0]
            if not values:
                continue
            geomean = math.exp(sum(math.log(v) for v in values) / len(values))
            print(f"{op}\t{pair[0]}/{pair[1]}\t{len(values)}\t{geomean:.3g}\t"
                  f"{min(values):.3g}\t{max(values):.3g}\t{measured}\t{failed}")
            printed = True
        if not printed:
            print(f"{op}\t-\t0\t\t\t\t{measured}\t{failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
