#!/usr/bin/env bash
# Runs the whole suite through ctest: unit and fuzz tests from the sanitizer
# build, then integration and client tests from the release build. Prints
# one closing line with the totals and fails if either run failed.
set -uo pipefail
asan=${1:-build-asan}
rel=${2:-build}
jobs=${CTEST_PARALLEL_LEVEL:-2}

run() { # dir label-args...
  local dir=$1; shift
  local log
  log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line total failed
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  total=$(sed -nE 's/.* out of ([0-9]+).*/\1/p' <<<"$line")
  failed=$(sed -nE 's/.*, ([0-9]+) tests failed.*/\1/p' <<<"$line")
  rm -f "$log"
  if grep -q 'No tests were found' <<<"$line"; then total=0; failed=0; fi
  echo "${total:-0} ${failed:-0} $rc"
}

read -r t1 f1 rc1 < <(run "$asan" -L 'unit|fuzz' | tee /dev/stderr | tail -n 1)
read -r t2 f2 rc2 < <(run "$rel" -LE 'unit|fuzz' | tee /dev/stderr | tail -n 1)
passed=$(( t1 - f1 + t2 - f2 ))
failed=$(( f1 + f2 ))
echo
echo "ctest: ${passed} passed, ${failed} failed"
if [ "$rc1" -ne 0 ] || [ "$rc2" -ne 0 ] || [ "$failed" -ne 0 ] || [ $(( t1 + t2 )) -eq 0 ]; then
  exit 1
fi
