#!/usr/bin/python3
"""Golden files for the training tests (tests/model/training_*_test.cpp).

Run with Debian's python3-torch (1.13) and python3-onnx:
    /usr/bin/python3 scripts/make_training_fixtures.py
Writes tests/data/model/training/:
  <case>.onnx               a tiny network exported from PyTorch (eval-mode export, BN kept)
  <case>.input.npy          its input batch
  <case>.upstream.npy       R: the test's loss is sum(output * R), so dL/d(output) = R
  <case>.output.npy         the training-mode (batch-statistics) output
  <case>.grad.<param>.npy   dL/d(param) from torch.autograd
  <case>.running.<buf>.npy  BN running statistics after that one training forward
  step_<opt>.*.npy          one-to-three optimizer steps on a tiny MLP with cross-entropy
  losses.*                  cross-entropy / distillation values and gradients
  manifest.json             the cases, parameter names and scalar goldens (schedules, shuffles)
Re-running may change float goldens in the last bit (PyTorch's CPU kernels are not bitwise
reproducible run to run); the tests' tolerances (1e-4 relative and looser) cover that.
The shuffle and the schedules here are the reference definitions the C++ side must match
(model/optimizer.h); the PyTorch reference benchmark imports epoch_permutation() from here.
"""
import json
import math
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "model", "training")
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def epoch_permutation(n, seed, epoch):
    """SplitMix64 Fisher-Yates, exactly model::epoch_permutation."""
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
    return p


def lr_at(kind, step, base_lr, warmup=0, total=0, step_size=1000, gamma=0.1, min_lr=0.0):
    """Exactly model::LrSchedule::lr_at."""
    step = max(step, 0)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = step - warmup
    if kind == "constant":
        return base_lr
    if kind == "step":
        return base_lr * gamma ** (t // step_size)
    span = max(1, total - warmup)
    frac = min(t, span) / span
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * frac)) / 2


def save(name, array):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(array))


class ConvGroupNet(nn.Module):
    # Conv with groups and stride/padding, Relu, BatchNorm (batch statistics), MaxPool, Flatten, Gemm.
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x):
        y = self.bn(F.relu(self.conv(x)))
        y = F.max_pool2d(y, 2)
        return self.fc(torch.flatten(y, 1))


class DepthwiseNet(nn.Module):
    # Pointwise conv, depthwise conv with dilation, ReLU6 (Clip), AveragePool with padding
    # (count_include_pad False and True), GlobalAveragePool, Gemm without bias.
    def __init__(self):
        super().__init__()
        self.pw = nn.Conv2d(2, 3, 1)
        self.dw = nn.Conv2d(3, 3, 3, padding=2, dilation=2, groups=3)
        self.fc = nn.Linear(6, 4, bias=False)

    def forward(self, x):
        y = F.relu6(self.dw(self.pw(x)) * 2.0)
        a = F.avg_pool2d(y, 3, stride=2, padding=1, count_include_pad=False)
        b = F.avg_pool2d(y, 2, stride=2, padding=1, count_include_pad=True)
        g = torch.cat([F.adaptive_avg_pool2d(a, 1), F.adaptive_avg_pool2d(b, 1)], 1)
        return self.fc(torch.flatten(g, 1))


class ResidualNet(nn.Module):
    # Add of two activations, Mul, Sub, Concat, Reshape, MatMul, an unused-by-grad constant.
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 2, 1, bias=False)
        self.w = nn.Parameter(torch.randn(2 * 4 * 4, 3) * 0.3)

    def forward(self, x):
        y = self.conv(x)
        z = torch.relu(y + x)
        u = torch.cat([z * y, z - 0.5], 1)
        v = self.conv2(u)
        return torch.matmul(v.reshape(v.shape[0], -1), self.w)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def export(model, x, path):
    model.eval()
    torch.onnx.export(model, x, path, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13,
                      do_constant_folding=True)


