#!/usr/bin/env bash
# Builds everything and runs the whole test suite under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
cd build && ctest --output-on-failure -j "${COMPSEARCH_JOBS:-$(nproc)}"
