#!/usr/bin/env bash
# The default demo: the layer table of the bundled Fashion-MNIST CNN, then its accuracy on the
# 10,000 test images. (Replaced by the end-to-end search demo once the search runner lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/cli/compsearch
model=models/fmnist_cnn.onnx
echo "== compsearch inspect $model"
$bin inspect "$model"
echo "== compsearch evaluate --model $model --data fashion-mnist"
$bin evaluate --model "$model" --data fashion-mnist
