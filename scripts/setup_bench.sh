#!/usr/bin/env bash
# Benchmark-only setup (not run by CI): makes the PyTorch peer of bench/bench_training fair.
# Debian's python3-torch calls the BLAS behind libblas.so.3, which is the generic reference
# implementation unless an optimized one is installed; libopenblas0-pthread registers OpenBLAS as
# the libblas.so.3 alternative with a higher priority, so torch's Gemm (and the im2col GEMMs of
# its CPU convolution) run on OpenBLAS. scripts/train_reference.py prints which BLAS torch loaded.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "install ok installed"; then
  echo "setup_bench: installing libopenblas0-pthread"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libopenblas0-pthread
fi
echo "setup_bench: libblas.so.3 -> $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
