#!/usr/bin/env bash
# Every unit test N times in a row under load, to find tests that depend on
# timing or machine speed (they must not). Two busy loops keep both CPUs
# occupied while ctest runs the unit tests two at a time.
#
#   scripts/test-repeat.sh [BUILD_DIR] [N] [CTEST_REGEX]
set -euo pipefail
build=${1:-build}
n=${2:-50}
regex=${3:-}
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
for _ in 1 2; do
    (while :; do :; done) &
    pids+=($!)
done
args=(--test-dir "$build" -L unit --repeat "until-fail:$n" -j2 --output-on-failure)
[ -z "$regex" ] || args+=(-R "$regex")
echo "test-repeat: every unit test $n times, -j2, with ${#pids[@]} busy loops (pids ${pids[*]})"
ctest "${args[@]}"
