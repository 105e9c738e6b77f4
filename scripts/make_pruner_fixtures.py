#!/usr/bin/python3
"""Optuna's pruning decisions, recorded for tests/search/pruner_test.cpp to replay.

Writes tests/data/search/pruners.json. For every pruner of Optuna (Debian's python3-optuna) and
several keyword settings (warmup, interval_steps, n_min_trials, percentiles 0/25/75/100, "auto"
resources, bootstrap counts, both directions, several study names for Hyperband's brackets), it
runs an in-memory study through Optuna's ask/tell interface: seeded pseudo-random intermediate
curves (rounded to 3 decimals, so that ties occur; some NaN and +-inf values), several trials
running at once, mixed step patterns (dense, strided, offset, shuffled, repeated steps), trials
that complete, fail, are pruned or are left running. After every report it records
trial.should_prune(). At the end it records each trial's "completed_rung_<K>" system attributes.

It also records which constructor keyword settings Optuna rejects ("kwargs_checks").

Event encoding (compact): ["a"] ask (trial numbers follow in order), ["r", number, step, value,
decision] report then should_prune, ["t", number, state, value] tell (value null unless
COMPLETE).

Regenerate with Debian's python (not the pyenv one): /usr/bin/python3 scripts/make_pruner_fixtures.py
"""
import json
import math
import os
import random
import warnings

import optuna

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.ERROR)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "search")

CLASSES = {
    "NopPruner": optuna.pruners.NopPruner,
    "MedianPruner": optuna.pruners.MedianPruner,
    "PercentilePruner": optuna.pruners.PercentilePruner,
    "SuccessiveHalvingPruner": optuna.pruners.SuccessiveHalvingPruner,
    "HyperbandPruner": optuna.pruners.HyperbandPruner,
    "ThresholdPruner": optuna.pruners.ThresholdPruner,
    "PatientPruner": optuna.pruners.PatientPruner,
}


def build(name, kwargs):
    kwargs = dict(kwargs)
    if name == "PatientPruner":
        w = kwargs.get("wrapped_pruner")
        kwargs["wrapped_pruner"] = None if w is None else build(w["name"], w.get("kwargs", {}))
    return CLASSES[name](**kwargs)


def step_plan(rng, mode, max_len):
    if mode == "mixed":
        mode = rng.choice(["dense", "stride", "offset", "shuffled", "dup"])
    n = rng.randint(1, max_len)
    if mode == "dense":
        return list(range(n))
    if mode == "stride":
        k = rng.choice([2, 3])
        return list(range(0, n * k, k))
    if mode == "offset":
        k, o = rng.choice([1, 2, 5]), rng.randint(1, 6)
        return list(range(o, o + n * k, k))
    if mode == "shuffled":
        return rng.sample(range(2 * n), n)
    if mode == "dup":
        steps = []
        for s in range(n):
            steps.append(s)
            if rng.random() < 0.2:
                steps.append(s)  # reported twice: Optuna keeps the first value
        return steps
    if mode.startswith("long"):  # e.g. long25: strided far (SuccessiveHalving's auto resource)
        k = int(mode[4:])
        return list(range(0, n * k, k))
    raise ValueError(mode)


def curve(rng, steps, nan_p, inf_p):
    base, slope, noise = rng.uniform(0, 2), rng.uniform(-0.08, 0.08), rng.uniform(0, 0.3)
    all_nan = rng.random() < nan_p / 2
    out = []
    for i, s in enumerate(steps):
        r = rng.random()
        if all_nan or r < nan_p:
            v = math.nan
        elif r < nan_p + inf_p:
            v = rng.choice([math.inf, -math.inf])
        else:
            v = round(base + slope * i + rng.uniform(-noise, noise), 3)
        out.append((s, v))
    return out


