#!/usr/bin/env python3
"""Renders one play of a dlrt trace (Chrome trace-event JSON, as written by
DLRT_TRACE=path.json or dlrt::trace_to) as a PNG timeline: one row per
worker thread or stream, one bar per node, coloured by layer and direction,
so that the wavefront across layers and the overlap of directions show.

  tools/trace_timeline.py trace.json out.png [--play SUBSTRING] [--title TEXT]

--play picks the last play whose name contains SUBSTRING (default: the
last play in the file); names look like "rnn lstm forward L2 D2 T50 N16 H256
[cpu_tasks]".
"""
import argparse
import json
import re
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace")
    parser.add_argument("png")
    parser.add_argument("--play", default="")
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    with open(args.trace) as f:
        events = json.load(f)["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    plays = [pid for pid, name in sorted(names.items()) if args.play in name]
    if not plays:
        sys.exit(f"no play matching {args.play!r}; plays: {sorted(set(names.values()))}")
    pid = plays[-1]
    tracks = {e["tid"]: e["args"]["name"] for e in events
              if e.get("ph") == "M" and e.get("name") == "thread_name" and e["pid"] == pid}
    nodes = [e for e in events if e.get("ph") == "X" and e["pid"] == pid]
    if not nodes:
        sys.exit("the chosen play has no nodes")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    t0 = min(e["ts"] for e in nodes)
    palette = plt.get_cmap("tab10")
    unit = re.compile(r"L(\d+) (fwd|rev)")
    colour_of, legend = {}, []
    for e in nodes:
        m = unit.search(e["name"])
        key = f"layer {m.group(1)} {'forward' if m.group(2) == 'fwd' else 'reverse'}" if m else "other"
        if key not in colour_of:
            colour_of[key] = palette(len(colour_of) % 10)
            legend.append(Patch(color=colour_of[key], label=key))
        e["_colour"] = colour_of[key]
        e["_proj"] = "proj" in e["name"] or "dW" in e["name"] or "db" in e["name"]

    rows = sorted(tracks) if tracks else sorted({e["tid"] for e in nodes})
    fig, ax = plt.subplots(figsize=(12, 1.0 + 0.6 * len(rows)))
    for row, tid in enumerate(rows):
        for e in (n for n in nodes if n["tid"] == tid):
            ax.barh(row, e["dur"] / 1000.0, left=(e["ts"] - t0) / 1000.0, height=0.8,
                    color=e["_colour"], edgecolor="black" if e["_proj"] else "none",
                    linewidth=0.4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([tracks.get(t, str(t)) for t in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the play started")
    ax.set_title(args.title or names[pid])
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"{args.png}: {len(nodes)} nodes on {len(rows)} tracks, "
          f"{(max(e['ts'] + e['dur'] for e in nodes) - t0) / 1000.0:.2f} ms")


if __name__ == "__main__":
    main()
