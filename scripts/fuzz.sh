#!/usr/bin/env bash
# Fuzzes every parser with libFuzzer (issue 12, item 6): builds the harnesses of fuzz/ with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer into build-fuzz (the main build never needs
# clang), makes each a seed corpus from the repository's fixtures (tests/data, models/,
# experiments/configs, hardware_models/profiles, a small journal from make_big_journal.py) and
# runs each harness for SECONDS (30 is the CI smoke; the issue's measured run is 600).
#   scripts/fuzz.sh [SECONDS] [HARNESS...]      harnesses: journal_line journal search_space
#                                               recipe config profile onnx idx npy safetensors
# A crash, sanitizer report, hang (> 10 s on one input) or out-of-memory (> 2 GB) stops that
# harness and leaves its input in build-fuzz/findings/<harness>/; the script prints one summary
# line per harness (runs, coverage, time, finding) and exits non-zero when any harness found one.
# Keep a finding's input in tests/data/fuzz_regressions/<harness>/ once fixed (a test replays it).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
all=(journal_line journal search_space recipe config profile onnx idx npy safetensors)
if [ $# -gt 0 ]; then harnesses=("$@"); else harnesses=("${all[@]}"); fi
dir=build-fuzz
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
# COMPSEARCH_FUZZ_SKIP_BUILD=1 runs the harnesses already built (e.g. several runs side by side).
if [ -z "${COMPSEARCH_FUZZ_SKIP_BUILD:-}" ]; then
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DCOMPSEARCH_BUILD_TESTS=OFF -DCOMPSEARCH_BUILD_BENCH=OFF \
    -DCOMPSEARCH_FUZZ=ON -DCOMPSEARCH_SANITIZE=fuzzer-no-link,address,undefined "${launcher[@]}" \
    >/dev/null
  cmake --build "$dir" -j "${COMPSEARCH_JOBS:-$(nproc)}" --target "${targets[@]}"
fi

# Seed corpora (rebuilt each run; what libFuzzer adds goes to corpus/<h>/found and is kept).
seed() {  # seed HARNESS FILE...
  local out="$dir/corpus/$1/seed"
  shift
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$out/$(echo "$f" | tr '/' '_')"; done
  return 0
}
small() { git ls-files -- "$@" | while read -r f; do [ "$(stat -c %s "$f")" -le 65536 ] && echo "$f"; done; }
for h in "${harnesses[@]}"; do rm -rf "$dir/corpus/$h/seed"; mkdir -p "$dir/corpus/$h/seed" "$dir/corpus/$h/found" "$dir/findings/$h"; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 scripts/make_big_journal.py "$tmp/small.journal" --trials 6
for h in "${harnesses[@]}"; do
  out="$dir/corpus/$h/seed"
  case "$h" in
    journal_line)
      n=0
      while IFS= read -r line; do printf '%s' "$line" >"$out/line$n"; n=$((n + 1)); done <"$tmp/small.journal"
      printf '%s' '{"op_code": 7, "worker_id": "w", "trial_id": 0, "step": 1, "intermediate_value": NaN}' >"$out/nan"
      printf '%s' '{"op_code":4,"worker_id":"w","study_id":0,"datetime_start":null,"state":4,"values":null,"value":1,"distributions":{"x":"{\"name\": \"IntDistribution\", \"attributes\": {\"log\": false, \"step\": 1, \"low\": 0, \"high\": 3}}"},"params":{"x":2},"user_attrs":{"a":[1,{"b":null}]},"system_attrs":{},"intermediate_values":{"0":0.5}}' >"$out/template"
      ;;
    journal)
      cp "$tmp/small.journal" "$out/small.journal"
      seed "$h" $(small '*.journal' '*.jsonl')
      ;;
    search_space)
      printf '%s' '{"x": {"name": "FloatDistribution", "attributes": {"log": false, "step": null, "low": 0.0, "high": 1.0}}, "n": {"name": "IntDistribution", "attributes": {"log": true, "step": 1, "low": 1, "high": 64}}, "c": {"name": "CategoricalDistribution", "attributes": {"choices": ["a", 1, 2.5, null, true]}}}' >"$out/mixed"
      printf '%s' '{"lr": {"name": "FloatDistribution", "attributes": {"log": true, "step": null, "low": 1e-05, "high": 0.1}}, "r": {"name": "FloatDistribution", "attributes": {"log": false, "step": 0.25, "low": 0, "high": 0.75}}}' >"$out/float"
      ;;
    recipe) seed "$h" $(git ls-files '*.json' | xargs grep -l 'compsearch.recipe/1' || true) ;;
    config) seed "$h" $(git ls-files 'experiments/configs/*.json' | xargs grep -L 'compsearch.recipe/1' || true) ;;
    profile) seed "$h" $(git ls-files 'hardware_models/profiles/*.json') ;;
    onnx) seed "$h" $(small '*.onnx') models/fmnist_cnn.onnx models/fmnist_mlp.onnx ;;
    npy) seed "$h" $(small '*.npy' | head -n 40) ;;
    idx)
      /usr/bin/python3 - "$out" <<'PY'
import gzip, struct, sys
out = sys.argv[1]
images = struct.pack(">IIII", 0x803, 2, 3, 3) + bytes(range(18))
labels = struct.pack(">II", 0x801, 4) + bytes([0, 9, 3, 1])
for name, data in (("images", images), ("labels", labels)):
    open(f"{out}/{name}", "wb").write(b"\0" + data)          # first byte even: plain
    open(f"{out}/{name}_gz", "wb").write(b"\1" + gzip.compress(data))  # odd: gzip
PY
      ;;
    safetensors)
      /usr/bin/python3 - "$out" <<'PY'
import json, struct, sys
out = sys.argv[1]
header = {"__metadata__": {"format": "compsearch"}, "conv1.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
h = json.dumps(header).encode()
open(f"{out}/tiny", "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<4f", 1, 2, 3, 4))
PY
      seed "$h" $(small '*.safetensors')
      ;;
  esac
done

export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
summary=()
for h in "${harnesses[@]}"; do
  log="$dir/findings/$h/fuzz.log"
  start=$(date +%s)
  set +e
  "$dir/fuzz/fuzz_$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$dir/findings/$h/" "$dir/corpus/$h/found" \
    "$dir/corpus/$h/seed" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  found=$(ls "$dir/findings/$h" | grep -E '^(crash|timeout|oom|leak)-' || true)
  line="fuzz_$h: $(($(date +%s) - start)) s, $runs runs, cov $cov, exit $rc"
  if [ -n "$found" ]; then line="$line, FINDING: $(echo $found)"; status=1; fi
  summary+=("$line")
  echo "$line"
done
echo "--- summary (logs in $dir/findings/<harness>/fuzz.log)"
printf '%s\n' "${summary[@]}"
exit $status
