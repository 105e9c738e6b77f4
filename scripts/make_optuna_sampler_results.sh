#!/bin/sh
# Saves Optuna 3.1's peer runs for bench/bench_samplers.cpp under bench/optuna_results/ (or $1),
# so that `bench_samplers --optuna bench/optuna_results` compares against them without re-running
# Optuna (its multi-objective TPE takes ~0.6 s per trial at study size 1,000, so 1,000-trial runs
# for 4 problems x 5 seeds would take hours). Every line of every file records the Optuna version
# and the UTC date of its run. Run with the machine otherwise quiet; times are process CPU times.
#
#   nsga2_1000.jsonl  NSGA-II, 4 problems x seeds 0-4 x 1,000 trials (overhead and HV@200/1000)
#   tpe_prefill.jsonl TPE, 4 problems, seed 0: 995 random trials, then 5 timed TPE trials
#                     (the overhead per trial at study size 1,000)
#   tpe_200.jsonl     TPE, 4 problems x seeds 0-4 x 200 trials (HV@200)
#   tpe_1000.jsonl    TPE, 4 problems x seed 0 only x 1,000 trials (HV@1000, ONE seed: reduced)
set -e
here=$(dirname "$0")
out=${1:-$here/../bench/optuna_results}
py="/usr/bin/python3 $here/bench_samplers_optuna.py"
mkdir -p "$out"
$py --sampler NSGAIISampler --trials 1000 --seeds 0,1,2,3,4 > "$out/nsga2_1000.jsonl"
$py --sampler TPESampler --prefill 995 --trials 5 --seeds 0 > "$out/tpe_prefill.jsonl"
$py --sampler TPESampler --trials 200 --seeds 0,1,2,3,4 > "$out/tpe_200.jsonl"
$py --sampler TPESampler --trials 1000 --seeds 0 > "$out/tpe_1000.jsonl"
