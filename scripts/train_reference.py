#!/usr/bin/python3
"""PyTorch reference for `compsearch train` / `compsearch finetune` (issue 9, item 7).

Loads the same ONNX weights (python3-onnx -> numpy -> the torch modules of
scripts/make_reference_models.py), trains on the same Fashion-MNIST training images in the same
order (model/optimizer.h epoch_permutation: SplitMix64 Fisher-Yates, reimplemented below) with
the same recipe semantics, written independently of compsearch's kernels:
  * DESIGN.md rules 1-8: masks from the starting weights (unstructured: stable sort of |w|, ties to
    the lower flat index; channel: L2 norms; N:M: runs of M in the reduction row), symmetric
    narrow-range quantization in float64 per tensor / channel / group, XNOR binarization with
    sgn(0) = +1, IEEE half; activations through torch.fake_quantize_per_tensor_affine with a
    moving-average min/max range (averaging constant 0.01) that starts from a min/max calibration
    pass over the first 512 training images;
  * straight-through estimator: identity for 2..8 bits (min/max scales cover every weight),
    |w| <= 1 for binary layers, zero for pruned weights;
  * Hinton distillation against the uncompressed model:
    alpha*T^2*KL(softmax(t/T) || softmax(s/T)) [batchmean] + (1-alpha)*CE(s, y);
  * PyTorch's Adam/AdamW/SGD, the learning rate set per step from the schedule of
    model/optimizer.h (warm-up, constant / step / cosine).
Prints the BLAS torch loaded, the PTQ accuracy (epoch 0), per-epoch test accuracy and epoch
time, and a final JSON line. Uses 2 threads unless --threads says otherwise.

  /usr/bin/python3 scripts/train_reference.py --model models/fmnist_cnn.onnx \
      --recipe RECIPE.json [--epochs N] [--samples N] [--seed 0] [--threads 2] [--json OUT.json]

Without --recipe it trains the plain float model with cross-entropy (`compsearch train`).
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = os.environ.get("COMPSEARCH_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


# ---------------------------------------------------------------- data and order

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
    x = torch.from_numpy(x.astype(np.float32) / np.float32(255.0)).unsqueeze(1)
    return x, torch.from_numpy(y.astype(np.int64))


def epoch_permutation(n, seed, epoch):
    """model::epoch_permutation: SplitMix64 seeded with seed ^ (epoch * golden), Fisher-Yates
    from the back."""
    s = (seed ^ ((epoch * GOLDEN) & M64)) & M64
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        s = (s + GOLDEN) & M64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        j = z % (i + 1)
        p[i], p[j] = p[j], p[i]
    return torch.tensor(p, dtype=torch.int64)


# ---------------------------------------------------------------- models from ONNX

class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)
        self.layers = ["conv1", "conv2", "fc1", "fc2"]

    def forward(self, x, q):
        x = F.max_pool2d(F.relu(q.conv(self.conv1, "conv1", x, padding=1)), 2)
        x = F.max_pool2d(F.relu(q.conv(self.conv2, "conv2", x, padding=1)), 2)
        x = F.relu(q.linear(self.fc1, "fc1", torch.flatten(x, 1)))
        return q.linear(self.fc2, "fc2", x)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)
        self.layers = ["fc1", "fc2", "fc3"]

    def forward(self, x, q):
        x = x.view(x.size(0), -1)
        x = F.relu(q.linear(self.fc1, "fc1", x))
        x = F.relu(q.linear(self.fc2, "fc2", x))
        return q.linear(self.fc3, "fc3", x)


def load_onnx_model(path):
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    model = SmallCnn() if "conv1.weight" in weights else Mlp()
    state = model.state_dict()
    for name in state:
        if name not in weights:
            sys.exit(f"{path}: no initializer {name}")
        w = torch.from_numpy(np.array(weights[name], dtype=np.float32))
        if w.shape != state[name].shape:
            w = w.t().contiguous()  # Gemm with transB = 0 / MatMul store [K, N]
        state[name].copy_(w)
    return model


# ---------------------------------------------------------------- recipe semantics

def parse_granularity(s):
    if s == "per_tensor":
        return 0
    if s == "per_channel":
        return None
    return int(s.split(":")[1])


def setting_for(recipe, layer):
    s = {"w_bits": 32, "granularity": "per_channel", "prune": None, "a_bits": 32}
    s.update(recipe.get("default", {}))
    s.update(recipe.get("layers", {}).get(layer, {}))
    if s["prune"] is not None and s["prune"].get("kind", "none") == "none":
        s["prune"] = None
    return s


def to_rows(w):
    """Weight -> [O, R] view in reduction-row order ([kh][kw][I] for Conv)."""
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1) if w.dim() == 4 else w


def from_rows(rows, like):
    if like.dim() == 4:
        o, i, kh, kw = like.shape
        return rows.reshape(o, kh, kw, i).permute(0, 3, 1, 2)
    return rows


def prune_mask(w, prune):
    """1 = kept, from the starting weights (rules 2-4)."""
    kind = prune["kind"]
    keep = torch.ones_like(w, dtype=torch.bool)
    if kind == "unstructured":
        flat = w.reshape(-1).abs()
        k = int(math.floor(prune["ratio"] * flat.numel()))
        idx = torch.sort(flat, stable=True).indices[:k]
        keep.view(-1)[idx] = False
    elif kind == "channel":
        norms = to_rows(w.double()).pow(2).sum(1).sqrt()
        k = int(math.floor(prune["ratio"] * w.shape[0]))
        keep[torch.sort(norms, stable=True).indices[:k]] = False
    else:
        n, m = (int(v) for v in kind.split(":"))
        rows = to_rows(w).abs()
        o, r = rows.shape
        runs = rows.reshape(o, r // m, m)
        order = torch.sort(runs, dim=2, descending=True, stable=True).indices
        kr = torch.zeros_like(runs, dtype=torch.bool)
        kr.scatter_(2, order[:, :, :n], True)
        keep = from_rows(kr.reshape(o, r), w).contiguous()
    return keep


def group_spans(o, r, gran):
    if gran == 0:
        return [(slice(None), slice(None))]
    if gran is None:
        return [(slice(None), slice(None))]  # handled vectorised per row
    return [(slice(None), slice(b, min(r, b + gran))) for b in range(0, r, gran)]


def quantize_rows(rows, bits, gran):
    """float64 rows [O, R] -> fake-quantized rows (rule 5)."""
    qmax = 2 ** (bits - 1) - 1
    out = torch.empty_like(rows)
    if gran == 0:
        amax = rows.abs().max()
        scale = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
        return torch.clamp(torch.round(rows / scale), -qmax, qmax) * scale
    for sl in group_spans(*rows.shape, gran):
        x = rows[sl]
        amax = x.abs().amax(1, keepdim=True)
        scale = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
        out[sl] = torch.clamp(torch.round(x / scale), -qmax, qmax) * scale
    return out


def binarize_rows(rows, keep_rows, gran):
    out = torch.empty_like(rows)
    spans = group_spans(*rows.shape, gran)
    for sl in spans:
        x, k = rows[sl], keep_rows[sl]
        if gran == 0:
            cnt = k.sum()
            alpha = (x.abs() * k).sum() / cnt if cnt > 0 else torch.zeros((), dtype=x.dtype)
        else:
            cnt = k.sum(1, keepdim=True)
            alpha = torch.where(cnt > 0, (x.abs() * k).sum(1, keepdim=True) / cnt.clamp(min=1),
                                torch.zeros_like(cnt, dtype=x.dtype))
        sgn = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
        out[sl] = alpha * sgn * k
    return out


def compress_weight(w, s, keep):
    """Effective weight of the master `w` (no grad) under setting `s`, float32."""
    bits = s["w_bits"]
    with torch.no_grad():
        wm = w * keep if keep is not None else w
        if bits == 32:
            return wm.clone()
        if bits == 16:
            return wm.half().float()
        gran = parse_granularity(s.get("granularity", "per_channel"))
        rows = to_rows(wm.double())
        if bits == 1:
            k = to_rows(keep) if keep is not None else torch.ones_like(rows, dtype=torch.bool)
            out = binarize_rows(rows, k, gran)
        else:
            out = quantize_rows(rows, bits, gran)
        return from_rows(out, wm).float().contiguous()


class FakeWeight(torch.autograd.Function):
    """Forward: the effective weight; backward: STE masked by `pass_mask`."""

    @staticmethod
    def forward(ctx, w, effective, pass_mask):
        ctx.save_for_backward(pass_mask)
        return effective

    @staticmethod
    def backward(ctx, grad):
        pass_mask, = ctx.saved_tensors
        return grad * pass_mask, None, None


class Quantizer:
    """Applies a recipe to the modules' weights and inputs during forward."""

    def __init__(self, model, recipe, ema=0.01):
        self.model, self.recipe, self.ema = model, recipe, ema
        self.settings = {l: setting_for(recipe, l) for l in model.layers} if recipe else {}
        self.keep, self.bias_keep, self.ranges = {}, {}, {}
        self.training = False
        self.calibrating = None
        for l, s in self.settings.items():
            mod = getattr(model, l)
            if s["prune"] is not None:
                keep = prune_mask(mod.weight.data, s["prune"])
                self.keep[l] = keep
                with torch.no_grad():
                    mod.weight.mul_(keep)
                    if s["prune"]["kind"] == "channel":
                        bk = keep.reshape(keep.shape[0], -1).any(1)
                        self.bias_keep[l] = bk
                        mod.bias.mul_(bk)

    def weight(self, mod, layer):
        s = self.settings.get(layer)
        if s is None or (s["w_bits"] == 32 and s["prune"] is None):
            return mod.weight
        keep = self.keep.get(layer)
        eff = compress_weight(mod.weight.detach(), s, keep)
        pm = keep.float() if keep is not None else torch.ones_like(eff)
        if s["w_bits"] == 1:
            pm = pm * (mod.weight.detach().abs() <= 1).float()
        return FakeWeight.apply(mod.weight, eff, pm)

    def bias(self, mod, layer):
        bk = self.bias_keep.get(layer)
        if bk is None:
            return mod.bias
        return mod.bias * bk  # gradient of pruned channels' bias is zero, value stays 0

    def act(self, layer, x):
        s = self.settings.get(layer)
        if s is None or s["a_bits"] == 32:
            return x
        if s["a_bits"] == 16:
            return x + (x.half().float() - x).detach()
        if self.calibrating is not None:
            lo, hi = x.min().item(), x.max().item()
            c = self.calibrating.setdefault(layer, [lo, hi])
            c[0], c[1] = min(c[0], lo), max(c[1], hi)
            return x
        bits = s["a_bits"]
        r = self.ranges[layer]
        if self.training:
            r[0] = (1 - self.ema) * r[0] + self.ema * x.min().item()
            r[1] = (1 - self.ema) * r[1] + self.ema * x.max().item()
            r[0], r[1] = float(np.float32(r[0])), float(np.float32(r[1]))
        lo, hi = min(0.0, r[0]), max(0.0, r[1])
        levels = 2 ** bits - 1
        scale = (hi - lo) / levels if hi != lo else 1.0
        zp = int(min(max(round(-lo / scale), 0), levels))  # round() is half to even
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, levels)

    def conv(self, mod, layer, x, padding):
        return F.conv2d(self.act(layer, x), self.weight(mod, layer), self.bias(mod, layer), padding=padding)

    def linear(self, mod, layer, x):
        return F.linear(self.act(layer, x), self.weight(mod, layer), self.bias(mod, layer))

    def calibrate(self, x):
        self.calibrating = {}
        with torch.no_grad():
            for i in range(0, x.shape[0], 256):
                self.model(x[i:i + 256], self)
        for l, (lo, hi) in self.calibrating.items():
            self.ranges[l] = [lo, hi]
        self.calibrating = None


