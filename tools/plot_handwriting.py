#!/usr/bin/env python3
"""Draws the handwriting demo's learning curve and test confusion matrix
from the metrics it writes (dlrt_handwriting --out DIR writes
DIR/handwriting-metrics.json).

  tools/plot_handwriting.py DIR/handwriting-metrics.json OUTDIR

writes OUTDIR/learning_curve.png (training loss, training and test letter
accuracy, test word accuracy per epoch) and OUTDIR/confusion.png (fold 0,
rows the true letter, normalised per row; the diagonal is left out of the
colour scale so that the mistakes show).
"""
import argparse
import json
import os
import string

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curve(metrics, path):
    epochs = [e["epoch"] for e in metrics["epochs"]]
    fig, loss_axis = plt.subplots(figsize=(7, 4), dpi=110)
    loss_axis.plot(epochs, [e["train_loss"] for e in metrics["epochs"]], "o-", color="tab:red",
                   label="training loss")
    loss_axis.set_yscale("log")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("cross-entropy per letter (log scale)")
    accuracy_axis = loss_axis.twinx()
    for key, label, colour in (("train_letter_accuracy", "training letters", "tab:blue"),
                               ("test_letter_accuracy", "test letters (fold 0)", "tab:green"),
                               ("test_word_accuracy", "test words (fold 0)", "tab:purple")):
        accuracy_axis.plot(epochs, [100 * e[key] for e in metrics["epochs"]], "s--", color=colour,
                           label=label, markersize=4)
    accuracy_axis.set_ylabel("accuracy (%)")
    accuracy_axis.set_ylim(min(50, 100 * min(e["test_word_accuracy"] for e in metrics["epochs"])), 100)
    lines = loss_axis.get_legend_handles_labels()
    more = accuracy_axis.get_legend_handles_labels()
    accuracy_axis.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize=8)
    loss_axis.set_title("dlrt handwriting: CNN + bidirectional LSTM, %s mode, %.0f s; fold 0: "
                        "%.2f%% letters, %.2f%% words" %
                        (metrics["mode"], metrics["seconds"], 100 * metrics["test_letter_accuracy"],
                         100 * metrics["test_word_accuracy"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def confusion(metrics, path):
    counts = np.array(metrics["confusion"], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    off_diagonal = rates.copy()
    np.fill_diagonal(off_diagonal, np.nan)
    fig, axis = plt.subplots(figsize=(6.5, 6), dpi=110)
    image = axis.imshow(off_diagonal, cmap="magma_r", vmin=0,
                        vmax=max(np.nanmax(off_diagonal), 1e-3))
    letters = list(string.ascii_uppercase)
    axis.set_xticks(range(26), letters, fontsize=7)
    axis.set_yticks(range(26), letters, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true letter")
    for i in range(26):
        if rows[i, 0] > 0:
            axis.text(i, i, "%d" % round(100 * rates[i, i]), ha="center", va="center", fontsize=5,
                      color="tab:green")
    fig.colorbar(image, ax=axis, fraction=0.046, label="share of the true letter's test images")
    axis.set_title("test confusion (fold 0; green: % right per letter)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics")
    parser.add_argument("outdir")
    args = parser.parse_args()
    with open(args.metrics) as f:
        metrics = json.load(f)
    os.makedirs(args.outdir, exist_ok=True)
    learning_curve(metrics, os.path.join(args.outdir, "learning_curve.png"))
    confusion(metrics, os.path.join(args.outdir, "confusion.png"))
    print("wrote %s and %s" % (os.path.join(args.outdir, "learning_curve.png"),
                               os.path.join(args.outdir, "confusion.png")))


if __name__ == "__main__":
    main()
