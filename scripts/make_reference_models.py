#!/usr/bin/python3
"""Trains the Fashion-MNIST reference models and exports them to ONNX.

Writes models/<model>.onnx (fmnist_cnn, fmnist_mlp, fmnist_resnet8), models/reference_accuracy.json
(the PyTorch test accuracy that tests compare `compsearch evaluate` against), the model card
models/README.md, and tests/data/model/<model>_logits_64.npy (PyTorch logits of the first 64
test images, for the executor test).

Run with Debian's interpreter (python3-torch, python3-onnx): /usr/bin/python3
scripts/make_reference_models.py [--state-dir DIR [--train-only]] [model ...]. Without model
names it makes every model; with names it makes only those and keeps the other entries of
reference_accuracy.json. CPU only, two threads; each model takes minutes on two free cores, half
an hour on busy ones (train_seconds in the JSON). Seeded, so a rerun gives the same weights on the
same machine and torch build.

--state-dir DIR saves each trained model's weights as DIR/<model>.pt (with <model>.json: training
time, torch version), and loads them from there instead of training when they exist: train on a
faster machine with --train-only (nothing else written), then export here with the same DIR.
The data folder is $FASHION_MNIST_DIR, by default Debian's /usr/share/datasets/fashion-mnist.
"""
import argparse
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
DATA = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
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


def conv_bn(cin, cout, kernel, stride, groups=1):
    """Conv without bias + BatchNorm; the ONNX export folds the BatchNorm into the Conv."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                                   bias=False), nn.BatchNorm2d(cout))


class DsResidualBlock(nn.Module):
    """Depthwise 3x3 (stride s) - ReLU - pointwise 1x1, plus the input (identity) or a strided
    1x1 projection of it, then ReLU: the residual Add joins the pointwise and shortcut outputs."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw = conv_bn(cin, cin, 3, stride, groups=cin)
        self.pw = conv_bn(cin, cout, 1, 1)
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.pw(F.relu(self.dw(x)))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet8Ds(nn.Module):
    """MLPerf-Tiny ResNet-8 / DS-CNN style: stem conv3x3 1->24 stride 2 (14x14), three
    depthwise-separable residual blocks 24->24 (identity), 24->48 stride 2 and 48->96 stride 2
    (1x1 projection shortcuts), global average pool, fc 96->10."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(1, 24, 3, 2)
        self.block1 = DsResidualBlock(24, 24, 1)
        self.block2 = DsResidualBlock(24, 48, 2)
        self.block3 = DsResidualBlock(48, 96, 2)
        self.fc = nn.Linear(96, 10)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(F.relu(self.stem(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# name -> (class, opset, epochs, architecture for the card)
MODELS = {
    "fmnist_cnn": (SmallCnn, 13, 4, "conv3x3 1→16, ReLU, maxpool 2 · conv3x3 16→32, ReLU, "
                   "maxpool 2 · Flatten · fc 1568→64, ReLU · fc 64→10"),
    "fmnist_mlp": (Mlp, 11, 6, "`x.view(x.size(0), -1)` (exports Shape/Gather/Unsqueeze/Concat/"
                   "Reshape) · fc 784→128, ReLU · fc 128→64, ReLU · fc 64→10"),
    "fmnist_resnet8": (ResNet8Ds, 13, 3, "conv3x3 1→24 stride 2, BN, ReLU · 3 residual blocks "
                       "[depthwise conv3x3 (group = channels), BN, ReLU · conv1x1, BN · Add "
                       "(identity, or conv1x1 stride 2 + BN projection) · ReLU]: 24→24, 24→48 "
                       "stride 2, 48→96 stride 2 · GlobalAveragePool · Flatten · fc 96→10 (BN "
                       "folded into the convs on export)"),
}


def macs_per_image(model):
    """Multiply-accumulates of the Conv2d and Linear layers for one 1x28x28 image."""
    total = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            k = module.in_features
        total.append(output[0].numel() * k)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in handles:
        h.remove()
    return sum(total)


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


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", choices=[[]] + list(MODELS), metavar="model",
                        help=f"models to make (default: all of {', '.join(MODELS)})")
    parser.add_argument("--state-dir", help="save trained weights there; load them if present")
    parser.add_argument("--train-only", action="store_true",
                        help="with --state-dir: train and save the weights, write nothing else")
    args = parser.parse_args(argv)
    if args.train_only and not args.state_dir:
        parser.error("--train-only needs --state-dir")
    names = args.models
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    xtr, ytr = load("train")
    xte, yte = load("test")
    json_path = os.path.join(ROOT, "models", "reference_accuracy.json")
    results = {}
    if names and os.path.exists(json_path):
        with open(json_path) as f:
            results = json.load(f)
    for name in names or list(MODELS):
        cls, opset, epochs, _ = MODELS[name]
        torch.manual_seed(SEED)
        model = cls()
        state = os.path.join(args.state_dir, name) if args.state_dir else None
        if state and os.path.exists(state + ".pt") and not args.train_only:
            model.load_state_dict(torch.load(state + ".pt"))
            with open(state + ".json") as f:
                trained = json.load(f)
            print(f"{name}: weights from {state}.pt ({trained})", flush=True)
        else:
            print(f"training {name} ({epochs} epochs)", flush=True)
            t0 = time.time()
            train(model, xtr, ytr, epochs)
            trained = {"train_seconds": round(time.time() - t0, 1), "torch": torch.__version__}
            if state:
                os.makedirs(args.state_dir, exist_ok=True)
                torch.save(model.state_dict(), state + ".pt")
                with open(state + ".json", "w") as f:
                    json.dump(trained, f)
            if args.train_only:
                print(f"  {name}: test accuracy {accuracy(model, xte, yte) / 100:.2f}%, "
                      f"weights saved to {state}.pt", flush=True)
                continue
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
                         "epochs": epochs, "opset": opset, "params": params,
                         "onnx_bytes": os.path.getsize(path),
                         "train_seconds": trained["train_seconds"],
                         "torch": torch.__version__}
        if trained["torch"] != torch.__version__:
            results[name]["trained_with_torch"] = trained["torch"]
        print(f"  {name}: test accuracy {correct / 100:.2f}% ({correct}/10000), "
              f"{params} params, {os.path.getsize(path)} bytes", flush=True)
    if args.train_only:
        return 0
    results = {n: results[n] for n in MODELS if n in results}
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    write_card(results)


def write_card(r):
    rows = "\n".join(
        f"| `{name}.onnx` | {arch} | {r[name]['params']:,} | {macs_per_image(cls()):,} | "
        f"{r[name]['opset']} | {r[name]['epochs']} | {r[name]['accuracy'] * 100:.2f}% "
        f"({r[name]['correct']}/10000) |"
        for name, (cls, _, _, arch) in MODELS.items() if name in r)
    elsewhere = "".join(
        f"\n`{name}` was trained with PyTorch {r[name]['trained_with_torch']} on a free machine "
        f"({r[name]['train_seconds']} s; `--train-only --state-dir DIR`), then loaded, evaluated "
        f"and exported with PyTorch {r[name]['torch']} (`--state-dir DIR`).\n"
        for name in MODELS if name in r and "trained_with_torch" in r[name])
    card = f"""# Reference models