class Plain:
    def conv(self, mod, layer, x, padding):
        return mod(x)

    def linear(self, mod, layer, x):
        return mod(x)


# ---------------------------------------------------------------- training

def lr_at(step, spec, total):
    base, sched = spec["lr"], spec["schedule"]
    w = sched.get("warmup_steps", 0)
    if step < w:
        return base * (step + 1) / w
    t, T = step - w, max(total - w, 1)
    name = sched["name"]
    if name == "step":
        return base * sched.get("gamma", 0.1) ** (t // sched.get("step_size", 1000))
    if name == "cosine":
        return base * (1 + math.cos(math.pi * min(t, T) / T)) / 2
    return base


def make_optimizer(params, spec):
    o = spec["optimizer"]
    name, wd = o["name"], o.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=spec["lr"], momentum=o.get("momentum", 0.0),
                               nesterov=o.get("nesterov", False), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=spec["lr"], weight_decay=wd)
    return torch.optim.Adam(params, lr=spec["lr"], weight_decay=wd)


def normalise_spec(d):
    spec = {"epochs": 1, "lr": 1e-3, "temperature": 4.0, "alpha": 0.9, "batch_size": 128,
            "samples": 0, "optimizer": {"name": "adam"}, "schedule": {"name": "constant"}}
    spec.update(d or {})
    for k in ("optimizer", "schedule"):
        if isinstance(spec[k], str):
            spec[k] = {"name": spec[k]}
    return spec


