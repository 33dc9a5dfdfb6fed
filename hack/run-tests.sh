#!/usr/bin/env bash
# Runs the whole suite through ctest: unit and fuzz tests from the sanitizer
# build, then integration and client tests from the release build. Prints
# one closing line with the totals and fails if either run failed.
set -uo pipefail
asan=${1:-build-asan}
rel=${2:-build}
jobs=${CTEST_PARALLEL_LEVEL:-2}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

total=0
failed=0
status=0
run() { # DIR LABEL-ARGS...
  local dir=$1; shift
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line t f
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  t=$(sed -nE 's/.* out of ([0-9]+).*/\1/p' <<<"$line")
  f=$(sed -nE 's/.*, ([0-9]+) tests failed.*/\1/p' <<<"$line")
  total=$((total + ${t:-0}))
  failed=$((failed + ${f:-0}))
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then status=1; fi
}

run "$asan" -L 'unit|fuzz'
run "$rel" -LE 'unit|fuzz'
echo
echo "ctest: $((total - failed)) passed, ${failed} failed"
if [ "$failed" -ne 0 ] || [ "$total" -eq 0 ]; then status=1; fi
exit $status
