#!/usr/bin/env bash
# Builds the whole test suite with sanitizers and runs it under CTest.
#   scripts/sanitize.sh [asan|tsan]     (default asan = AddressSanitizer + UndefinedBehaviorSanitizer)
# Build folders: build-asan, build-tsan. Any finding stops the test that hit it (halt on error),
# so "100% tests passed" means no finding. Extra ctest arguments go after the mode, e.g.
#   scripts/sanitize.sh asan -R 'search:'
# TSan builds with clang and LLVM's OpenMP runtime, whose Archer tool (libarcher.so, Debian
# libomp-14-dev) tells TSan about OpenMP's barriers and tasks; with GCC's libgomp, which TSan cannot
# see into, every parallel loop would be reported as a race.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-asan}
shift || true
case "$mode" in
  asan) flags="address,undefined" ;;
  tsan) flags="thread" ;;
  *) echo "sanitize.sh: mode must be asan or tsan, got '$mode'" >&2; exit 2 ;;
esac
dir=build-$mode
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
compiler=()
if [ "$mode" = tsan ]; then
  archer=/usr/lib/llvm-14/lib/libarcher.so
  [ -f "$archer" ] || { echo "sanitize.sh: $archer is missing (Debian libomp-14-dev)" >&2; exit 1; }
  compiler=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
  export OMP_TOOL_LIBRARIES=$archer
fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOMPSEARCH_BUILD_BENCH=OFF \
  -DCOMPSEARCH_SANITIZE="$flags" "${compiler[@]}" "${launcher[@]}" >/dev/null
cmake --build "$dir" -j "${COMPSEARCH_JOBS:-$(nproc)}"
# Leak checking is off: OpenMP and TBB keep thread pools alive until exit, which LeakSanitizer
# reports as leaks; every other ASan check and every UBSan check halts the test.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# ignore_noninstrumented_modules: accesses inside the prebuilt libraries (oneDNN, TBB, protobuf)
# are not checked; compsearch's own code and everything it inlines is.
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1
cd "$dir" && ctest --output-on-failure -j "${COMPSEARCH_JOBS:-$(nproc)}" "$@"
