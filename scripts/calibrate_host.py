#!/usr/bin/env python3
"""Calibrates `cpu:host`, the hardware-model profile of the machine compsearch runs on.

Measures with `compsearch measure` (the executor, median of repeats, per layer) the fit models
(the bundled Fashion-MNIST CNN, MLP and ResNet-8, and torchvision's ResNet-50) at batch 1 and 16,
fp32 and w8a8 on integer kernels; fits the profile's constants (fp32 and int8 peak MAC rates, the
conv, depthwise and Gemm utilisation, the per-layer overhead, the per-output-element cost and the
int8 datapath's per-input-element cost of quantizing its float input) by coordinate descent on the
squared log error of every layer, evaluating each candidate with `compsearch estimate` (the same
C++ cost model the search uses); then measures the held-out models (torchvision ResNet-18 and
MobileNetV2, and the arch zoo's four MLPerf Tiny networks; made by
scripts/make_torchvision_models.py and scripts/make_mlperf_tiny_models.py when absent) and reports
the model's error on them. Writes the profile to the cpu:host location
(hardware_models::host_profile_path: $COMPSEARCH_HOST_PROFILE, else
${XDG_DATA_HOME:-~/.local/share}/compsearch/cpu_host.json) or --out.

  scripts/calibrate_host.py BUILD_DIR [--out FILE] [--threads 1] [--quick] [--measurements F]
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
W8A8 = {"format": "compsearch.recipe/1", "default": {"w_bits": 8, "a_bits": 8}}


def host_profile_path():
    if os.environ.get("COMPSEARCH_HOST_PROFILE"):
        return Path(os.environ["COMPSEARCH_HOST_PROFILE"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "compsearch" / "cpu_host.json"


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


# Models whose arch-zoo workload has the same layer table (checked once per run, see
# estimate_source): estimating the zoo spec gives the same numbers without parsing a 100 MB ONNX
# file for every candidate profile.
ZOO = {"resnet18.torchvision": "zoo:resnet18", "resnet50.torchvision": "zoo:resnet50",
       "mobilenet_v2.torchvision": "zoo:mobilenet_v2", "ds_cnn_kws": "zoo:ds_cnn_kws",
       "resnet8_cifar": "zoo:resnet8_cifar", "mobilenet_v1_vww": "zoo:mobilenet_v1_vww",
       "fc_autoencoder": "zoo:fc_autoencoder"}
_sources = {}


def estimate_source(cli, model):
    """The zoo spec for `model` if its layers' MACs and weight bytes equal the file's, else the
    file itself."""
    if model in _sources:
        return _sources[model]
    source = str(model)
    zoo = ZOO.get(Path(model).stem)
    if zoo:
        layers = lambda m: [(l["macs"], l["weight_bytes"]) for l in run_json(
            [cli, "estimate", "--model", m, "--target", "cpu:desktop-x86", "--json"])["layers"]]
        if layers(zoo) == layers(str(model)):
            source = zoo
        else:
            print(f"calibrate_host: {model} differs from {zoo}; estimating the file",
                  file=sys.stderr)
    _sources[model] = source
    return source


class Case:
    """One (model, batch, precision) measured once (or read from the measurements cache) and
    estimated per candidate profile."""

    def __init__(self, cli, model, batch, int8, recipe, threads, repeats, cache):
        self.cli, self.model, self.batch, self.int8, self.recipe = cli, model, batch, int8, recipe
        key = f"{Path(model).name}|b{batch}|{'int8' if int8 else 'fp32'}|t{threads}|r{repeats}"
        if key in cache:
            self.measured = cache[key]
        else:
            cmd = [cli, "measure", "--model", str(model), "--batch", str(batch), "--threads",
                   str(threads), "--repeats", str(repeats), "--json"]
            if int8:
                cmd += ["--int8", "--recipe", recipe]
            self.measured = cache[key] = run_json(cmd)
        self.label = f"{Path(model).stem} b{batch} {'int8' if int8 else 'fp32'}"
        self.source = estimate_source(cli, model)

    def estimate(self, profile_path):
        cmd = [self.cli, "estimate", "--model", self.source, "--batch", str(self.batch),
               "--target", str(profile_path), "--json"]
        if self.int8:
            cmd += ["--recipe", self.recipe]
        return run_json(cmd)

    def layer_errors(self, est):
        """log(estimate / measured) per timed layer (measured above 1 microsecond). A layer the
        executor ran inside the one before it (a depthwise convolution fused into a 1x1) adds its
        estimate to that layer's, whose measured time includes it."""
        pairs = []
        for m, e in zip(self.measured["layers"], est["layers"]):
            if m.get("kernel", "").startswith("(inside") and pairs:
                pairs[-1][1] += e["latency_ms"]
            else:
                pairs.append([m["median_ms"], e["latency_ms"]])
        return [math.log(e / m) for m, e in pairs if m > 1e-3 and e > 0]

    def total_error(self, est):
        return est["latency_ms"] / self.measured["total_ms"] - 1.0


