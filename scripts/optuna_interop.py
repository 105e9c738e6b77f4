#!/usr/bin/python3
"""Optuna 3.1 side of the compsearch interop tests (tests/search/interop_test.cpp) and the
generator of tests/data/search/optuna_reference.json.

Run with Debian's /usr/bin/python3 (python3-optuna). Subcommands:
  reference OUT.json            Optuna/Python reference values for the distribution and JSON tests
  dump JOURNAL                  every study and trial Optuna sees in JOURNAL, as canonical JSON
  write JOURNAL STUDY           an NSGA-II study with every kind of record (for compsearch to read)
  continue JOURNAL STUDY N      Optuna adds N trials to a study (e.g. one compsearch wrote)
  worker JOURNAL STUDY N TAG    N ask/tell trials, user attr worker=TAG (concurrency test)
  cli JOURNAL ARGS...           Optuna's own CLI (optuna.cli.main) with --storage JOURNAL
  cli-batch JOURNAL FILE        the same for each argument list in FILE (a JSON list of lists),
                                printing a JSON list of their outputs (one Python start-up)
"""
import json
import math
import sys
import warnings

warnings.simplefilter("ignore")

import optuna  # noqa: E402
from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)


def storage_of(path):
    return optuna.storages.JournalStorage(optuna.storages.JournalFileStorage(path))


def dt(d):
    return None if d is None else d.isoformat(sep=" ", timespec="microseconds")


def canonical(storage):
    out = []
    for s in storage.get_all_studies():
        trials = []
        for t in storage.get_all_trials(s._study_id, deepcopy=False):
            trials.append(
                {
                    "number": t.number,
                    "trial_id": t._trial_id,
                    "state": t.state.name,
                    "values": t.values,
                    "datetime_start": dt(t.datetime_start),
                    "datetime_complete": dt(t.datetime_complete),
                    "params": t.params,
                    "distributions": {k: json.loads(distribution_to_json(d)) for k, d in t.distributions.items()},
                    "user_attrs": t.user_attrs,
                    "system_attrs": t.system_attrs,
                    "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
                }
            )
        out.append(
            {
                "study_id": s._study_id,
                "study_name": s.study_name,
                "directions": [d.name for d in s.directions],
                "user_attrs": s.user_attrs,
                "system_attrs": s.system_attrs,
                "trials": trials,
            }
        )
    return out


def reference(out_path):
    floats = [0.0, -0.0, 1.0, 0.1, 1 / 3, 1e-4, 1e-5, 1.5e-5, 123456789.125, 1e15, 1e16, 1.2345e16, 2.5e-300,
              1.7976931348623157e308, 5e-324, -7.25, 100.0, 0.30000000000000004]
    dists = {
        "float": FloatDistribution(0.0, 1.0),
        "float_log": FloatDistribution(1e-5, 1.0, log=True),
        "float_step": FloatDistribution(0.0, 1.0, step=0.3),
        "float_step2": FloatDistribution(-1.0, 2.05, step=0.1),
        "float_step3": FloatDistribution(0.1, 0.75, step=0.25),
        "int": IntDistribution(0, 10, step=3),
        "int_log": IntDistribution(1, 1024, log=True),
        "cat": CategoricalDistribution(["a", 1, 2.5, None, True]),
    }
    ref = {
        "float_repr": [[f.hex(), repr(f)] for f in floats],
        "distribution_json": {k: distribution_to_json(d) for k, d in dists.items()},
        "single": {k: d.single() for k, d in dists.items()},
        "json_dumps": json.dumps({"a": [1, 2.0, None, True, "é\u2603\U0001F600\n\"x\""], "b": float("nan"),
                                  "c": float("inf"), "d": -float("inf")}),
        "json_dumps_compact": json.dumps({"k": [1.5, {"z": "q"}]}, separators=(",", ":")),
    }
    with open(out_path, "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")