def run_case(case, seed):
    rng = random.Random(seed)
    study = optuna.create_study(
        study_name=case["study_name"],
        direction=case["direction"],
        pruner=build(case["pruner"], case["kwargs"]),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    events, active, created, decisions = [], {}, 0, 0
    n_trials, concurrency = case.pop("n_trials"), case.pop("concurrency")
    mode, max_len = case.pop("steps"), case.pop("max_len")
    nan_p, inf_p = case.pop("nan_p", 0.0), case.pop("inf_p", 0.0)
    while created < n_trials or active:
        if created < n_trials and len(active) < concurrency and (not active or rng.random() < 0.4):
            t = study.ask()
            events.append(["a"])
            active[t.number] = [t, curve(rng, step_plan(rng, mode, max_len), nan_p, inf_p), 0]
            created += 1
            continue
        number = rng.choice(sorted(active))
        t, plan, pos = active[number]
        if pos == len(plan):
            r = rng.random()
            if r < 0.05:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
                events.append(["t", number, "FAIL", None])
            elif r < 0.08:
                pass  # left RUNNING (a worker that died)
            else:
                value = round(rng.uniform(0, 1), 3)
                study.tell(t, value)
                events.append(["t", number, "COMPLETE", value])
            del active[number]
            continue
        step, value = plan[pos]
        active[number][2] += 1
        t.report(value, step)
        decision = bool(t.should_prune())
        decisions += 1
        events.append(["r", number, step, value, decision])
        if decision and rng.random() < 0.85:  # most objectives obey; some run on
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
            events.append(["t", number, "PRUNED", None])
            del active[number]
    rungs = {}
    for t in study.get_trials(deepcopy=False):
        attrs = {k: v for k, v in t.system_attrs.items() if k.startswith("completed_rung_")}
        if attrs:
            rungs[str(t.number)] = attrs
    case["events"] = events
    case["rung_attrs"] = rungs
    return decisions, sum(1 for e in events if e[0] == "r" and e[4])


def cases():
    out = []

    def add(pruner, kwargs, direction="minimize", study_name="pruner-study", steps="mixed",
            n_trials=40, concurrency=3, max_len=14, **extra):
        out.append(dict(pruner=pruner, kwargs=kwargs, direction=direction, study_name=study_name,
                        steps=steps, n_trials=n_trials, concurrency=concurrency, max_len=max_len,
                        **extra))

    add("NopPruner", {}, nan_p=0.05)
    for d in ["minimize", "maximize"]:
        add("MedianPruner", {}, d, steps="dense", concurrency=1)
        add("MedianPruner", {}, d, nan_p=0.05)
        add("MedianPruner", {"n_startup_trials": 2, "n_warmup_steps": 3, "interval_steps": 2}, d)
        add("MedianPruner", {"n_startup_trials": 1, "interval_steps": 3, "n_min_trials": 3}, d,
            steps="stride", nan_p=0.03)
        add("MedianPruner", {"n_startup_trials": 0}, d, steps="shuffled", concurrency=4,
            nan_p=0.1, inf_p=0.05)
        add("PercentilePruner", {"percentile": 25.0, "n_startup_trials": 3}, d, nan_p=0.03)
        add("PercentilePruner", {"percentile": 75.0, "n_warmup_steps": 5, "interval_steps": 4}, d,
            steps="offset")
        add("PercentilePruner", {"percentile": 33.3, "n_startup_trials": 2, "n_min_trials": 2}, d,
            nan_p=0.08, inf_p=0.04)
        add("SuccessiveHalvingPruner", {}, d, steps="dense", max_len=30)
        add("SuccessiveHalvingPruner", {"min_resource": 1, "reduction_factor": 2}, d, nan_p=0.04)
        add("SuccessiveHalvingPruner",
            {"min_resource": 2, "reduction_factor": 3, "min_early_stopping_rate": 1}, d,
            steps="dense", max_len=30, concurrency=4)
        add("SuccessiveHalvingPruner", {"min_resource": 1, "bootstrap_count": 2,
                                        "reduction_factor": 2}, d, nan_p=0.03, inf_p=0.03)
        add("HyperbandPruner", {}, d, steps="dense", max_len=30, study_name="hb-" + d)
        add("HyperbandPruner", {"min_resource": 1, "max_resource": 27, "reduction_factor": 3}, d,
            max_len=30, nan_p=0.03)
        add("HyperbandPruner", {"min_resource": 2, "max_resource": 100, "reduction_factor": 2,
                                "bootstrap_count": 1}, d, steps="dense", max_len=40)
        add("ThresholdPruner", {"upper": 1.0}, d, nan_p=0.05)
        add("ThresholdPruner", {"lower": 0.1, "upper": 1.5, "n_warmup_steps": 2,
                                "interval_steps": 3}, d, inf_p=0.03)
        add("PatientPruner", {"wrapped_pruner": None, "patience": 0}, d, nan_p=0.05)
        add("PatientPruner", {"wrapped_pruner": None, "patience": 2, "min_delta": 0.05}, d,
            nan_p=0.1)
        add("PatientPruner", {"wrapped_pruner": {"name": "MedianPruner",
                                                 "kwargs": {"n_startup_trials": 2}},
                              "patience": 1}, d)
    # Successive halving with an "auto" min_resource above 1 (last steps in the hundreds).
    add("SuccessiveHalvingPruner", {"reduction_factor": 2}, "maximize", steps="long40",
        max_len=16)
    add("PercentilePruner", {"percentile": 0.0, "n_startup_trials": 1}, "minimize", nan_p=0.05)
    add("PercentilePruner", {"percentile": 100.0, "n_startup_trials": 1}, "maximize", nan_p=0.05)
    add("ThresholdPruner", {"lower": 0.5}, "maximize", steps="dup")
    # Hyperband's brackets depend on the study name (crc32 of "<name>_<number>").
    for name in ["alpha", "study-\u00df-\u4e2d", "hyperband study 7"]:
        add("HyperbandPruner", {"max_resource": 27}, "minimize", study_name=name, max_len=30,
            steps="dense")
    add("HyperbandPruner", {"max_resource": 243, "reduction_factor": 3}, "maximize",
        study_name="hb-243", steps="long9", max_len=30)  # log(243, 3) = 4.999...: 5 brackets
    add("HyperbandPruner", {"min_resource": 5, "max_resource": 3}, "minimize")  # no bracket
    add("PatientPruner", {"wrapped_pruner": {"name": "HyperbandPruner",
                                             "kwargs": {"max_resource": 20}},
                          "patience": 1, "min_delta": 0.01}, "minimize", study_name="patient-hb",
        steps="dense", max_len=20)
    add("PatientPruner", {"wrapped_pruner": {"name": "ThresholdPruner",
                                             "kwargs": {"upper": 1.2}}, "patience": 3},
        "maximize", nan_p=0.05)
    return out


KWARGS_CHECKS = [
    ("MedianPruner", {}),
    ("MedianPruner", {"n_startup_trials": -1}),
    ("MedianPruner", {"n_warmup_steps": -1}),
    ("MedianPruner", {"interval_steps": 0}),
    ("MedianPruner", {"n_min_trials": 0}),
    ("PercentilePruner", {"percentile": -0.5}),
    ("PercentilePruner", {"percentile": 100.5}),
    ("PercentilePruner", {"percentile": 100}),
    ("PercentilePruner", {"percentile": 10, "n_min_trials": 0}),
    ("SuccessiveHalvingPruner", {"min_resource": "max"}),
    ("SuccessiveHalvingPruner", {"min_resource": 0}),
    ("SuccessiveHalvingPruner", {"reduction_factor": 1}),
    ("SuccessiveHalvingPruner", {"min_early_stopping_rate": -1}),
    ("SuccessiveHalvingPruner", {"bootstrap_count": -1}),
    ("SuccessiveHalvingPruner", {"bootstrap_count": 1}),
    ("SuccessiveHalvingPruner", {"bootstrap_count": 1, "min_resource": 3}),
    ("HyperbandPruner", {"max_resource": "max"}),
    ("HyperbandPruner", {"bootstrap_count": 2}),
    ("HyperbandPruner", {"bootstrap_count": 2, "max_resource": 9}),
    ("ThresholdPruner", {}),
    ("ThresholdPruner", {"lower": 2.0, "upper": 1.0}),
    ("ThresholdPruner", {"lower": 1.0, "upper": 1.0}),
    ("ThresholdPruner", {"upper": 1.0, "n_warmup_steps": -1}),
    ("ThresholdPruner", {"lower": 1.0, "interval_steps": 0}),
    ("PatientPruner", {"wrapped_pruner": None, "patience": -1}),
    ("PatientPruner", {"wrapped_pruner": None, "patience": 0, "min_delta": -0.1}),
    ("PatientPruner", {"wrapped_pruner": {"name": "MedianPruner"}, "patience": 2}),
    ("NopPruner", {}),
]


def kwargs_checks():
    out = []
    for name, kwargs in KWARGS_CHECKS:
        try:
            build(name, kwargs)
            raises = False
        except (ValueError, TypeError):
            raises = True
        out.append({"pruner": name, "kwargs": kwargs, "optuna_raises": raises})
    return out


def main():
    all_cases = cases()
    n_decisions = n_pruned = 0
    for i, case in enumerate(all_cases):
        d, p = run_case(case, seed=1000 + i)
        n_decisions += d
        n_pruned += p
    doc = {
        "optuna_version": optuna.__version__,
        "generator": "scripts/make_pruner_fixtures.py",
        "n_decisions": n_decisions,
        "cases": all_cases,
        "kwargs_checks": kwargs_checks(),
    }
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "pruners.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {len(all_cases)} cases, {n_decisions} decisions ({n_pruned} prune), "
          f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