Three small Fashion-MNIST classifiers, trained and exported by `scripts/make_reference_models.py`
(`/usr/bin/python3 scripts/make_reference_models.py [model ...]`, CPU, seed {SEED}). Input `input`
[batch, 1, 28, 28] float32 = pixels / 255 (no mean/std: compsearch's built-in `fashion-mnist`
data), output `logits` [batch, 10]. The batch dimension is symbolic.

| file | architecture | params | MACs/image | opset | epochs | PyTorch test accuracy |
|---|---|---|---|---|---|---|
{rows}

`fmnist_resnet8.onnx` is the residual / depthwise model (MLPerf-Tiny ResNet-8 and DS-CNN style):
the layers its Add nodes join share one prune slot in the search (same kind and ratio), and its
depthwise convolutions have group = channels.
{elsewhere}
Training recipe: Adam (lr {LR}), batch {BATCH}, cross-entropy, the 60,000 training images
shuffled with a seeded generator, no augmentation, no weight decay. Accuracy is top-1 over the
10,000 test images, computed by PyTorch {r[next(iter(r))]['torch']} before export; it is recorded in
`reference_accuracy.json`, which the tests compare `compsearch evaluate` against.

The torchvision models (`*.torchvision.onnx`, ResNet-18 and MobileNetV2 with random weights,
224×224) are not committed: `scripts/make_torchvision_models.py` makes them.
"""
    with open(os.path.join(ROOT, "models", "README.md"), "w") as f:
        f.write(card)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
