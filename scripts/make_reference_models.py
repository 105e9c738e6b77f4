#!/usr/bin/python3
"""Trains the two Fashion-MNIST reference models and exports them to ONNX.

Writes models/fmnist_cnn.onnx and models/fmnist_mlp.onnx, models/reference_accuracy.json (the
PyTorch test accuracy that tests compare `compsearch evaluate` against), the model card
models/README.md, and tests/data/model/<model>_logits_64.npy (PyTorch logits of the first 64
test images, for the executor test).

Run with Debian's interpreter (python3-torch, python3-onnx): /usr/bin/python3
scripts/make_reference_models.py. CPU only; about two to four minutes on two cores. Seeded, so a
rerun gives the same weights on the same machine and torch build.
"""
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
EPOCHS = {"fmnist_cnn": 4, "fmnist_mlp": 6}
BATCH = 128
LR = 1e-3
SEED = 0


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(f"{DATA}/{prefix}-images-idx3-ubyte.gz")
    y = read_idx(f"{DATA}/{prefix}-labels-idx1-ubyte.gz")
    # The same preprocessing as compsearch's built-in `fashion-mnist`: pixels / 255, no mean/std.
    x = torch.from_numpy(x.astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    return x, torch.from_numpy(y.astype(np.int64))


class SmallCnn(nn.Module):
    """conv3x3(1->16)-ReLU-maxpool2, conv3x3(16->32)-ReLU-maxpool2, fc(1568->64)-ReLU-fc(64->10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(self.flatten(x))))


class Mlp(nn.Module):
    """784-128-64-10 with ReLU. Flattens with x.view(x.size(0), -1), which exports as the
    Shape/Gather/Unsqueeze/Concat/Reshape chain the importer must fold."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def train(model, x, y, epochs):
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for i in range(0, x.shape[0], BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
        print(f"  epoch {epoch + 1}/{epochs}: train loss {total / x.shape[0]:.4f}", flush=True)


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], 1000):
        correct += (model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
    return correct


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    xtr, ytr = load("train")
    xte, yte = load("test")
    results = {}
    for name, cls, opset in [("fmnist_cnn", SmallCnn, 13), ("fmnist_mlp", Mlp, 11)]:
        torch.manual_seed(SEED)
        model = cls()
        print(f"training {name} ({EPOCHS[name]} epochs)", flush=True)
        t0 = time.time()
        train(model, xtr, ytr, EPOCHS[name])
        correct = accuracy(model, xte, yte)
        path = os.path.join(ROOT, "models", name + ".onnx")
        torch.onnx.export(model, xte[:1], path, opset_version=opset, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        with torch.no_grad():
            logits = model(xte[:64]).numpy().astype(np.float32)
        np.save(os.path.join(ROOT, "tests", "data", "model", name + "_logits_64.npy"), logits)
        params = sum(p.numel() for p in model.parameters())
        results[name] = {"accuracy": correct / 10000.0, "correct": correct, "samples": 10000,
                         "epochs": EPOCHS[name], "opset": opset, "params": params,
                         "onnx_bytes": os.path.getsize(path),
                         "train_seconds": round(time.time() - t0, 1),
                         "torch": torch.__version__}
        print(f"  {name}: test accuracy {correct / 100:.2f}% ({correct}/10000), "
              f"{params} params, {os.path.getsize(path)} bytes", flush=True)
    with open(os.path.join(ROOT, "models", "reference_accuracy.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    write_card(results)


def write_card(r):
    cnn, mlp = r["fmnist_cnn"], r["fmnist_mlp"]
    card = f"""# Reference models

Two small Fashion-MNIST classifiers, trained and exported by `scripts/make_reference_models.py`
(`/usr/bin/python3 scripts/make_reference_models.py`, CPU, seed {SEED}). Input `input`
[batch, 1, 28, 28] float32 = pixels / 255 (no mean/std: compsearch's built-in `fashion-mnist`
data), output `logits` [batch, 10]. The batch dimension is symbolic.

| file | architecture | params | MACs/image | opset | epochs | PyTorch test accuracy |
|---|---|---|---|---|---|---|
| `fmnist_cnn.onnx` | conv3x3 1→16, ReLU, maxpool 2 · conv3x3 16→32, ReLU, maxpool 2 · Flatten · fc 1568→64, ReLU · fc 64→10 | {cnn['params']:,} | 1,117,056 | {cnn['opset']} | {cnn['epochs']} | {cnn['accuracy'] * 100:.2f}% ({cnn['correct']}/10000) |
| `fmnist_mlp.onnx` | `x.view(x.size(0), -1)` (exports Shape/Gather/Unsqueeze/Concat/Reshape) · fc 784→128, ReLU · fc 128→64, ReLU · fc 64→10 | {mlp['params']:,} | 109,184 | {mlp['opset']} | {mlp['epochs']} | {mlp['accuracy'] * 100:.2f}% ({mlp['correct']}/10000) |

Training recipe: Adam (lr {LR}), batch {BATCH}, cross-entropy, the 60,000 training images
shuffled with a seeded generator, no augmentation, no weight decay. Accuracy is top-1 over the
10,000 test images, computed by PyTorch {cnn['torch']} before export; it is recorded in
`reference_accuracy.json`, which the tests compare `compsearch evaluate` against.

The torchvision models (`*.torchvision.onnx`, ResNet-18 and MobileNetV2 with random weights,
224×224) are not committed: `scripts/make_torchvision_models.py` makes them.
"""
    with open(os.path.join(ROOT, "models", "README.md"), "w") as f:
        f.write(card)


if __name__ == "__main__":
    sys.exit(main())
