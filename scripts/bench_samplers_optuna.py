#!/usr/bin/python3
"""Peer runs for bench/bench_samplers.cpp: Optuna 3.1's samplers on the same problems.

Run with Debian's /usr/bin/python3 (python3-optuna 3.1). Prints one JSON object per line and run:
{"problem", "sampler", "seed", "n_trials", "prefill", "total_s", "objective_s",
 "values": [[f1, f2, ...], ...]}
The caller computes hypervolumes from "values" with the same code it uses for its own runs, and
the per-trial overhead as (total_s - objective_s) / n_trials, where objective_s times only the
objective's arithmetic (not the suggest_* calls, which is where Optuna samples). Times are
process CPU times (time.process_time), so other load on the machine does not inflate them.
With --prefill N, N trials are first run with RandomSampler(seed) (not timed), then the
sampler under test runs --trials more trials: the overhead per trial at study size N.
Each line also records the Optuna version and the UTC date of the run, so that results saved
to a file (bench/optuna_results/, read by bench_samplers --optuna DIR) say where they came from.

The problems must stay identical to bench/bench_samplers.cpp:
  zdt1, zdt2: 30 floats in [0, 1];  dtlz2: 3 objectives, 12 floats in [0, 1];
  mixed30: ZDT1-shaped on 30 mixed parameters (see mixed30 below).
"""
import argparse
import datetime
import json
import math
import sys
import time

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def zdt_g(x):
    return 1.0 + 9.0 * sum(x[1:]) / (len(x) - 1)


def zdt1(x):
    g = zdt_g(x)
    return [x[0], g * (1.0 - math.sqrt(x[0] / g))]


def zdt2(x):
    g = zdt_g(x)
    return [x[0], g * (1.0 - (x[0] / g) ** 2)]


def dtlz2(x, m=3):
    g = sum((v - 0.5) ** 2 for v in x[m - 1:])
    f = []
    for j in range(m):
        v = 1.0 + g
        for i in range(m - 1 - j):
            v *= math.cos(x[i] * math.pi / 2)
        if j > 0:
            v *= math.sin(x[m - 1 - j] * math.pi / 2)
        f.append(v)
    return f


CHOICES = ["a", "b", "c", "d"]


def mixed30(trial, spent):
    # x0: the ZDT position; 29 distance terms in [0, 1] from floats, stepped floats, ints,
    # log ints and categoricals.
    x0 = trial.suggest_float("x0", 0.0, 1.0)
    f = [trial.suggest_float(f"f{i}", 0.0, 1.0) for i in range(1, 5)]
    s = [trial.suggest_float(f"s{i}", 0.0, 1.0, step=0.05) for i in range(5, 10)]
    ints = [trial.suggest_int(f"i{i}", 0, 10) for i in range(5)]
    logs = [trial.suggest_int(f"l{i}", 1, 64, log=True) for i in range(5, 10)]
    cats = [trial.suggest_categorical(f"c{i}", CHOICES) for i in range(10)]
    t0 = time.process_time()
    terms = f + s + [abs(v - 3) / 7.0 for v in ints] + [math.log2(v) / 6.0 for v in logs]
    terms += [CHOICES.index(c) / 3.0 for c in cats]
    g = 1.0 + 9.0 * sum(terms) / 29.0
    out = [x0, g * (1.0 - math.sqrt(x0 / g))]
    spent[0] += time.process_time() - t0
    return out


def make_objective(problem, spent):
    if problem == "mixed30":
        return (lambda trial: mixed30(trial, spent)), 2
    n, m, fn = {"zdt1": (30, 2, zdt1), "zdt2": (30, 2, zdt2), "dtlz2": (12, 3, dtlz2)}[problem]

    def objective(trial):
        x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(n)]
        t0 = time.process_time()
        out = fn(x)
        spent[0] += time.process_time() - t0
        return out

    return objective, m


def run(problem, sampler_name, seed, n_trials, prefill):
    spent = [0.0]
    objective, m = make_objective(problem, spent)
    study = optuna.create_study(directions=["minimize"] * m,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    if prefill:
        study.optimize(objective, n_trials=prefill)
    study.sampler = getattr(optuna.samplers, sampler_name)(seed=seed)
    spent[0] = 0.0
    t0 = time.process_time()
    study.optimize(objective, n_trials=n_trials)
    total = time.process_time() - t0
    return {"problem": problem, "sampler": sampler_name, "seed": seed, "n_trials": n_trials,
            "prefill": prefill, "total_s": total, "objective_s": spent[0],
            "optuna_version": optuna.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "values": [t.values for t in study.trials]}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--problems", default="zdt1,zdt2,dtlz2,mixed30")
    ap.add_argument("--sampler", required=True, choices=["NSGAIISampler", "TPESampler"])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--prefill", type=int, default=0)
    args = ap.parse_args()
    for problem in args.problems.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            print(json.dumps(run(problem, args.sampler, seed, args.trials, args.prefill)),
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
