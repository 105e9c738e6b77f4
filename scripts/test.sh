#!/usr/bin/env bash
# Builds everything and runs the whole test suite under CTest, then the fuzzing smoke: the
# journal's two libFuzzer harnesses for 30 s each (scripts/fuzz.sh, clang + ASan + UBSan; they
# need only the study library, so their clang build fits CI's budget; every harness's 10-minute
# run is `scripts/fuzz.sh 600`, docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
(cd build && ctest --output-on-failure -j "${COMPSEARCH_JOBS:-$(nproc)}")
scripts/fuzz.sh 30 journal_line journal
