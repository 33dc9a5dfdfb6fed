#!/usr/bin/env bash
# Runs every benchmark in hack/bench/ against the build in $1 (default build/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
echo "== training (kiln-trainer vs PyTorch / scikit-learn)"
/usr/bin/python3 "$here/train_bench.py" "$build"
echo
echo "== tuning strategies (adaptive, ladder, random) on kubelite"
/usr/bin/python3 "$here/strategy_bench.py" "$build"
echo
echo "== controller: 1,000 one-trial TrainingJobs on kubelite (writes per trial, RSS, apply-to-first-pod)"
/usr/bin/python3 "$here/controller_bench.py" "$build" --jobs "${KILN_BENCH_JOBS:-1000}"
for b in "$here"/*_bench.sh; do
  [ -e "$b" ] || continue
  echo
  echo "== $(basename "$b" .sh)"
  bash "$b" "$build"
done
