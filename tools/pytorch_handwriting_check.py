#!/usr/bin/env python3
"""Loads the handwriting demo's checkpoint into the same network written in
PyTorch and scores fold 0 with it: the parameter names, their layouts and
the layers' semantics (convolution, pooling, a bidirectional LSTM over
variable lengths) all have to agree with dlrt's for the accuracy to match
what dlrt_handwriting printed.

  tools/pytorch_handwriting_check.py DIR/handwriting.safetensors [letter.data.gz]

Needs PyTorch and Python's safetensors package (not part of CI).
"""
import argparse
import gzip
import json
import os

import numpy as np
import torch
from safetensors.torch import load_file


class HandwritingNet(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.cnn = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(256, 128), torch.nn.ReLU())
        self.lstm = torch.nn.LSTM(128, hidden, bidirectional=True)
        self.classifier = torch.nn.Linear(2 * hidden, 26)

    def forward(self, images, lengths):
        # images [T, B, 1, 16, 8]
        T, B = images.shape[:2]
        features = self.cnn(images.reshape(T * B, 1, 16, 8)).reshape(T, B, 128)
        packed = torch.nn.utils.rnn.pack_padded_sequence(features, lengths, enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)
        return self.classifier(y)


def read_words(path, fold):
    words, current = [], None
    with gzip.open(path, "rt") as f:
        for line in f:
            fields = line.rstrip("\t\n").split("\t")
            if current is None:
                current = {"fold": int(fields[5]), "letters": [], "images": []}
            current["letters"].append(ord(fields[1]) - ord("a"))
            current["images"].append(np.array(fields[6:], dtype=np.float32).reshape(16, 8))
            if fields[2] == "-1":
                if current["fold"] == fold:
                    words.append(current)
                current = None
    return words


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("data", nargs="?",
                        default=os.path.join(here, "..", "..", "shared", "data", "ocr-letters",
                                             "letter.data.gz"))
    args = parser.parse_args()
    state = load_file(args.checkpoint)
    hidden = state["lstm.weight_hh_l0"].shape[1]
    model = HandwritingNet(hidden)
    model.load_state_dict(state)  # strict: every name and shape must match
    model.eval()
    words = read_words(args.data, 0)
    right = total = words_right = 0
    with torch.no_grad():
        for start in range(0, len(words), 128):
            batch = words[start:start + 128]
            T = max(len(w["letters"]) for w in batch)
            images = torch.zeros(T, len(batch), 1, 16, 8)
            for b, w in enumerate(batch):
                for t, image in enumerate(w["images"]):
                    images[t, b, 0] = torch.from_numpy(image)
            lengths = torch.tensor([len(w["letters"]) for w in batch])
            predicted = model(images, lengths).argmax(dim=2)
            for b, w in enumerate(batch):
                guess = predicted[:len(w["letters"]), b].tolist()
                right += sum(int(g == l) for g, l in zip(guess, w["letters"]))
                total += len(w["letters"])
                words_right += int(guess == w["letters"])
    metrics_path = os.path.join(os.path.dirname(args.checkpoint), "handwriting-metrics.json")
    print("PyTorch %s on the dlrt checkpoint: fold 0 letters %.2f%% (%d of %d), words %.2f%%" %
          (torch.__version__, 100.0 * right / total, right, total, 100.0 * words_right / len(words)))
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            metrics = json.load(f)
        print("dlrt:                              fold 0 letters %.2f%%, words %.2f%%" %
              (100 * metrics["test_letter_accuracy"], 100 * metrics["test_word_accuracy"]))


if __name__ == "__main__":
    main()
