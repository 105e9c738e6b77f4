#!/usr/bin/python3
"""Exports the MLPerf Tiny reference architectures of the arch zoo to ONNX (random weights).

The four networks of hardware_models/arch_zoo.cpp (`zoo:ds_cnn_kws`, `zoo:resnet8_cifar`,
`zoo:mobilenet_v1_vww`, `zoo:fc_autoencoder`) as PyTorch modules with BatchNorm and ReLU where the
MLPerf Tiny Keras references have them, so that the executor can run (and `compsearch measure`
time) the architectures the latency models are validated on. Keras 'same' padding is written as
the symmetric padding that gives the same output size (the layer table, MACs and parameters are
the zoo's: tests/hardware_models checks it). The weights do not matter for timing.

Usage: /usr/bin/python3 scripts/make_mlperf_tiny_models.py [--out DIR]
  --out DIR   where to write <name>.onnx (default: models/mlperf_tiny/, gitignored)
Exported with opset 13 and a symbolic batch dimension; deterministic (seed 0).
"""
import argparse
import os

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conv_bn_relu(cin, cout, k, stride, pad, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=True), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU())
    return layers


class DsCnn(nn.Module):
    """Keyword spotting: DS-CNN small on 49x10 MFCC, 12 classes."""

    def __init__(self):
        super().__init__()
        layers = conv_bn_relu(1, 64, (10, 4), 2, (5, 1))  # 'same': 49x10 -> 25x5
        for _ in range(4):
            layers += conv_bn_relu(64, 64, 3, 1, 1, groups=64)
            layers += conv_bn_relu(64, 64, 1, 1, 0)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 12)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class Stack(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(cin, cout, 3, stride, 1),
                                  *conv_bn_relu(cout, cout, 3, 1, 1, relu=False))
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0) if stride != 1 else None

    def forward(self, x):
        y = self.body(x)  # first, as in the zoo's layer order (conv1, conv2, shortcut)
        return torch.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet8(nn.Module):
    """Image classification: ResNet-8 on 32x32x3 CIFAR-10."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(3, 16, 3, 1, 1))
        self.stacks = nn.Sequential(Stack(16, 16, 1), Stack(16, 32, 2), Stack(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        y = self.stacks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def scaled_channels(c, alpha, divisor=8):
    """hardware_models/arch_zoo.cpp's scaled_channels (MobileNet's make_divisible)."""
    v = c * alpha
    nv = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if nv < 0.9 * v:
        nv += divisor
    return nv


class MobileNetV1(nn.Module):
    """Visual wake words: MobileNetV1 alpha 0.25 on 96x96x3, 2 classes."""

    def __init__(self, alpha=0.25, classes=2):
        super().__init__()
        ch = lambda c: scaled_channels(c, alpha)
        layers = conv_bn_relu(3, ch(32), 3, 2, 1)
        spec = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
        cin = ch(32)
        for cout, stride in spec:
            layers += conv_bn_relu(cin, cin, 3, stride, 1, groups=cin)
            layers += conv_bn_relu(cin, ch(cout), 1, 1, 0)
            cin = ch(cout)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class FcAutoencoder(nn.Module):
    """Anomaly detection: the dense autoencoder on 640 log-mel features."""

    def __init__(self):
        super().__init__()
        dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
        layers = []
        for i in range(10):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < 9:
                layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


MODELS = {
    "ds_cnn_kws": (DsCnn, (1, 49, 10)),
    "resnet8_cifar": (ResNet8, (3, 32, 32)),
    "mobilenet_v1_vww": (MobileNetV1, (3, 96, 96)),
    "fc_autoencoder": (FcAutoencoder, (640,)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "mlperf_tiny"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    for name, (ctor, sample) in MODELS.items():
        torch.manual_seed(0)
        model = ctor().eval()
        with torch.no_grad():  # non-trivial BatchNorm statistics
            for m in model.modules():
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        x = torch.randn(1, *sample)
        path = os.path.join(args.out, f"{name}.onnx")
        torch.onnx.export(model, x, path, opset_version=13, input_names=["input"],
                          output_names=["output"], do_constant_folding=True,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        params = sum(p.numel() for p in model.parameters())
        print(f"{path}: {params} PyTorch parameters (incl. BatchNorm), "
              f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
