#!/usr/bin/env bash
# The default demo on the bundled Fashion-MNIST CNN: its layer table and accuracy, then one
# compression recipe (w4 weights, 8-bit activations, conv1 at 8 bits, fc1 50% pruned) evaluated
# on the 10,000 test images, costed on a Cortex-M7 part, and exported as ONNX Q/DQ under
# runs/demo/. (Replaced by the end-to-end search demo once the search runner lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${COMPSEARCH_BIN:-build/cli/compsearch}
model=models/fmnist_cnn.onnx
recipe=experiments/configs/recipes/fmnist_cnn_w4a8.json
mkdir -p runs/demo
run() {
  echo "== compsearch $*"
  "$bin" "$@"
  echo
}
run inspect "$model"
run evaluate --model "$model" --data fashion-mnist
run evaluate --model "$model" --recipe "$recipe" --data fashion-mnist
run estimate --model "$model" --recipe "$recipe" --target mcu:stm32f746
run compress --model "$model" --recipe "$recipe" --format onnx-qdq --out runs/demo/fmnist_cnn_w4a8.qdq.onnx
run evaluate --model runs/demo/fmnist_cnn_w4a8.qdq.onnx --data fashion-mnist