def onnx_names(model, path):
    """torch parameter name -> (ONNX initializer name, stored transposed?). The exporter renames
    a bias-free Linear's weight (it becomes a transposed MatMul operand)."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    out = {}
    for pname, p in model.named_parameters():
        v = p.detach().numpy()
        if pname in inits:
            out[pname] = (pname, False)
            continue
        for iname, a in inits.items():
            if a.shape == v.T.shape and np.array_equal(a, v.T) and v.ndim == 2:
                out[pname] = (iname, True)
                break
        else:
            raise RuntimeError(f"no initializer for {pname} in {path}")
    return out


def grad_case(name, model, x, manifest):
    path = os.path.join(OUT, name + ".onnx")
    export(model, x, path)
    names = onnx_names(model, path)
    model.train()
    for p in model.parameters():
        p.grad = None
    y = model(x)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    save(name + ".input.npy", x.numpy().astype(np.float32))
    save(name + ".upstream.npy", r.numpy().astype(np.float32))
    save(name + ".output.npy", y.detach().numpy().astype(np.float32))
    params = []
    for pname, p in model.named_parameters():
        iname, transposed = names[pname]
        g = p.grad.numpy().T if transposed else p.grad.numpy()
        save(f"{name}.grad.{pname}.npy", g.astype(np.float32))
        params.append({"torch": pname, "onnx": iname})
    buffers = []
    for bname, b in model.named_buffers():
        if b.dtype.is_floating_point:
            save(f"{name}.running.{bname}.npy", b.numpy().astype(np.float32))
            buffers.append(bname)
    manifest["grad_cases"].append({"name": name, "params": params, "running": buffers})


def step_case(name, opt_name, make_opt, steps, manifest, lrs):
    torch.manual_seed(7)
    model = Mlp()
    x = torch.randn(5, 1, 2, 3)
    y = torch.tensor([0, 2, 1, 2, 0])
    export(model, x, os.path.join(OUT, name + ".onnx"))
    model.train()
    opt = make_opt(model.parameters())
    losses = []
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lrs[s]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    save(name + ".input.npy", x.numpy().astype(np.float32))
    save(name + ".labels.npy", y.numpy().astype(np.int64))
    params = []
    for pname, p in model.named_parameters():
        save(f"{name}.after.{pname}.npy", p.detach().numpy().astype(np.float32))
        params.append(pname)
    manifest["step_cases"].append({"name": name, "optimizer": opt_name, "steps": steps, "lrs": lrs,
                                   "losses": losses, "params": params})


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    manifest = {"generator": "scripts/make_training_fixtures.py", "torch": torch.__version__,
                "grad_cases": [], "step_cases": []}

    grad_case("conv_group", ConvGroupNet(), torch.randn(3, 4, 8, 8), manifest)
    grad_case("depthwise", DepthwiseNet(), torch.randn(2, 2, 7, 7), manifest)
    grad_case("residual", ResidualNet(), torch.randn(2, 3, 4, 4), manifest)

    lrs = [0.1, 0.05, 0.02]
    step_case("step_sgd", {"kind": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
              lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
              3, manifest, lrs)
    step_case("step_sgd_plain", {"kind": "sgd", "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.0},
              lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.1), 3, manifest, lrs)
    step_case("step_adam", {"kind": "adam", "weight_decay": 0.01},
              lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.01), 3, manifest, lrs)
    step_case("step_adamw", {"kind": "adamw", "weight_decay": 0.1},
              lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1), 3, manifest, lrs)

    # Losses: cross-entropy and distillation on fixed logits.
    s = (torch.randn(4, 5) * 3).requires_grad_()
    t = torch.randn(4, 5) * 3
    y = torch.tensor([1, 0, 4, 2])
    save("losses.student.npy", s.detach().numpy().astype(np.float32))
    save("losses.teacher.npy", t.numpy().astype(np.float32))
    save("losses.labels.npy", y.numpy().astype(np.int64))
    ce = F.cross_entropy(s, y)
    (g,) = torch.autograd.grad(ce, s)
    save("losses.ce_grad.npy", g.numpy().astype(np.float32))
    kd = []
    for temp, alpha in [(4.0, 0.9), (2.0, 0.5), (1.0, 1.0), (3.0, 0.0)]:
        loss = alpha * temp * temp * F.kl_div(F.log_softmax(s / temp, 1), F.softmax(t / temp, 1),
                                              reduction="batchmean") + (1 - alpha) * F.cross_entropy(s, y)
        (g,) = torch.autograd.grad(loss, s)
        tag = f"T{temp:g}_a{alpha:g}"
        save(f"losses.kd_grad.{tag}.npy", g.numpy().astype(np.float32))
        kd.append({"temperature": temp, "alpha": alpha, "loss": loss.item(), "tag": tag})
    manifest["losses"] = {"cross_entropy": ce.item(), "distillation": kd}

    manifest["schedules"] = []
    for kind, kw in [("constant", {"base_lr": 0.1, "warmup": 3}),
                     ("step", {"base_lr": 0.1, "warmup": 2, "step_size": 4, "gamma": 0.5}),
                     ("cosine", {"base_lr": 0.1, "warmup": 5, "total": 25, "min_lr": 0.001}),
                     ("cosine", {"base_lr": 0.01, "total": 10})]:
        manifest["schedules"].append({"kind": kind, **kw,
                                      "lr": [lr_at(kind, i, **kw) for i in range(30)]})
    manifest["shuffles"] = [{"n": n, "seed": seed, "epoch": e, "perm": epoch_permutation(n, seed, e)}
                            for n, seed, e in [(10, 0, 0), (10, 0, 1), (17, 12345, 3), (1, 5, 0),
                                               (50, 2**63 + 11, 7)]]
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
