#!/usr/bin/python3
"""Optuna's side of tests/search/pruner_test.cpp's shared-journal test.

  pruner_interop.py FIXTURE CASE JOURNAL FIRST LAST

Runs events FIRST..LAST-1 of case number CASE of FIXTURE (tests/data/search/pruners.json, see
scripts/make_pruner_fixtures.py) through python3-optuna on the journal file JOURNAL, with a fresh
pruner object: it creates the study when FIRST is 0 and loads it otherwise, so the trials that
compsearch started and reported before are continued here. Prints a JSON object:
{"decisions": [[event index, should_prune()], ...], "rung_attrs": {number: {key: value}}}.
Run with Debian's python (/usr/bin/python3).
"""
import json
import sys
import warnings

import optuna

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from make_pruner_fixtures import build  # noqa: E402

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.ERROR)


def main():
    fixture, case_index, journal, first, last = sys.argv[1:6]
    case = json.load(open(fixture))["cases"][int(case_index)]
    first, last = int(first), int(last)
    storage = optuna.storages.JournalStorage(optuna.storages.JournalFileStorage(journal))
    pruner = build(case["pruner"], case["kwargs"])
    sampler = optuna.samplers.RandomSampler(seed=0)
    if first == 0:
        study = optuna.create_study(storage=storage, study_name=case["study_name"],
                                    direction=case["direction"], pruner=pruner, sampler=sampler)
    else:
        study = optuna.load_study(study_name=case["study_name"], storage=storage, pruner=pruner,
                                  sampler=sampler)
    trials = {}

    def trial_of(number):
        if number not in trials:  # started by another process
            trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
            trials[number] = optuna.trial.Trial(study, trial_id)
        return trials[number]

    decisions = []
    for i in range(first, last):
        e = case["events"][i]
        if e[0] == "a":
            t = study.ask()
            trials[t.number] = t
        elif e[0] == "r":
            t = trial_of(e[1])
            t.report(e[3], e[2])
            decisions.append([i, bool(t.should_prune())])
        else:
            state = optuna.trial.TrialState[e[2]]
            if state == optuna.trial.TrialState.COMPLETE:
                study.tell(e[1], e[3])
            else:
                study.tell(e[1], state=state)
    rungs = {}
    for t in study.get_trials(deepcopy=False):
        attrs = {k: v for k, v in t.system_attrs.items() if k.startswith("completed_rung_")}
        if attrs:
            rungs[str(t.number)] = attrs
    print(json.dumps({"decisions": decisions, "rung_attrs": rungs}))


if __name__ == "__main__":
    main()
