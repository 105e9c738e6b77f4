#!/bin/sh
# Saves Optuna 3.1's peer runs for bench/bench_samplers.cpp under bench/optuna_results/ (or $1),
# so that `bench_samplers --optuna bench/optuna_results` compares against them without re-running
# Optuna. Every line of every file records the Optuna version and the UTC date of its run. Times
# are process CPU times.
#
# Optuna 3.1's multi-objective TPE is slow (measured here: ~0.7 s per trial averaged over 200
# trials on ZDT1; 4.6-5.0 s per trial at study size 1,000 on ZDT1/ZDT2/mixed30 and 37 s on
# DTLZ2), so its runs are REDUCED, as labelled in the bench output (n = runs):
#   nsga2_1000.jsonl  NSGA-II, 4 problems x seeds 0-4 x 1,000 trials (overhead, HV@200, HV@1000)
#   tpe_prefill.jsonl TPE, 4 problems, seed 0: 995 random trials, then 5 timed TPE trials
#                     (the overhead per trial at study size 1,000)
#   tpe_200.jsonl     TPE x 200 trials (HV@200): seeds 0-2 on zdt1, zdt2, mixed30; seed 0 on dtlz2
#   nsga2_1000_zdt2_20seeds.jsonl  NSGA-II on ZDT2, seeds 0-19 (HV@1000 median of 20: ours and
#                     Optuna's 5-seed medians differ by less than their seed-to-seed spread)
#   (no Optuna TPE run to 1,000 trials: one seed of one problem would take 1-5 hours here)
set -e
here=$(dirname "$0")
out=${1:-$here/../bench/optuna_results}
py="/usr/bin/python3 $here/bench_samplers_optuna.py"
mkdir -p "$out"
$py --sampler NSGAIISampler --trials 1000 --seeds 0,1,2,3,4 > "$out/nsga2_1000.jsonl"
$py --sampler NSGAIISampler --trials 1000 --problems zdt2 --seeds $(seq -s, 0 19) \
  > "$out/nsga2_1000_zdt2_20seeds.jsonl"
$py --sampler TPESampler --prefill 995 --trials 5 --seeds 0 > "$out/tpe_prefill.jsonl"
$py --sampler TPESampler --trials 200 --seeds 0,1,2 --problems zdt1,zdt2,mixed30 \
  > "$out/tpe_200.jsonl"
$py --sampler TPESampler --trials 200 --seeds 0 --problems dtlz2 >> "$out/tpe_200.jsonl"
