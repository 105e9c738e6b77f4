#!/usr/bin/python3
"""Golden tensors for the compressor kernels (DESIGN.md "Compression semantics"), from PyTorch.

Writes tests/data/compressors/goldens.json. Every case holds the input weights (ONNX storage
order), the layout, the setting and the expected output, computed here with PyTorch as an
independent implementation of each rule:
  - quantization: float64 torch.round (half to even) of w / scale, clamp to the narrow range, and
    torch.fake_quantize_per_channel_affine / _per_tensor_affine (quant_min = -qmax) as a cross
    check (float32 kernels: they may differ from the float64 rule only at exact .5 ties);
  - pruning: torch.sort(stable=True) on |w| (unstructured), on channel L2 norms (channel), and
    within runs of M of the reduction row (N:M);
  - binarization: XNOR-Net alpha = mean |w| of the kept weights, sgn(0) = +1;
  - half: torch.Tensor.half(); activations: torch.fake_quantize_per_tensor_affine.
Run with Debian's python (/usr/bin/python3): scripts/make_compressor_goldens.py
"""
import json
import math
import os

import torch

torch.manual_seed(1234)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "compressors")


def tolist(t):
    return [float(x) for x in t.reshape(-1).tolist()]


def conv_rows(w):
    """[O, I, kh, kw] -> [O, R] in reduction-row order [kh][kw][I] (input channel fastest)."""
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)


def conv_unrows(rows, shape):
    o, i, kh, kw = shape
    return rows.reshape(o, kh, kw, i).permute(0, 3, 1, 2).contiguous()


def quant_groups64(rows, bits, group):
    """rows: float64 [O, R]; group None = per channel, 0 = per tensor, else G."""
    qmax = 2 ** (bits - 1) - 1
    out = torch.empty_like(rows)
    q = torch.empty_like(rows)
    O, R = rows.shape
    spans = []
    if group == 0:
        spans = [(slice(None), slice(None))]
    elif group is None:
        spans = [(o, slice(None)) for o in range(O)]
    else:
        spans = [(o, slice(b, min(R, b + group))) for o in range(O) for b in range(0, R, group)]
    scales = []
    for s in spans:
        x = rows[s]
        amax = x.abs().max().item()
        scale = 1.0 if amax == 0 else amax / qmax
        qq = torch.clamp(torch.round(x / scale), -qmax, qmax)
        q[s] = qq
        out[s] = (qq * scale).to(torch.float32).to(torch.float64)
        scales.append(scale)
    return out, q, scales


def case_quant(name, w, layout, bits, gran):
    """layout: ('conv', shape) | ('dense', O, K) | ('dense_t', K, O)."""
    w64 = w.to(torch.float64)
    if layout[0] == "conv":
        rows = conv_rows(w64)
    elif layout[0] == "dense":
        rows = w64
    else:
        rows = w64.t()
    group = {"per_channel": None, "per_tensor": 0}.get(gran)
    if group is None and gran.startswith("group:"):
        group = int(gran[6:])
    out_rows, q_rows, scales = quant_groups64(rows, bits, group)
    if layout[0] == "conv":
        out, q = conv_unrows(out_rows, w.shape), conv_unrows(q_rows, w.shape)
    elif layout[0] == "dense":
        out, q = out_rows, q_rows
    else:
        out, q = out_rows.t(), q_rows.t()
    case = {"name": name, "kind": "quantize", "bits": bits, "granularity": gran, "layout": layout_json(layout, w),
            "input": tolist(w), "expected": tolist(out), "expected_q": tolist(q), "expected_scales": scales}
    if gran == "per_channel":
        # PyTorch's own per-channel fake quantization (float32): agrees except at exact ties.
        qmax = 2 ** (bits - 1) - 1
        axis = 1 if layout[0] == "dense_t" else 0
        sc = torch.tensor(scales, dtype=torch.float32)
        zp = torch.zeros(len(scales), dtype=torch.int32)
        fq = torch.fake_quantize_per_channel_affine(w, sc, zp, axis, -qmax, qmax)
        case["torch_fake_quantize"] = tolist(fq)
    return case


def layout_json(layout, w):
    if layout[0] == "conv":
        o, i, kh, kw = w.shape
        return {"out_channels": o, "in_per_group": i, "kernel_elements": kh * kw, "transposed": False}
    if layout[0] == "dense":
        return {"out_channels": w.shape[0], "in_per_group": w.shape[1], "kernel_elements": 1, "transposed": False}
    return {"out_channels": w.shape[1], "in_per_group": w.shape[0], "kernel_elements": 1, "transposed": True}


