#!/usr/bin/env python3
"""Calibration of the hardware-model constants marked 'calibrated' in hardware_models/profiles.

Each group below names the profile files, the constants it fits, and the fit cases of
tests/data/published_latency.json (those with "fit": true) it fits them on; everything else in that
file is held out. The fit is a plain grid search minimising the sum of squared log errors, using
the validation test binary (it prints every case's error) as the evaluator, so the numbers come from
the same C++ model the tests check.

  scripts/calibrate_hw.py BUILD_DIR            # print the best values and errors, change nothing
  scripts/calibrate_hw.py BUILD_DIR --write    # also write them into the profile files

Derived constants are written alongside: the Cortex-M33/M7 depthwise and gemm efficiencies keep the
Cortex-M4 ratios, the M33 per-output cost keeps the M4 cycle count, and A100/H100 fill times scale
the T4 value by SMs x clock. Run groups in order (later ones use earlier results).
"""
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "hardware_models" / "profiles"
USER = ROOT / "tests" / "data" / "hw"


def load(p):
    return json.loads(Path(p).read_text())


def save(p, j):
    Path(p).write_text(json.dumps(j, indent=1) + "\n")


def set_value(path, key, value):
    j = load(path)
    node = j
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]]["value"] = value
    save(path, j)


def clock_hz(path):  # MCU profiles: fp32 datapath = 1 MAC/cycle
    return next(d for d in load(path)["datapaths"] if d["name"] == "fp32")["peak_macs_per_s"]["value"]


def errors(binary):
    out = subprocess.run([binary], capture_output=True, text=True, cwd=ROOT).stdout
    res = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) >= 7 and p[-1] in ("fit", "held-out") and p[-2].endswith("%"):
            res[p[0]] = float(p[-2].rstrip("%")) / 100
        elif len(p) >= 4 and p[-1].endswith("%") and "/" in p[0]:
            res["ratio:" + p[0]] = float(p[-1].rstrip("%")) / 100
    return res


def loss(res, ids):
    return sum(math.log(1 + res[i]) ** 2 for i in ids)