def set_param(profile, name, value):
    if name == "fp32_peak" or name == "int8_peak":
        for d in profile["datapaths"]:
            if d["name"] == name.split("_")[0]:
                d["peak_macs_per_s"]["value"] = value
    elif name == "int8_per_input_ns":
        for d in profile["datapaths"]:
            if d["name"] == "int8":
                d["per_input_ns"] = {"value": value, "source": d["peak_macs_per_s"]["source"]}
    elif name in ("conv", "depthwise", "gemm"):
        profile["utilisation"][name]["value"] = value
    elif name == "per_output_ns":
        profile["utilisation"]["per_output_ns"]["value"] = value
    elif name == "layer_overhead_us":
        profile["layer_overhead_us"]["value"] = value
    elif name == "inference_overhead_us":
        profile["inference_overhead_us"]["value"] = value


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("build_dir")
    ap.add_argument("--out", help="profile file to write (default: the cpu:host location)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and sweeps (a smoke run)")
    ap.add_argument("--measurements", help="JSON cache of the measurements: read the cases it "
                    "has, measure and add the others (to refit without measuring again)")
    args = ap.parse_args()
    cli = str(Path(args.build_dir) / "cli" / "compsearch")
    out = Path(args.out) if args.out else host_profile_path()
    repeats = 5 if args.quick else 20
    tmp = Path(tempfile.mkdtemp(prefix="calibrate_host_"))
    recipe = tmp / "w8a8.json"
    recipe.write_text(json.dumps(W8A8))

    tv = lambda name: ROOT / "models" / f"{name}.torchvision.onnx"
    tiny = ["ds_cnn_kws", "resnet8_cifar", "mobilenet_v1_vww", "fc_autoencoder"]
    tiny_dir = ROOT / "models" / "mlperf_tiny"
    held_out = [tv("resnet18"), tv("mobilenet_v2")] + [tiny_dir / f"{n}.onnx" for n in tiny]
    missing = [n for n in ("resnet18", "mobilenet_v2", "resnet50") if not tv(n).exists()]
    if missing:
        print(f"calibrate_host: making the torchvision models {missing}", file=sys.stderr)
        subprocess.run(["/usr/bin/python3", str(ROOT / "scripts" / "make_torchvision_models.py"),
                        "--models", ",".join(missing)], check=True)
    if not all((tiny_dir / f"{n}.onnx").exists() for n in tiny):
        print("calibrate_host: making the MLPerf Tiny models", file=sys.stderr)
        subprocess.run(["/usr/bin/python3", str(ROOT / "scripts" / "make_mlperf_tiny_models.py"),
                        "--out", str(tiny_dir)], check=True)
    fit_models = [ROOT / "models" / f for f in ("fmnist_cnn.onnx", "fmnist_mlp.onnx",
                                                "fmnist_resnet8.onnx")] + [tv("resnet50")]
    print("calibrate_host: measuring the fit models", file=sys.stderr)
    cache = {}
    if args.measurements and Path(args.measurements).exists():
        cache = json.loads(Path(args.measurements).read_text())

    def save_cache():
        if args.measurements:
            Path(args.measurements).write_text(json.dumps(cache, indent=1) + "\n")

    fit = [Case(cli, m, b, i8, str(recipe), args.threads, repeats, cache)
           for m in fit_models for b in (1, 16) for i8 in (False, True)]
    save_cache()
    print("calibrate_host: measuring the held-out models", file=sys.stderr)
    held = [Case(cli, m, b, i8, str(recipe), args.threads, max(3, repeats // 2), cache)
            for m in held_out for b in (1, 4) for i8 in (False, True)]
    save_cache()

    profile = json.loads((ROOT / "hardware_models" / "profiles" / "cpu_desktop-x86.json").read_text())
    machine = fit[0].measured["machine"]
    profile["name"] = "cpu:host"
    profile["description"] = (f"this machine ({machine.removeprefix('machine: ')}), "
                              f"{args.threads} executor thread(s); calibrated by "
                              f"scripts/calibrate_host.py on {platform.node()}")
    source = ("calibrated by scripts/calibrate_host.py: compsearch measure of the bundled "
              "Fashion-MNIST CNN, MLP and ResNet-8 and torchvision ResNet-50 at batch 1 and 16, "
              "fp32 and w8a8")
    for d in profile["datapaths"]:
        d["peak_macs_per_s"]["source"] = source
    for k in ("conv", "depthwise", "gemm", "per_output_ns"):
        profile["utilisation"][k]["source"] = source
    profile["layer_overhead_us"]["source"] = source
    profile["inference_overhead_us"]["source"] = source + " (the ops between layers)"
    params = {"fp32_peak": 1e11, "int8_peak": 2e11, "conv": 0.5, "depthwise": 0.1, "gemm": 0.5,
              "layer_overhead_us": 2.0, "per_output_ns": 0.1, "inference_overhead_us": 5.0,
              "int8_per_input_ns": 0.2}
    bounds = {"conv": (0.001, 1.0), "depthwise": (0.001, 1.0), "gemm": (0.001, 1.0)}
    cand = tmp / "cpu_host.json"

    def loss(p):
        for k, v in p.items():
            set_param(profile, k, v)
        cand.write_text(json.dumps(profile, indent=1))
        total = 0.0
        for c in fit:
            est = c.estimate(cand)
            total += sum(e * e for e in c.layer_errors(est))
            total += 4 * math.log(1 + c.total_error(est)) ** 2  # the totals matter most
        return total

    best = loss(params)
    sweeps = 2 if args.quick else 4
    for sweep in range(sweeps):
        step = 2.0 ** (1.0 / (sweep + 1))
        for k in params:
            for _ in range(6):
                improved = False
                for f in (step, 1 / step):
                    trial = dict(params)
                    trial[k] = params[k] * f
                    lo, hi = bounds.get(k, (0, math.inf))
                    if not lo <= trial[k] <= hi:
                        continue
                    l = loss(trial)
                    if l < best:
                        best, params, improved = l, trial, True
                        break
                if not improved:
                    break
        print(f"calibrate_host: sweep {sweep + 1}/{sweeps}: loss {best:.3f} {params}",
              file=sys.stderr)
    loss(params)  # leaves the profile at the best parameters
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(profile, indent=1) + "\n")

    def report(cases, title):
        print(f"{title}:")
        print(f"  {'case':<34} {'measured_ms':>12} {'model_ms':>10} {'error':>7} "
              f"{'layer |err| median':>19}")
        errs = []
        for c in cases:
            est = c.estimate(out)
            le = [abs(math.exp(e) - 1) for e in c.layer_errors(est)]
            errs.append(c.total_error(est))
            print(f"  {c.label:<34} {c.measured['total_ms']:12.4f} {est['latency_ms']:10.4f} "
                  f"{100 * c.total_error(est):+6.0f}% "
                  f"{100 * statistics.median(le) if le else 0:18.0f}%")
        print(f"  median |total error| {100 * statistics.median(abs(e) for e in errs):.0f}%")

    print(machine)
    report(fit, "fit models")
    report(held, "held-out models")
    print(f"cpu:host profile written to {out}")


if __name__ == "__main__":
    main()