def case_unstructured(name, w, ratio):
    flat = w.reshape(-1)
    k = math.floor(ratio * flat.numel())
    order = torch.sort(flat.abs(), stable=True).indices
    out = flat.clone()
    out[order[:k]] = 0.0
    return {"name": name, "kind": "unstructured", "ratio": ratio, "input": tolist(w), "expected": tolist(out)}


def case_channel(name, w, layout, ratio):
    w64 = w.to(torch.float64)
    rows = conv_rows(w64) if layout[0] == "conv" else (w64 if layout[0] == "dense" else w64.t())
    norms = (rows * rows).sum(dim=1)
    k = math.floor(ratio * rows.shape[0])
    pruned = sorted(torch.sort(norms, stable=True).indices[:k].tolist())
    out = w.clone()
    for o in pruned:
        if layout[0] == "dense_t":
            out[:, o] = 0
        else:
            out[o] = 0
    return {"name": name, "kind": "channel", "ratio": ratio, "layout": layout_json(layout, w), "input": tolist(w),
            "expected": tolist(out), "expected_channels": pruned}


def case_nm(name, w, layout, n, m):
    rows = conv_rows(w) if layout[0] == "conv" else (w if layout[0] == "dense" else w.t())
    rows = rows.clone()
    O, R = rows.shape
    for o in range(O):
        for r0 in range(0, R, m):
            run = rows[o, r0:r0 + m]
            order = torch.sort(-run.abs(), stable=True).indices  # largest first, ties: lower index
            for j in order[n:].tolist():
                rows[o, r0 + j] = 0.0
    out = conv_unrows(rows, w.shape) if layout[0] == "conv" else (rows if layout[0] == "dense" else rows.t())
    return {"name": name, "kind": "nm", "n": n, "m": m, "layout": layout_json(layout, w), "input": tolist(w),
            "expected": tolist(out)}


def case_binarize(name, w, layout, gran, prune_ratio):
    """Unstructured pruning at prune_ratio first, then XNOR-Net binarization per group."""
    flat = w.reshape(-1).clone()
    k = math.floor(prune_ratio * flat.numel())
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.sort(flat.abs(), stable=True).indices[:k]] = True
    flat[mask] = 0.0
    wp = flat.reshape(w.shape)
    mp = mask.reshape(w.shape)
    rows = conv_rows(wp.double()) if layout[0] == "conv" else wp.double()
    mrows = conv_rows(mp) if layout[0] == "conv" else mp
    O, R = rows.shape
    group = None if gran == "per_channel" else int(gran[6:])
    out = torch.zeros_like(rows)
    alphas = []
    spans = [(o, slice(None)) for o in range(O)] if group is None else \
        [(o, slice(b, min(R, b + group))) for o in range(O) for b in range(0, R, group)]
    for s in spans:
        x, pm = rows[s], mrows[s]
        kept = x[~pm]
        alpha = kept.abs().mean().item() if kept.numel() else 0.0
        a32 = float(torch.tensor(alpha, dtype=torch.float32))
        sgn = torch.where(x >= 0, 1.0, -1.0).double()
        out[s] = torch.where(pm, torch.zeros_like(x), sgn * a32)
        alphas.append(alpha)
    out = conv_unrows(out, w.shape) if layout[0] == "conv" else out
    return {"name": name, "kind": "binarize", "granularity": gran, "prune_ratio": prune_ratio,
            "layout": layout_json(layout, w), "input": tolist(w), "expected": tolist(out), "expected_alphas": alphas}


def case_mse(name, w, bits):
    """Per-channel mse clipping: amax' = amax (1 - 0.01 i), i < 80, smallest squared error."""
    qmax = 2 ** (bits - 1) - 1
    w64 = w.double()
    out = torch.empty_like(w64)
    for o in range(w.shape[0]):
        x = w64[o]
        amax = x.abs().max().item()
        best, best_err = None, math.inf
        for i in range(80):
            a = amax * (1.0 - 0.01 * i)
            sc = a / qmax
            y = (torch.clamp(torch.round(x / sc), -qmax, qmax) * sc).float().double()
            err = ((x - y) ** 2).sum().item()
            if err < best_err:
                best_err, best = err, y
        out[o] = best
    return {"name": name, "kind": "quantize_mse", "bits": bits, "layout": layout_json(("dense",), w),
            "input": tolist(w), "expected": tolist(out)}


