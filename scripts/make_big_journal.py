#!/usr/bin/python3
"""Writes a large Optuna journal shaped like what `compsearch search` writes, for
bench/bench_replay.cpp (issue 12, item 5: replay speed).

The default is a 28,000-trial, ~135 MB two-objective study ("big") written by four workers:
each trial is created RUNNING, gets per-layer params of every distribution kind
(CategoricalDistribution, IntDistribution, FloatDistribution with step and with log), the
distillation params, intermediate values at the fidelity levels (0..2), the user attributes a
trial of the search carries (`metric@target`, the recipe, proxy loss), the system attributes
(constraints, nsga2 generation, a failed trial's fail_reason), and finishes COMPLETE (values),
PRUNED or FAIL; the last trials are left RUNNING/WAITING. Deterministic (seeded), so two runs write the same bytes.

Usage: make_big_journal.py OUT [--trials N] [--layers L] [--seed S]
"""
import argparse
import json
import random

TARGETS = ["gpu:t4", "npu:ethos-u55-256", "mcu:stm32f746"]
METRICS = ["latency_ms"]
W_BITS = [1, 2, 3, 4, 8]
PRUNE_KIND = ["none", "unstructured", "channel", "2:4"]


def dist(name, **attributes):
    # Optuna's distribution_to_json: json.dumps with the default separators.
    return json.dumps({"name": name, "attributes": attributes})


def layer_space(layer):
    return [
        (f"{layer}.w_bits", dist("CategoricalDistribution", choices=W_BITS), "cat", W_BITS),
        (f"{layer}.prune_kind", dist("CategoricalDistribution", choices=PRUNE_KIND), "cat",
         PRUNE_KIND),
        (f"{layer}.prune_ratio",
         dist("FloatDistribution", log=False, step=0.05, low=0.0, high=0.75), "step", (0.0, 0.75,
                                                                                      0.05)),
    ]


KD_SPACE = [
    ("kd.epochs", dist("IntDistribution", log=False, step=1, low=0, high=3), "int", (0, 3)),
    ("kd.alpha", dist("FloatDistribution", log=False, step=None, low=0.1, high=0.99), "float",
     (0.1, 0.99)),
    ("kd.lr", dist("FloatDistribution", log=True, step=None, low=1e-05, high=0.01), "log",
     (1e-05, 0.01)),
]


def sample(rng, kind, arg):
    if kind == "cat":
        return rng.randrange(len(arg))
    if kind == "step":
        low, high, step = arg
        return round(low + step * rng.randrange(int(round((high - low) / step)) + 1), 10)
    if kind == "int":
        return rng.randint(*arg)
    if kind == "log":
        import math
        return math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1])))
    return rng.uniform(*arg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--trials", type=int, default=28000)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    layers = [f"conv{i + 1}" for i in range(a.layers - 2)] + ["fc1", "fc2"]
    space = [p for layer in layers for p in layer_space(layer)] + KD_SPACE
    workers = [f"5b0c6f1e-7d2a-4c1b-9a53-{i:012x}-{1407 + 13 * i}" for i in range(4)]
    compact = dict(separators=(",", ":"))
    second = 0

    def stamp():
        nonlocal second
        second += 1
        s = second
        return (f"2026-11-{20 + s // 86400:02d}T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:"
                f"{s % 60:02d}.{rng.randrange(1000000):06d}")

    with open(a.out, "w") as f:
        def write(worker, op, **fields):
            f.write(json.dumps({"op_code": op, "worker_id": worker, **fields}, **compact) + "\n")

        w0 = workers[0]
        write(w0, 0, study_name="big", directions=[2, 1])
        write(w0, 2, study_id=0, user_attr={"compsearch.config": {
            "model": "models/fmnist_cnn.onnx", "targets": TARGETS,
            "objectives": [["accuracy", "maximize"], ["latency_ms@mcu:stm32f746", "minimize"]],
            "constraints": ["sram_kb@mcu:stm32f746 <= 320"], "sampler": {"name": "nsga2",
                                                                         "seed": a.seed}}})
        for trial_id in range(a.trials):
            worker = workers[trial_id % len(workers)]
            write(worker, 4, study_id=0, datetime_start=stamp())
            if trial_id >= a.trials - 3:
                if trial_id == a.trials - 1:  # a queued trial, as enqueue_trial leaves it
                    write(worker, 6, trial_id=trial_id, state=4, values=None)
                continue  # still RUNNING
            write(worker, 9, trial_id=trial_id, system_attr={"nsga2:generation": trial_id // 50})
            recipe = {}
            for name, d, kind, arg in space:
                v = sample(rng, kind, arg)
                write(worker, 5, trial_id=trial_id, param_name=name, param_value_internal=v,
                      distribution=d)
                layer, key = name.split(".")
                recipe.setdefault(layer, {})[key] = arg[v] if kind == "cat" else v
            write(worker, 8, trial_id=trial_id, user_attr={"recipe": {
                "format": "compsearch.recipe/1", "layers": recipe}})
            accuracy = rng.uniform(0.5, 0.91)
            for step in range(3):
                write(worker, 7, trial_id=trial_id, step=step,
                      intermediate_value=accuracy + rng.uniform(-0.02, 0.02))
            write(worker, 8, trial_id=trial_id, user_attr={"proxy_loss": rng.random()})
            metrics = {"accuracy": accuracy, "accuracy_drop": 0.9004 - accuracy,
                       "size_kb": rng.uniform(20, 420), "sram_kb@mcu:stm32f746": rng.uniform(
                           10, 400)}
            for t in TARGETS:
                for m in METRICS:
                    metrics[f"{m}@{t}"] = rng.uniform(0.01, 20.0)
            for k, v in metrics.items():
                write(worker, 8, trial_id=trial_id, user_attr={k: v})
            sram = metrics["sram_kb@mcu:stm32f746"]
            write(worker, 9, trial_id=trial_id, system_attr={"constraints": [sram - 320.0]})
            r = rng.random()
            if r < 0.05:
                write(worker, 9, trial_id=trial_id,
                      system_attr={"fail_reason": "evaluator timed out after 600 s"})
                write(worker, 6, trial_id=trial_id, state=3, values=None,
                      datetime_complete=stamp())
            elif r < 0.2:
                write(worker, 6, trial_id=trial_id, state=2, values=None,
                      datetime_complete=stamp())
            else:
                write(worker, 6, trial_id=trial_id, state=1,
                      values=[accuracy, metrics["latency_ms@mcu:stm32f746"]],
                      datetime_complete=stamp())


if __name__ == "__main__":
    main()
