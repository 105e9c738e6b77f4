#!/usr/bin/python3
"""Exports torchvision's ResNet-18 and MobileNetV2 (random weights, 224x224) to ONNX.

These files (about 45 MB and 14 MB) are too big to commit; `compsearch inspect` on them must
agree with the published figures (ResNet-18: 11.69 M params, 1.82 GMACs; MobileNetV2: 3.50 M,
0.30 GMACs). The weights do not matter for those counts, so no download is needed.

Usage: /usr/bin/python3 scripts/make_torchvision_models.py [--out DIR] [--reference] [--models a,b]
  --out DIR     where to write <name>.torchvision.onnx (default: models/, gitignored)
  --reference   also write <name>.torchvision.input.npy / .output.npy: PyTorch's output for two
                random images, which tests compare the executor against
Exported with opset 13 and a symbolic batch dimension; deterministic (seed 0).
"""
import argparse
import os

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "models"))
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--models", default="resnet18,mobilenet_v2",
                    help="comma-separated: resnet18, mobilenet_v2, resnet50 (about 100 MB)")
    args = ap.parse_args()
    ctors = {"resnet18": torchvision.models.resnet18,
             "mobilenet_v2": torchvision.models.mobilenet_v2,
             "resnet50": torchvision.models.resnet50}
    names = [m for m in args.models.split(",") if m]
    for m in names:
        if m not in ctors:
            ap.error(f"--models: unknown model {m!r} (allowed: {', '.join(ctors)})")
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    for name in names:
        ctor = ctors[name]
        torch.manual_seed(0)
        model = ctor(weights=None).eval()
        x = torch.randn(2, 3, 224, 224)
        path = os.path.join(args.out, f"{name}.torchvision.onnx")
        torch.onnx.export(model, x[:1], path, opset_version=13, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        params = sum(p.numel() for p in model.parameters())
        print(f"{path}: {params} PyTorch parameters (incl. BatchNorm), {os.path.getsize(path)} bytes")
        if args.reference:
            with torch.no_grad():
                y = model(x)
            np.save(os.path.join(args.out, f"{name}.torchvision.input.npy"), x.numpy())
            np.save(os.path.join(args.out, f"{name}.torchvision.output.npy"), y.numpy())


if __name__ == "__main__":
    main()