@torch.no_grad()
def test_accuracy(model, q, x, y):
    model.eval()
    if isinstance(q, Quantizer):
        q.training = False
    correct = 0
    for i in range(0, x.shape[0], 1000):
        correct += (model(x[i:i + 1000], q).argmax(1) == y[i:i + 1000]).sum().item()
    return correct / x.shape[0]


def blas_in_use():
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # load the BLAS
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "blas" in p.lower() or "mkl" in p.lower() or "lapack" in p.lower():
                libs.add(os.path.realpath(p))
    return sorted(libs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--recipe", help="compsearch.recipe/1 file; absent = plain float training")
    ap.add_argument("--epochs", type=int, help="override the recipe's distillation.epochs")
    ap.add_argument("--samples", type=int, help="override distillation.samples")
    ap.add_argument("--lr", type=float, help="plain training / override")
    ap.add_argument("--batch", type=int, help="override batch_size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the summary here")
    ap.add_argument("--quiet-config", action="store_true", help="skip torch.__config__.show()")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if not a.quiet_config:
        print(torch.__config__.show().strip())
    blas = blas_in_use()
    print("BLAS loaded:", ", ".join(blas) if blas else "(none found in /proc/self/maps)")

    recipe = None
    if a.recipe:
        with open(a.recipe) as f:
            recipe = json.load(f)
    spec = normalise_spec(recipe.get("distillation") if recipe else {"alpha": 0.0})
    if recipe is None:
        spec["alpha"] = 0.0
    for k, v in (("epochs", a.epochs), ("samples", a.samples), ("lr", a.lr), ("batch_size", a.batch)):
        if v is not None:
            spec[k] = v

    xtr, ytr = load("train")
    xte, yte = load("test")
    student = load_onnx_model(a.model)
    teacher = load_onnx_model(a.model).eval()
    plain = Plain()
    fp32 = test_accuracy(teacher, plain, xte, yte)
    q = Quantizer(student, recipe) if recipe else plain
    if isinstance(q, Quantizer) and any(s["a_bits"] in (4, 8) for s in q.settings.values()):
        q.calibrate(xtr[:512])
    ptq = test_accuracy(student, q, xte, yte)
    print(f"fp32 test accuracy {fp32:.4f}; epoch 0 (PTQ) test accuracy {ptq:.4f}", flush=True)

    n = xtr.shape[0] if spec["samples"] <= 0 else min(spec["samples"], xtr.shape[0])
    bs = spec["batch_size"]
    steps_per_epoch = (n + bs - 1) // bs
    total = steps_per_epoch * spec["epochs"]
    opt = make_optimizer(student.parameters(), spec)
    T, alpha = spec["temperature"], spec["alpha"]
    step = 0
    epochs = []
    for epoch in range(spec["epochs"]):
        perm = epoch_permutation(xtr.shape[0], a.seed, epoch)[:n]
        student.train()
        if isinstance(q, Quantizer):
            q.training = True
        t0 = time.perf_counter()
        loss_sum, correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            x, y = xtr[idx], ytr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, spec, total)
            opt.zero_grad()
            s = student(x, q)
            if alpha > 0:
                with torch.no_grad():
                    t = teacher(x, plain)
                loss = alpha * T * T * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1),
                                                reduction="batchmean")
                if alpha < 1:
                    loss = loss + (1 - alpha) * F.cross_entropy(s, y)
            else:
                loss = F.cross_entropy(s, y)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * idx.shape[0]
            correct += (s.detach().argmax(1) == y).sum().item()
        seconds = time.perf_counter() - t0
        acc = test_accuracy(student, q, xte, yte)
        e = {"epoch": epoch + 1, "loss": loss_sum / n, "train_accuracy": correct / n,
             "seconds": seconds, "images_per_second": n / seconds, "test_accuracy": acc}
        epochs.append(e)
        print(f"epoch {epoch + 1}/{spec['epochs']}: loss {e['loss']:.4f}, train accuracy "
              f"{e['train_accuracy']:.4f}, test accuracy {acc:.4f}, epoch time {seconds:.2f} s "
              f"({e['images_per_second']:.0f} images/s)", flush=True)
    summary = {"model": a.model, "recipe": a.recipe, "threads": a.threads, "seed": a.seed,
               "torch": torch.__version__, "blas": blas, "fp32_accuracy": fp32,
               "ptq_accuracy": ptq, "epochs": epochs,
               "final_accuracy": epochs[-1]["test_accuracy"] if epochs else ptq,
               "samples_per_epoch": n, "batch_size": bs}
    print(json.dumps(summary))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
