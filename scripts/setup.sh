#!/usr/bin/env bash
# Installs everything compsearch needs on Debian 12, from Debian's archive and npm only.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git clang-format
  libeigen3-dev libdnnl-dev libtbb-dev nlohmann-json3-dev libboost-program-options-dev doctest-dev
  libonnx-dev libprotobuf-dev protobuf-compiler zlib1g-dev
  libhiredis-dev libsimdjson-dev redis-server clang libfuzzer-14-dev libomp-14-dev fortunes
  dataset-fashion-mnist
  python3 python3-numpy python3-optuna python3-torch python3-torchvision python3-onnx python3-redis chromium
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the reference ONNX Runtime. A machine may already carry a Node.js that
# bundles npm (NodeSource's nodejs conflicts with Debian's npm package), so ask for Debian's
# packages only when the commands are absent.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime (reference runtime for tests and benchmarks). --ignore-scripts: the package ships
# its Linux x64 runtime; its install script only fetches optional GPU parts from elsewhere.
if [ ! -d scripts/node/node_modules/onnxruntime-node ] || [ ! -d scripts/node/node_modules/puppeteer-core ]; then
  echo "setup: installing onnxruntime-node into scripts/node"
  (cd scripts/node && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
# ggml as llama.cpp ships it (llm/: llama.cpp's tensor types, quantization and GGUF writer):
# the prebuilt libggml-base of @node-llama-cpp/linux-x64 and, from node-llama-cpp's bundle of the
# llama.cpp sources it was built from, the headers (and the tree, for llama-quantize). Versions are
# pinned exactly in scripts/llama/package.json; --ignore-scripts: nothing is built or downloaded
# beyond the two packages.
llama_dir=scripts/llama/node_modules
if [ ! -f $llama_dir/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so ]; then
  echo "setup: installing node-llama-cpp (ggml) into scripts/llama"
  (cd scripts/llama && npm ci --ignore-scripts --omit=optional --no-audit --no-fund --loglevel=error)
fi
if [ ! -f $llama_dir/.llama.cpp/ggml/include/gguf.h ]; then
  echo "setup: extracting the llama.cpp sources into $llama_dir/.llama.cpp"
  tmp_git=$(mktemp -d)
  git init -q --bare "$tmp_git"
  git -C "$tmp_git" fetch -q "$PWD/$llama_dir/node-llama-cpp/llama/gitRelease.bundle" HEAD
  rm -rf $llama_dir/.llama.cpp && mkdir -p $llama_dir/.llama.cpp
  git -C "$tmp_git" archive FETCH_HEAD | tar -x -C $llama_dir/.llama.cpp
  rm -rf "$tmp_git"
fi
echo "setup: ok"