def write(path, study_name):
    storage = storage_of(path)
    sampler = optuna.samplers.NSGAIISampler(seed=3, population_size=4)
    study = optuna.create_study(storage=storage, study_name=study_name, directions=["minimize", "maximize"],
                                sampler=sampler)
    study.set_user_attr("owner", "python")
    study.set_system_attr("note", [1, 2])

    def objective(trial):
        x = trial.suggest_float("x", -2.0, 2.0)
        n = trial.suggest_int("n", 1, 64, log=True)
        c = trial.suggest_categorical("c", ["relu", "gelu", None])
        s = trial.suggest_float("s", 0.0, 1.0, step=0.25)
        trial.set_user_attr("metric@t", x * 2)
        trial.set_user_attr("nested", {"k": [1, "v"]})
        if trial.number == 5:
            raise RuntimeError("boom")
        return x * x + s, float(n) + (0.5 if c == "relu" else 0.0)

    study.optimize(objective, n_trials=10, catch=(RuntimeError,))
    study.enqueue_trial({"x": 1.25, "n": 4})
    t = study.ask()
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    t = study.ask()  # left RUNNING, as a worker without heartbeat
    t.suggest_float("x", -2.0, 2.0)
    study.enqueue_trial({"x": 0.5})  # left WAITING

    single = optuna.create_study(storage=storage, study_name=study_name + "-single", direction="maximize")
    t = single.ask()
    t.suggest_float("lr", 1e-5, 1e-1, log=True)
    t.report(0.5, 0)
    t.report(float("nan"), 1)
    t.report(0.75, 2)
    single.tell(t, state=optuna.trial.TrialState.PRUNED)
    t = single.ask()
    single.tell(t, float("inf"))


def continue_(path, study_name, n):
    storage = storage_of(path)
    study = optuna.load_study(storage=storage, study_name=study_name,
                              sampler=optuna.samplers.RandomSampler(seed=7))
    for _ in range(n):
        t = study.ask()
        x = t.suggest_float("x", -2.0, 2.0)
        study.tell(t, [x * x, -x] if len(study.directions) == 2 else x * x)


def worker(path, study_name, n, tag):
    storage = storage_of(path)
    study = optuna.load_study(storage=storage, study_name=study_name, sampler=optuna.samplers.RandomSampler())
    for _ in range(n):
        t = study.ask()
        t.set_user_attr("worker", tag)
        x = t.suggest_float("x", 0.0, 1.0)
        study.tell(t, x)


def patch_storage(path):
    import optuna.storages
    import optuna.study.study

    journal = storage_of(path)
    real = optuna.storages.get_storage

    def get_storage(storage):
        return journal if storage == path else real(storage)

    optuna.storages.get_storage = get_storage
    optuna.study.study.storages.get_storage = get_storage


def cli(path, args):
    import optuna.cli

    patch_storage(path)
    sys.argv = ["optuna"] + args + ["--storage", path]
    return optuna.cli.main()


def cli_batch(path, batch_file):
    import contextlib
    import io

    import optuna.cli

    patch_storage(path)
    with open(batch_file) as f:
        batches = json.load(f)
    outputs = []
    for args in batches:
        sys.argv = ["optuna"] + args + ["--storage", path]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = optuna.cli.main()
        if code:
            sys.exit(f"optuna {args} exited with {code}")
        outputs.append(buf.getvalue())
    print(json.dumps(outputs))


def main():
    cmd = sys.argv[1]
    if cmd == "reference":
        reference(sys.argv[2])
    elif cmd == "dump":
        print(json.dumps(canonical(storage_of(sys.argv[2]))))
    elif cmd == "write":
        write(sys.argv[2], sys.argv[3])
    elif cmd == "continue":
        continue_(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif cmd == "cli-batch":
        cli_batch(sys.argv[2], sys.argv[3])
    elif cmd == "cli":
        sys.exit(cli(sys.argv[2], sys.argv[3:]))
    else:
        sys.exit("unknown subcommand " + cmd)


if __name__ == "__main__":
    main()
