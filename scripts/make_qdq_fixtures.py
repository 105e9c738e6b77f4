#!/usr/bin/python3
"""Per-op fixtures for QuantizeLinear, DequantizeLinear and the float16 Cast round trip.

Writes tests/data/model/qdq/NAME.onnx for each case and tests/data/model/qdq/manifest.json with
the inputs and the expected outputs of every case. tests/model/quant_ops_test.cpp runs each model
through compsearch's importer and executor and requires the outputs bit for bit.

The expected outputs are computed here with NumPy in float32, following the ONNX operator
specification (opset 13; opset 11 for the per-tensor cases of opset-10 semantics):
  QuantizeLinear   y = saturate(round_half_to_even(x / y_scale) + y_zero_point)
                   (uint8 when the zero point is omitted; per-axis scale and zero point along `axis`)
  DequantizeLinear y = (x - x_zero_point) * x_scale
  Cast to FLOAT16  IEEE half, round to nearest even (overflow -> inf)
and then checked against ONNX Runtime (npm onnxruntime-node in scripts/node, graph optimisations
off so every node runs as written): the script stops if the two disagree on any element, so the
committed references are NumPy's and ONNX Runtime's at once.

Inputs are chosen to hit the corner cases: x / scale landing exactly on .5 (ties go to the even
integer, both signs), saturation at 0 / 255 for uint8 and -128 / 127 for int8, per-axis scales
along a middle and a negative axis, and float16 ties, subnormals and overflow.

Run: /usr/bin/python3 scripts/make_qdq_fixtures.py (a few seconds; deterministic).
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "model", "qdq")

NP_TO_ONNX = {np.float32: TensorProto.FLOAT, np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8,
              np.int32: TensorProto.INT32}
DTYPE_NAMES = {np.float32: "float32", np.int8: "int8", np.uint8: "uint8", np.int32: "int32"}


def quantize(x, scale, zp, axis, out_dtype):
    x = np.asarray(x, np.float32)
    scale = np.asarray(scale, np.float32)
    zp = np.asarray(zp, np.float32)
    if scale.ndim == 1:  # per-axis: broadcast along `axis`
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape)
    info = np.iinfo(out_dtype)
    q = np.round(x / scale) + zp  # float32 division, np.round is half-to-even
    return np.clip(q, info.min, info.max).astype(out_dtype)


def dequantize(x, scale, zp, axis):
    scale = np.asarray(scale, np.float32)
    zp = np.asarray(zp, np.int32)
    if scale.ndim == 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape)
    return ((x.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)


def save(name, nodes, inputs, outputs, initializers, opset=13):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_qdq_fixtures")
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(OUT, name + ".onnx"))


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, NP_TO_ONNX[dtype], list(shape))


def encode(arr):
    arr = np.ascontiguousarray(arr)
    d = {"dtype": DTYPE_NAMES[arr.dtype.type], "shape": list(arr.shape)}
    if arr.dtype == np.float32:
        d["bits"] = [int(b) for b in arr.view(np.uint32).ravel()]  # exact, and inf/nan survive JSON
    else:
        d["data"] = [int(v) for v in arr.ravel()]
    return d


ORT_JS = r"""
'use strict';
const fs = require('fs');
const ort = require(process.argv[2]);
const spec = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const types = {float32: Float32Array, int8: Int8Array, uint8: Uint8Array, int32: Int32Array};
(async () => {
  const results = {};
  for (const c of spec) {
    const session = await ort.InferenceSession.create(c.model, {graphOptimizationLevel: 'disabled'});
    const feeds = {};
    for (const [name, t] of Object.entries(c.inputs)) {
      const data = t.bits ? new Float32Array(Uint32Array.from(t.bits).buffer) : types[t.dtype].from(t.data);
      feeds[name] = new ort.Tensor(t.dtype, data, t.shape);
    }
    const out = await session.run(feeds);
    results[c.name] = {};
    for (const name of session.outputNames) {
      const o = out[name];
      const v = o.type === 'float32' ? {bits: Array.from(new Uint32Array(o.data.buffer, o.data.byteOffset, o.data.length))}
                                     : {data: Array.from(o.data, Number)};
      results[c.name][name] = Object.assign({dtype: o.type, shape: o.dims}, v);
    }
  }
  console.log(JSON.stringify(results));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []

    def case(name, feeds, expected, note):
        cases.append({"name": name, "model": name + ".onnx", "note": note,
                      "inputs": {k: encode(v) for k, v in feeds.items()},
                      "outputs": {k: encode(v) for k, v in expected.items()}})

    # 1. uint8, per-tensor, scale 0.5 (exact): x / scale hits every .5 tie, both parities and
    #    signs; the zero point 10 shifts after rounding; saturation at 0 and 255.
    x = np.array([-6.25, -5.75, -1.25, -0.75, -0.25, 0.0, 0.25, 0.75, 1.25, 1.75, 2.25,
                  100.0, 122.25, 122.75, 500.0, -500.0], np.float32)
    save("q_uint8_per_tensor",
         [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"])],
         [vi("x", np.float32, x.shape)], [vi("y", np.uint8, x.shape)],
         [numpy_helper.from_array(np.array(0.5, np.float32), "s"),
          numpy_helper.from_array(np.array(10, np.uint8), "zp")])
    case("q_uint8_per_tensor", {"x": x}, {"y": quantize(x, 0.5, 10, 0, np.uint8)},
         "ties to even around the zero point, saturation at 0 and 255")

    # 2. int8, per-axis along axis 1 of [2, 3, 4] with different zero points; saturation at
    #    -128 / 127 and ties.
    rng = np.random.default_rng(3)
    s = np.array([0.5, 0.25, 2.0], np.float32)
    zp = np.array([0, -3, 5], np.int8)
    x = (rng.integers(-200, 200, size=(2, 3, 4)) / 4.0).astype(np.float32)
    x[0, 0, 0], x[0, 0, 1], x[1, 1, 0], x[1, 2, 3] = 1000.0, -1000.0, -33.375, 255.0
    x[0, 1, 2], x[0, 2, 1] = 0.125, 3.0  # 0.125 / 0.25 = 0.5 -> 0; 3 / 2 = 1.5 -> 2
    save("q_int8_per_axis",
         [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], axis=1)],
         [vi("x", np.float32, x.shape)], [vi("y", np.int8, x.shape)],
         [numpy_helper.from_array(s, "s"), numpy_helper.from_array(zp, "zp")])
    case("q_int8_per_axis", {"x": x}, {"y": quantize(x, s, zp, 1, np.int8)},
         "per-axis scales and zero points along axis 1, saturation at -128 and 127")

    # 3. No zero point: uint8 with zero point 0; an inexact scale (0.1) checks that the division
    #    is done in float32 as the specification and ONNX Runtime do.
    x = np.linspace(-1.0, 30.0, 40, dtype=np.float32)
    x[:4] = [0.05, 0.15, 0.25, 0.35]
    save("q_no_zero_point",
         [helper.make_node("QuantizeLinear", ["x", "s"], ["y"])],
         [vi("x", np.float32, x.shape)], [vi("y", np.uint8, x.shape)],
         [numpy_helper.from_array(np.array(0.1, np.float32), "s")])
    case("q_no_zero_point", {"x": x}, {"y": quantize(x, 0.1, 0, 0, np.uint8)},
         "omitted zero point means uint8 with zero point 0; float32 division by an inexact scale")

    # 4. DequantizeLinear of an int8 graph input, per-axis along a negative axis (-2 of [2, 3, 4]).
    xq = rng.integers(-128, 128, size=(2, 3, 4)).astype(np.int8)
    xq[0, 0, 0], xq[1, 2, 3] = -128, 127
    s = np.array([0.1, 0.02, 3.0], np.float32)
    zp = np.array([1, -2, 0], np.int8)
    save("dq_int8_per_axis",
         [helper.make_node("DequantizeLinear", ["x", "s", "zp"], ["y"], axis=-2)],
         [vi("x", np.int8, xq.shape)], [vi("y", np.float32, xq.shape)],
         [numpy_helper.from_array(s, "s"), numpy_helper.from_array(zp, "zp")])
    case("dq_int8_per_axis", {"x": xq}, {"y": dequantize(xq, s, zp, 1)}, "per-axis along axis -2")

    # 5. uint8 per-tensor with a zero point, and int32 without one (the bias form).
    xu = np.arange(0, 256, 15, dtype=np.uint8)
    xi = np.array([-100000, -7, 0, 3, 2 ** 20], np.int32)
    save("dq_uint8_int32",
         [helper.make_node("DequantizeLinear", ["xu", "su", "zu"], ["yu"]),
          helper.make_node("DequantizeLinear", ["xi", "si"], ["yi"])],
         [vi("xu", np.uint8, xu.shape), vi("xi", np.int32, xi.shape)],
         [vi("yu", np.float32, xu.shape), vi("yi", np.float32, xi.shape)],
         [numpy_helper.from_array(np.array(0.037, np.float32), "su"),
          numpy_helper.from_array(np.array(128, np.uint8), "zu"),
          numpy_helper.from_array(np.array(0.001, np.float32), "si")])
    case("dq_uint8_int32", {"xu": xu, "xi": xi},
         {"yu": dequantize(xu, 0.037, 128, 0), "yi": dequantize(xi, 0.001, 0, 0)},
         "uint8 with a zero point; int32 without one")

    # 6. A QuantizeLinear -> DequantizeLinear pair (the executor fuses it into one float pass) and
    #    the same pair with the quantized value also a graph output (not fused): both must agree
    #    with the two ops run one after the other.
    x = (rng.standard_normal((3, 5)) * 4).astype(np.float32)
    x[0, :4] = [0.3, -0.3, 0.9, 7.5]  # near-ties for scale 0.6 (float32 division decides)
    sc, z = np.float32(0.6), np.uint8(3)
    s8 = np.array([0.05, 0.5, 1.0], np.float32)
    z8 = np.array([0, 4, -2], np.int8)
    save("qdq_pairs",
         [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
          helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["fused"]),
          helper.make_node("QuantizeLinear", ["x", "s8", "z8"], ["q8"], axis=0),
          helper.make_node("DequantizeLinear", ["q8", "s8", "z8"], ["unfused"], axis=0)],
         [vi("x", np.float32, x.shape)],
         [vi("fused", np.float32, x.shape), vi("unfused", np.float32, x.shape), vi("q8", np.int8, x.shape)],
         [numpy_helper.from_array(np.array(sc, np.float32), "s"), numpy_helper.from_array(np.array(z, np.uint8), "zp"),
          numpy_helper.from_array(s8, "s8"), numpy_helper.from_array(z8, "z8")])
    q = quantize(x, sc, z, 0, np.uint8)
    q8 = quantize(x, s8, z8, 0, np.int8)
    case("qdq_pairs", {"x": x},
         {"fused": dequantize(q, sc, z, 0), "unfused": dequantize(q8, s8, z8, 0), "q8": q8},
         "Q -> DQ pair (fused by the executor) and a per-axis pair whose Q output is also read outside")

    # 7. Opset 11 (opset-10 semantics: per-tensor only).
    x = np.array([-3.0, -1.5, -0.5, 0.5, 1.5, 2.5, 300.0], np.float32)
    save("qdq_opset11",
         [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
          helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])],
         [vi("x", np.float32, x.shape)], [vi("y", np.float32, x.shape)],
         [numpy_helper.from_array(np.array(1.0, np.float32), "s"),
          numpy_helper.from_array(np.array(-1, np.int8), "zp")], opset=11)
    case("qdq_opset11", {"x": x}, {"y": dequantize(quantize(x, 1.0, -1, 0, np.int8), 1.0, -1, 0)},
         "opset 11, int8, scale 1: ties at every .5")

    # 8. Conv whose weight is DequantizeLinear(int8 initializer, per-channel axis 0): the importer
    #    folds it into a float initializer once, the Conv then runs in float.
    w_q = rng.integers(-127, 128, size=(4, 2, 3, 3)).astype(np.int8)
    w_s = np.array([0.01, 0.02, 0.005, 0.04], np.float32)
    w_z = np.zeros(4, np.int8)
    b = rng.standard_normal(4).astype(np.float32)
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    save("conv_dq_weight",
         [helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
          helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
         [vi("x", np.float32, x.shape)], [vi("y", np.float32, (2, 4, 6, 6))],
         [numpy_helper.from_array(w_q, "w_q"), numpy_helper.from_array(w_s, "w_s"),
          numpy_helper.from_array(w_z, "w_z"), numpy_helper.from_array(b, "b")])
    w = dequantize(w_q, w_s, w_z, 0)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((2, 4, 6, 6), np.float64)
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,oc->nohw", xp[:, :, i:i + 6, j:j + 6].astype(np.float64), w[:, :, i, j].astype(np.float64))
    y = (y + b.reshape(1, 4, 1, 1)).astype(np.float32)
    case("conv_dq_weight", {"x": x}, {"y": y, "w": w},
         "weight folded at load (output 'w' is the expected folded initializer); Conv output to 1e-5")

    # 9. Cast float -> float16 -> float: ties to even, subnormals, overflow to inf.
    x = np.array([1.0, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 2048.0 + 1.0, 2048.0 + 3.0, 65504.0, 65520.0, 1e6,
                  -65520.0, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 1e-9, -0.0, 0.333333343, -2.71828], np.float32)
    save("cast_half_round_trip",
         [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
          helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)],
         [vi("x", np.float32, x.shape)], [vi("y", np.float32, x.shape)], [])
    with np.errstate(over="ignore"):  # 65520 and 1e6 overflow to inf on purpose
        half = x.astype(np.float16).astype(np.float32)
    case("cast_half_round_trip", {"x": x}, {"y": half},
         "round to nearest even, subnormals, overflow to inf")

    # Cross-check every expected output against ONNX Runtime (optimisations off).
    ort = os.path.join(ROOT, "scripts", "node", "node_modules", "onnxruntime-node")
    with tempfile.TemporaryDirectory() as tmp:
        spec = [{"name": c["name"], "model": os.path.join(OUT, c["model"]), "inputs": c["inputs"]} for c in cases]
        with open(os.path.join(tmp, "spec.json"), "w") as f:
            json.dump(spec, f)
        js = os.path.join(tmp, "run.js")
        with open(js, "w") as f:
            f.write(ORT_JS)
        res = json.loads(subprocess.run(["node", js, ort, os.path.join(tmp, "spec.json")], check=True,
                                        capture_output=True, text=True).stdout)
    for c in cases:
        for name, want in c["outputs"].items():
            if name not in res[c["name"]]:
                continue  # 'w' of conv_dq_weight is an initializer, not an output
            got = res[c["name"]][name]
            if c["name"] == "conv_dq_weight":
                a = np.array(got["bits"], np.uint32).view(np.float32)
                b_ = np.array(want["bits"], np.uint32).view(np.float32)
                assert np.allclose(a, b_, rtol=1e-5, atol=1e-5), (c["name"], name)
                continue
            key = "bits" if "bits" in want else "data"
            assert got[key] == want[key], (c["name"], name, got[key], want[key])
            assert list(got["shape"]) == want["shape"], (c["name"], name)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "scripts/make_qdq_fixtures.py", "checked_against": "onnxruntime-node, optimisations off",
                   "cases": cases}, f, indent=1)
    print("wrote", len(cases), "cases to", OUT, "(NumPy == ONNX Runtime on every element)")


if __name__ == "__main__":
    main()
