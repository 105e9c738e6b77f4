#!/usr/bin/env bash
# llama.cpp's mixes and any compsearch recipes, measured by real llama.cpp (docs/llm.md,
# "Baselines"): each is quantized by llama-quantize from the F16 GGUF (a mix by its file type, a
# recipe through `compsearch compress --format llama-tensor-types` and --tensor-type-file), and
# llama-perplexity --kl-divergence measures its KL divergence to the F16 model on held-out text.
# Prints a Markdown table: name, file bytes, bits per weight (file bytes * 8 / parameters), mean
# KLD ± its uncertainty, and the KLD ratio to Q4_K_M and to Q3_K_M.
#
# usage: scripts/llama_baselines.sh [--build DIR] [--gguf F16.gguf] [--text TOKENS.u8.npy]
#                                   [--context N] [--chunks N] [RECIPE.json ...]
# Defaults: build/, the test model, its held-out bytes, -c 128 over every chunk.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
gguf=$root/tests/data/llm/tiny_llama.f16.gguf
text=$root/tests/data/llm/fortunes_heldout.u8.npy
context=128
chunks=-1
recipes=()
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --gguf) gguf=$2; shift 2 ;;
    --text) text=$2; shift 2 ;;
    --context) context=$2; shift 2 ;;
    --chunks) chunks=$2; shift 2 ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) recipes+=("$1"); shift ;;
  esac
done
build=$(cd "$build" && pwd)
quantize=$build/llm/llama-quantize
perplexity=$build/llm/llama-perplexity
compsearch=$build/cli/compsearch
for bin in "$quantize" "$perplexity" "$compsearch"; do
  [[ -x $bin ]] || { echo "missing $bin: build it first (cmake --build $build)" >&2; exit 1; }
done
# llama-perplexity loads its CPU backend from its working directory: the folder of libggml-base.
backends=$(dirname "$(ldd "$quantize" | awk '/libggml-base/ {print $3}')")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The NPY's payload after its header, as text: the byte-level vocabulary maps byte i to token i.
/usr/bin/python3 -c "import numpy, sys; numpy.load(sys.argv[1]).astype('uint8').tofile(sys.argv[2])" \
  "$text" "$work/heldout.txt"
params=$("$compsearch" inspect "$gguf" --json | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['total_params'])")
args=(-c "$context" -b "$context" --chunks "$chunks" --kl-divergence-base "$work/base.kld")
(cd "$backends" && "$perplexity" -m "$gguf" -f "$work/heldout.txt" "${args[@]}" > "$work/base.log" 2>&1) ||
  { cat "$work/base.log" >&2; exit 1; }

declare -A kld
measure() {  # name, quantized gguf
  (cd "$backends" && "$perplexity" -m "$2" --kl-divergence "${args[@]}" > "$work/$1.log" 2>&1) ||
    { cat "$work/$1.log" >&2; exit 1; }
  local mean
  # Not anchored: llama.cpp's log lines may carry a time prefix.
  mean=$(sed -n 's/.*Mean *KLD: *\([0-9.]*\) *± *\([0-9.]*\).*/\1 \2/p' "$work/$1.log" | tail -1)
  [[ -n $mean ]] || { echo "no 'Mean KLD' in $work/$1.log:" >&2; tail -5 "$work/$1.log" >&2; exit 1; }
  kld[$1]=$mean
  local bytes
  bytes=$(stat -c %s "$2")
  rows+=("$1 $bytes $mean")
}
rows=()
for mix in Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K; do
  "$quantize" "$gguf" "$work/$mix.gguf" "$mix" > "$work/$mix.quantize.log" 2>&1
  measure "$mix" "$work/$mix.gguf"
done
for r in "${recipes[@]}"; do
  name=$(basename "$r" .json)
  "$compsearch" compress --model "$gguf" --recipe "$r" --format llama-tensor-types \
    --out "$work/$name.types" --json > "$work/$name.json"
  ftype=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['file_type'])" "$work/$name.json")
  "$quantize" --tensor-type-file "$work/$name.types" "$gguf" "$work/$name.gguf" "$ftype" \
    > "$work/$name.quantize.log" 2>&1
  measure "$name" "$work/$name.gguf"
done

q4=${kld[Q4_K_M]%% *}
q3=${kld[Q3_K_M]%% *}
echo "| model | file bytes | bits/weight | KLD to F16 (llama-perplexity) | ÷ Q4_K_M | ÷ Q3_K_M |"
echo "|---|---:|---:|---:|---:|---:|"
for row in "${rows[@]}"; do
  read -r name bytes mean unc <<< "$row"
  awk -v n="$name" -v b="$bytes" -v p="$params" -v m="$mean" -v u="$unc" -v q4="$q4" -v q3="$q3" \
    'BEGIN { printf "| %s | %d | %.3f | %.6f ± %.6f | %.3f | %.3f |\n", n, b, 8 * b / p, m, u, m / q4, m / q3 }'
done
echo
echo "$(basename "$gguf"), $params parameters; held-out: $(basename "$text"), -c $context, chunks $chunks (-1: all)"
