#!/usr/bin/python3
"""Small random-weight ONNX models, one per op family, with PyTorch reference outputs.

For each fixture NAME this writes tests/data/model/fixtures/NAME.onnx, NAME.input.npy (float32,
batch 3) and NAME.output.npy (float32, PyTorch's output), and lists them in
tests/data/model/fixtures/manifest.json, which tests/model/executor_test.cpp iterates: the
compsearch executor must reproduce every output within 1e-4 relative.

Most fixtures are torch.nn modules exported by torch.onnx.export. The ones PyTorch never emits
(Gemm with transA/alpha/beta and typed float_data weights, Conv with auto_pad, weights in an
external-data file) are written with onnx.helper, and their reference comes from the equivalent
torch.nn.functional computation.

Run: /usr/bin/python3 scripts/make_model_fixtures.py (seconds; deterministic).
"""
import json
import os
import zlib

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "model", "fixtures")
BATCH = 3


class ConvFamily(nn.Module):
    """Grouped/strided/dilated/padded conv, depthwise conv, pointwise conv, conv without bias."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(4, 8, 3, stride=2, padding=(1, 2), dilation=(1, 2), groups=2)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.depthwise_s2 = nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8, bias=False)
        self.pointwise = nn.Conv2d(8, 6, 1)
        self.plain = nn.Conv2d(6, 5, (3, 2), stride=(1, 2), bias=False)

    def forward(self, x):
        x = self.grouped(x)
        x = self.depthwise(x)
        x = self.depthwise_s2(x)
        x = self.pointwise(x)
        return self.plain(x)


class ConvBnActivations(nn.Module):
    """Conv + BatchNorm (kept as a node) + ReLU6 (Clip), HardSwish, HardSigmoid, Sigmoid, Tanh."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x):
        x = F.relu6(self.bn(self.conv(x)))
        y = self.bn2(self.conv2(x))
        return F.hardswish(y) + F.hardsigmoid(y) * torch.sigmoid(y) - torch.tanh(y)


class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)

    def forward(self, x):
        a = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        b = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        c = F.avg_pool2d(x, 2, stride=2, count_include_pad=True)
        d = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True)
        g = F.adaptive_avg_pool2d(self.conv(x), 1)
        return torch.cat([a.flatten(1), b.flatten(1), c.flatten(1), d.flatten(1), g.flatten(1)], 1)


class Elementwise(nn.Module):
    """Add/Sub/Mul/Div with per-channel, scalar and same-shape operands; Softmax."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(1, 4, 1, 1))
        self.shift = nn.Parameter(torch.randn(4, 1, 1))
        self.row = nn.Parameter(torch.randn(5))

    def forward(self, x):
        y = x * self.scale + self.shift
        z = (y - 0.5) / (self.row.abs() + 1.0)
        w = z / 3.0 + y * z
        return torch.softmax(w, dim=1), torch.softmax(w, dim=-1)


class MatMulFamily(nn.Module):
    """MatMul with a 2-D weight on a 3-D activation, batched MatMul, Transpose, Concat,
    Reshape, Flatten, Linear without bias (MatMul) and with bias (Gemm)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 6, bias=False)
        self.fc = nn.Linear(4 * 12, 7)

    def forward(self, x):  # x [N, 4, 8]
        p = self.proj(x)                    # [N, 4, 6]
        t = p.transpose(1, 2)               # [N, 6, 4]
        s = torch.matmul(p, t)              # [N, 4, 4]
        c = torch.cat([p, s, s[:, :, :2]], dim=2)  # [N, 4, 12]
        r = c.reshape(c.shape[0], 4 * 12)
        return torch.tanh(self.fc(r))


class ShapePattern(nn.Module):
    """The dynamic-batch flatten chain of torchvision-style exports:
    Shape -> Gather -> Unsqueeze -> Concat -> Reshape, plus Squeeze/Unsqueeze."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        y = F.relu(self.conv(x))
        y = y.view(y.size(0), -1)
        y = self.fc(y).unsqueeze(1)
        return y.squeeze(1)


class MiniResidual(nn.Module):
    """A ResNet basic block (BN folded by the exporter) with a strided 1x1 downsample."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(4, 8, 1, stride=2, bias=False)
        self.bn3 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = F.relu(y + self.bn3(self.down(x)))
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(y)


def randomize_bn(module):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def save_npy(name, suffix, array):
    np.save(os.path.join(OUT, f"{name}.{suffix}.npy"), np.ascontiguousarray(array, dtype=np.float32))


def export_torch(name, module, input_shape, opset, keep_bn=False, outputs=1):
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)  # stable across runs
    randomize_bn(module)
    module.eval()
    x = torch.randn(BATCH, *input_shape)
    with torch.no_grad():
        y = module(x)
    ys = y if isinstance(y, tuple) else (y,)
    path = os.path.join(OUT, name + ".onnx")
    kwargs = {}
    if keep_bn:  # keep BatchNormalization nodes instead of folding them into the conv
        kwargs = {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False}
    out_names = [f"y{i}" for i in range(len(ys))]
    torch.onnx.export(module, x, path, opset_version=opset, input_names=["x"],
                      output_names=out_names,
                      dynamic_axes={n: {0: "batch"} for n in ["x"] + out_names}, **kwargs)
    save_npy(name, "input", x.numpy())
    for i, t in enumerate(ys):
        save_npy(name, "output" if i == 0 else f"output{i}", t.numpy())
    return {"name": name, "opset": opset, "outputs": len(ys), "source": "torch.onnx.export"}