def grid(binary, apply, grids, ids):
    best = None
    for combo in itertools.product(*grids):
        apply(*combo)
        r = errors(binary)
        l = loss(r, ids)
        if best is None or l < best[0]:
            best = (l, combo, {i: round(r[i], 3) for i in ids})
    apply(*best[1])
    return best


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = str(Path(sys.argv[1]) / "tests" / "test_hardware_models")
    write = "--write" in sys.argv
    backup = {p: p.read_text() for p in list(PROFILES.glob("*.json")) + list(USER.glob("*.json"))}
    m7_files = [PROFILES / "mcu_stm32h743.json", PROFILES / "mcu_stm32f746.json", USER / "stm32h7a3.json",
                USER / "stm32h747_400mhz.json"]
    try:
        l4 = PROFILES / "mcu_stm32l4r5.json"

        def m4(conv, dw, po):
            for k, v in (("conv", conv), ("depthwise", dw), ("per_output_ns", po)):
                set_value(l4, "utilisation." + k, v)
        print("Cortex-M4 conv, depthwise, per-output ns:",
              grid(binary, m4, [[0.2 + 0.02 * i for i in range(6)], [0.06, 0.08, 0.1, 0.12], [0, 100, 200, 300, 400]],
                   ["stm32l4r5-ic", "stm32l4r5-kws"]))
        print("Cortex-M4 gemm:", grid(binary, lambda g: set_value(l4, "utilisation.gemm", g),
                                      [[0.1 + 0.02 * i for i in range(6)]], ["stm32l4r5-ad"]))
        u = load(l4)["utilisation"]
        rdw, rg = u["depthwise"]["value"] / u["conv"]["value"], u["gemm"]["value"] / u["conv"]["value"]
        cycles = u["per_output_ns"]["value"] * 1e-9 * clock_hz(l4)

        def core(files, cyc_fixed=None):
            def apply(conv, cyc=None):
                c = cyc_fixed if cyc is None else cyc
                for f in files:
                    for k, v in (("conv", conv), ("depthwise", conv * rdw), ("gemm", conv * rg),
                                 ("per_output_ns", c / clock_hz(f) * 1e9)):
                        set_value(f, "utilisation." + k, v)
            return apply
        print("Cortex-M33 conv:", grid(binary, core([PROFILES / "mcu_stm32u585.json"], cycles),
                                       [[0.25 + 0.01 * i for i in range(25)]], ["stm32u585-kws"]))
        print("Cortex-M7 conv, per-output cycles:",
              grid(binary, core(m7_files), [[0.2 + 0.03 * i for i in range(24)], [0, 4, 8, 12, 16, 24, 36]],
                   ["h747-mobilenetv1-0.25-96", "stm32h7a3-kws"]))

        t4 = PROFILES / "gpu_t4.json"

        def gpu_t4(eff, fill):
            for k in ("conv", "gemm"):
                set_value(t4, "utilisation." + k, eff)
            set_value(t4, "utilisation.fill_time_us", fill)
            for name, sms_ghz in (("gpu_a100.json", 108 * 1.41), ("gpu_h100.json", 132 * 1.98)):
                for k in ("conv", "gemm"):
                    set_value(PROFILES / name, "utilisation." + k, eff)
                set_value(PROFILES / name, "utilisation.fill_time_us", round(fill * 40 * 1.59 / sms_ghz, 1))
        print("T4 conv efficiency, fill time:",
              grid(binary, gpu_t4, [[0.35 + 0.01 * i for i in range(9)], [10 + 0.5 * i for i in range(6)]],
                   ["t4-resnet50-int8-b1", "t4-resnet50-int8-offline"]))
        orin = PROFILES / "gpu_orin-nano.json"

        def gpu_orin(eff, fill, over):
            for k in ("conv", "gemm"):
                set_value(orin, "utilisation." + k, eff)
            set_value(orin, "utilisation.fill_time_us", fill)
            set_value(orin, "inference_overhead_us", over)
        print("Orin Nano efficiency, fill time, per-inference overhead:",
              grid(binary, gpu_orin, [[0.22 + 0.01 * i for i in range(5)], [40, 45, 50, 55], [300, 500, 700]],
                   ["orin-nano-resnet50-int8-b1", "orin-nano-resnet18-int8-b1", "orin-nano-resnet18-int8-b64"]))

        def tf32(e):
            for name in ("gpu_orin-nano.json", "gpu_a100.json", "gpu_h100.json"):
                j = load(PROFILES / name)
                for d in j["datapaths"]:
                    if d["name"] == "tf32":
                        d["efficiency"]["value"] = e
                save(PROFILES / name, j)
        print("TF32 efficiency:", grid(binary, tf32, [[0.6 + 0.01 * i for i in range(31)]], ["orin-nano-resnet50-fp32-b1"]))

        def sparse(s):
            for name in ("gpu_a100.json", "gpu_h100.json", "gpu_orin-nano.json"):
                j = load(PROFILES / name)
                for d in j["datapaths"]:
                    if d.get("sparse_2_4"):
                        d["sparse_2_4_speedup"]["value"] = s
                save(PROFILES / name, j)
        print("2:4 sparse speed-up:", grid(binary, sparse, [[1.0 + 0.02 * i for i in range(51)]],
                                           ["ratio:2:4/dense"]))
        etpu = PROFILES / "npu_edgetpu.json"
        print("Edge TPU fill time:", grid(binary, lambda f: set_value(etpu, "utilisation.fill_time_us", f),
                                          [[10, 15, 20, 25, 30, 35, 40]], ["edgetpu-mobilenetv1-224"]))
        h7a3 = USER / "stm32h7a3.json"
        print("STM32L4R5 board power:", grid(binary, lambda w: set_value(l4, "idle_power_w", round(w, 4)),
                                             [[0.06 + 0.0005 * i for i in range(81)]], ["stm32l4r5-ic-energy"]))
        print("STM32H7A3 board power:", grid(binary, lambda w: set_value(h7a3, "idle_power_w", round(w, 4)),
                                             [[0.12 + 0.0005 * i for i in range(81)]], ["stm32h7a3-ic-energy"]))
        final = errors(binary)
        print("all cases:", json.dumps({k: round(v, 3) for k, v in final.items()}, indent=0))
    finally:
        if not write:
            for p, text in backup.items():
                p.write_text(text)


if __name__ == "__main__":
    main()
