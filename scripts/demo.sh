#!/usr/bin/env bash
# The default demo: the compression search of experiments/configs/default.json end to end on the
# bundled Fashion-MNIST CNN (accuracy vs STM32F746 latency, costed on gpu:t4, npu:ethos-u55-256 and
# mcu:stm32f746, within the MCU's SRAM and flash), then the best recipe under a latency budget,
# the HTML report, the front as CSV and the exported best recipe (recipe file and ONNX Q/DQ).
# Everything goes under runs/demo/; re-running resumes the same study (nothing is re-run).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${COMPSEARCH_BIN:-build/cli/compsearch}
out=runs/demo
storage=$out/study.journal
study=fmnist-cnn
trials=${COMPSEARCH_DEMO_TRIALS:-200}
mkdir -p "$out"
run() {
  echo "== compsearch $*"
  "$bin" "$@"
  echo
}
run search --config experiments/configs/default.json --storage "$storage" --trials "$trials" --jobs 2
run best --storage "$storage" --study-name "$study" --budget "latency_ms@mcu:stm32f746<=8" --maximize accuracy \
  | tee "$out/best.json"
best=$(sed -n 's/^ *"number": *\([0-9]*\).*/\1/p' "$out/best.json" | head -1)
run report --storage "$storage" --study-name "$study" --out "$out/report.html" --csv "$out/front.csv"
run export --storage "$storage" --study-name "$study" --trial "$best" --format recipe --out "$out/best.recipe.json"
run export --storage "$storage" --study-name "$study" --trial "$best" --format onnx-qdq --out "$out/best.qdq.onnx"
run evaluate --model "$out/best.qdq.onnx" --data fashion-mnist
echo "demo: report        $out/report.html"
echo "demo: front (CSV)   $out/front.csv"
echo "demo: best recipe   $out/best.recipe.json (trial $best; ONNX Q/DQ: $out/best.qdq.onnx)"