def gemm_typed_fields():
    """Gemm transA=1, transB=0, alpha, beta, C [1, N]; weights in float_data (not raw_data)."""
    rng = np.random.default_rng(1)
    k, n = 6, 4
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = rng.standard_normal((1, n)).astype(np.float32)
    bt = helper.make_tensor("B", TensorProto.FLOAT, b.shape, b.flatten().tolist())  # typed field
    ct = helper.make_tensor("C", TensorProto.FLOAT, c.shape, c.flatten().tolist())
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
             helper.make_node("Gemm", ["xt", "B", "C"], ["y"], name="gemm", transA=1, alpha=0.5, beta=2.0)]
    graph = helper.make_graph(nodes, "gemm_typed_fields",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
                              [bt, ct])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "gemm_typed_fields.onnx"))
    x = rng.standard_normal((BATCH, k)).astype(np.float32)
    y = 0.5 * (torch.from_numpy(x) @ torch.from_numpy(b)) + 2.0 * torch.from_numpy(c)
    save_npy("gemm_typed_fields", "input", x)
    save_npy("gemm_typed_fields", "output", y.numpy())
    return {"name": "gemm_typed_fields", "opset": 12, "outputs": 1, "source": "onnx.helper + torch reference"}


def conv_autopad_external():
    """Conv auto_pad=SAME_UPPER stride 2 and a VALID conv, weights in an external-data file,
    opset 17; Clip with min/max inputs; Identity."""
    rng = np.random.default_rng(2)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal((4,)).astype(np.float32)
    w2 = rng.standard_normal((2, 4, 2, 2)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array(-1.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(1.5, np.float32), "hi")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="same", auto_pad="SAME_UPPER",
                              strides=[2, 2], kernel_shape=[3, 3]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="clip"),
             helper.make_node("Identity", ["r1"], ["i1"], name="identity"),
             helper.make_node("Conv", ["i1", "w2"], ["y"], name="valid", auto_pad="VALID")]
    graph = helper.make_graph(nodes, "conv_autopad_external",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 3, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = os.path.join(OUT, "conv_autopad_external.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="conv_autopad_external.data", size_threshold=0)
    x = rng.standard_normal((BATCH, 3, 8, 7)).astype(np.float32)
    t = torch.from_numpy(x)
    # SAME_UPPER, stride 2, kernel 3: out = ceil(in / 2); total pad = (out-1)*2 + 3 - in,
    # the extra unit at the end. H 8 -> out 4, pad 1 (0 top, 1 bottom); W 7 -> out 4, pad 2 (1, 1).
    t = F.pad(t, (1, 1, 0, 1))
    c1 = F.conv2d(t, torch.from_numpy(w1), torch.from_numpy(b1), stride=2)
    y = F.conv2d(torch.clamp(c1, -1.0, 1.5), torch.from_numpy(w2))
    save_npy("conv_autopad_external", "input", x)
    save_npy("conv_autopad_external", "output", y.numpy())
    return {"name": "conv_autopad_external", "opset": 17, "outputs": 1,
            "source": "onnx.helper (external data) + torch reference"}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    fixtures = []
    fixtures.append(export_torch("conv_family", ConvFamily(), (4, 13, 15), 13))
    fixtures.append(export_torch("conv_family_opset17", ConvFamily(), (4, 9, 9), 17))
    fixtures.append(export_torch("conv_bn_activations", ConvBnActivations(), (3, 6, 6), 14, keep_bn=True))
    fixtures.append(export_torch("conv_bn_activations_opset11", ConvBnActivations(), (3, 6, 6), 11, keep_bn=True))
    fixtures.append(export_torch("pools", Pools(), (2, 9, 10), 13))
    fixtures.append(export_torch("elementwise_softmax", Elementwise(), (4, 3, 5), 13))
    fixtures.append(export_torch("elementwise_softmax_opset12", Elementwise(), (4, 3, 5), 12))
    fixtures.append(export_torch("matmul_family", MatMulFamily(), (4, 8), 13))
    fixtures.append(export_torch("shape_pattern_opset11", ShapePattern(), (3, 8, 8), 11))
    fixtures.append(export_torch("shape_pattern_opset15", ShapePattern(), (3, 8, 8), 15))
    fixtures.append(export_torch("mini_residual", MiniResidual(), (4, 8, 8), 13))
    fixtures.append(gemm_typed_fields())
    fixtures.append(conv_autopad_external())
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"batch": BATCH, "rtol": 1e-4, "fixtures": fixtures}, f, indent=1)
        f.write("\n")
    for fx in fixtures:
        m = onnx.load(os.path.join(OUT, fx["name"] + ".onnx"), load_external_data=False)
        ops = sorted({n.op_type for n in m.graph.node})
        print(f"{fx['name']:32s} opset {fx['opset']:2d}  {' '.join(ops)}")


if __name__ == "__main__":
    main()