def case_activation(name, x, bits, lo, hi):
    lo, hi = min(0.0, lo), max(0.0, hi)
    levels = 2 ** bits - 1
    scale = (hi - lo) / levels if hi != lo else 1.0
    zp = int(min(max(round(-lo / scale), 0), levels))  # Python's round is half to even too
    x64 = x.double()
    ref = ((torch.clamp(torch.round(x64 / scale) + zp, 0, levels) - zp) * scale).float()
    fq = torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, levels)
    return {"name": name, "kind": "activation", "bits": bits, "lo": lo, "hi": hi, "input": tolist(x),
            "expected_scale": scale, "expected_zero_point": zp, "expected": tolist(ref),
            "torch_fake_quantize": tolist(fq)}


def main():
    cases = []
    conv_w = torch.randn(8, 3, 3, 3)
    conv_w[2] = 0.0  # an all-zero channel: scale 1, stays zero
    dense_w = torch.randn(6, 40) * 0.1
    dense_t = torch.randn(24, 5)
    for bits in (2, 3, 4, 8):
        cases.append(case_quant(f"conv per_channel w{bits}", conv_w, ("conv", conv_w.shape), bits, "per_channel"))
    cases.append(case_quant("conv per_tensor w4", conv_w, ("conv", conv_w.shape), 4, "per_tensor"))
    cases.append(case_quant("conv group:4 w3 (reduction order [kh][kw][I])", conv_w, ("conv", conv_w.shape), 3, "group:4"))
    cases.append(case_quant("dense group:16 w3 (partial last group)", dense_w, ("dense",), 3, "group:16"))
    cases.append(case_quant("dense per_channel w5", dense_w, ("dense",), 5, "per_channel"))
    cases.append(case_quant("transposed [K,O] per_channel w4", dense_t, ("dense_t",), 4, "per_channel"))
    cases.append(case_quant("transposed [K,O] group:7 w6", dense_t, ("dense_t",), 6, "group:7"))
    # Many exact ties in |w|: values on a coarse grid.
    tie_w = torch.round(torch.randn(10, 12) * 2) / 2
    cases.append(case_unstructured("unstructured 0.5 with ties", tie_w, 0.5))
    cases.append(case_unstructured("unstructured 0.3", dense_w, 0.3))
    cases.append(case_unstructured("unstructured 0.99", dense_w, 0.99))
    ch_w = torch.randn(8, 4, 3, 3)
    ch_w[5] = ch_w[1]  # equal norms: the lower index goes first
    cases.append(case_channel("conv channel 0.25 with a tie", ch_w, ("conv", ch_w.shape), 0.25))
    cases.append(case_channel("conv channel 0.5", ch_w, ("conv", ch_w.shape), 0.5))
    cases.append(case_channel("transposed channel 0.4", dense_t, ("dense_t",), 0.4))
    nm_w = torch.round(torch.randn(4, 8, 3, 3) * 2) / 2
    cases.append(case_nm("conv 2:4 with ties", nm_w, ("conv", nm_w.shape), 2, 4))
    cases.append(case_nm("dense 1:4", dense_w, ("dense",), 1, 4))
    cases.append(case_nm("transposed 2:8", dense_t, ("dense_t",), 2, 8))
    cases.append(case_binarize("binarize per_channel", conv_w, ("conv", conv_w.shape), "per_channel", 0.0))
    cases.append(case_binarize("binarize group:5 after 40% unstructured", conv_w, ("conv", conv_w.shape), "group:5", 0.4))
    cases.append(case_mse("mse clipping w3", torch.randn(4, 64), 3))
    half_in = torch.tensor([0.0, -0.0, 1.0, 65504.0, 65519.0, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5, 6.0e-5,
                            1.00048828125, 1.000732421875, 1.0009765625 + 2**-11, -3.14159, 3.0e-7] +
                           (torch.randn(200) * 10).tolist(), dtype=torch.float32)
    cases.append({"name": "half rounding", "kind": "half", "input": tolist(half_in),
                  "expected": tolist(half_in.half().float())})
    act = torch.randn(500) * 3 + 1
    cases.append(case_activation("activation 8 bits", act, 8, act.min().item(), act.max().item()))
    cases.append(case_activation("activation 4 bits, clipped range", act, 4, -2.0, 3.0))
    relu = torch.relu(torch.randn(300))
    cases.append(case_activation("activation 8 bits, non-negative input", relu, 8, relu.min().item(), relu.max().item()))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump({"generator": "scripts/make_compressor_goldens.py", "torch": torch.__version__, "cases": cases}, f,
                  allow_nan=False)
    print(f"wrote {len(cases)} cases to {os.path.relpath(OUT)}/goldens.json")


if __name__ == "__main__":
    main()
