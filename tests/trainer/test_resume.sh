#!/usr/bin/env bash
# A run SIGKILLed after an epoch checkpoint resumes with --resume and ends
# with exactly the weights of an uninterrupted run; the same seed gives the
# same weights run after run; --warm-start continues from a model.
. "$(dirname "$0")/../lib.sh"
out=$TEST_TMP
args=(--data "$FMNIST" --family mlp --hidden 32 --dropout 0.2 --epochs 4 --max-samples 2000 --seed 7 --threads 2)

params_crc() { "$TRAINER" inspect "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["sections"][0]["crc32"])'; }

"$TRAINER" train "${args[@]}" --output "$out/a" --report "$out/a.json" >/dev/null 2>"$out/a.err" || fail "run a"
"$TRAINER" train "${args[@]}" --output "$out/b" --report "$out/b.json" >/dev/null 2>"$out/b.err" || fail "run b"
[ "$(params_crc "$out/a/model.kiln")" = "$(params_crc "$out/b/model.kiln")" ] || fail "same seed, different weights"
cmp <(json "$out/a.json" 'j["metrics"]') <(json "$out/b.json" 'j["metrics"]') || fail "same seed, different metrics"
pass "bit-identical runs"

# killed with SIGKILL right after epoch 2's checkpoint
set +e
KILN_FAULT_KILL_AT_EPOCH=2 "$TRAINER" train "${args[@]}" --output "$out/c" --report "$out/c.json" >"$out/c1.out" 2>/dev/null
rc=$?
set -e
[ $rc -eq 137 ] || fail "expected the run to die of SIGKILL (137), got $rc"
[ ! -f "$out/c/model.kiln" ] || fail "killed run left a final model"
ls "$out/c"/epoch-0002.kiln >/dev/null || fail "no epoch checkpoint to resume from"
"$TRAINER" train "${args[@]}" --output "$out/c" --report "$out/c.json" --resume >"$out/c2.out" 2>"$out/c.err" \
  || fail "resume failed: $(cat "$out/c.err")"
first=$(head -n 1 "$out/c2.out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')
[ "$first" = 3 ] || fail "resume restarted at epoch $first, expected 3"
[ "$(params_crc "$out/a/model.kiln")" = "$(params_crc "$out/c/model.kiln")" ] || fail "resumed weights differ"
pass "resume after SIGKILL gives identical weights"

# resuming with a different configuration is refused, with exit code 2
mkdir -p "$out/d"
cp "$out/c/epoch-0004.kiln" "$out/d/"
set +e
"$TRAINER" train "${args[@]}" --learning-rate 0.01 --output "$out/d" --report "$out/d.json" --resume >/dev/null 2>"$out/d.err"
rc=$?
set -e
[ $rc -eq 2 ] || fail "resume with another config: exit $rc"
grep -q 'different trial configuration' "$out/d.err" || fail "message: $(cat "$out/d.err")"
pass "resume checks the configuration"

# warm start: more epochs on the same architecture start from the model
"$TRAINER" train "${args[@]}" --epochs 1 --warm-start "$out/a/model.kiln" --output "$out/w" \
  --report "$out/w.json" >/dev/null 2>"$out/w.err" || fail "warm start: $(cat "$out/w.err")"
grep -q '"warm start"' "$out/w.err" || fail "warm start not logged"
"$PY" -c "import sys; sys.exit(0 if $(json "$out/w.json" 'j["metrics"]["accuracy"]') > 0.6 else 1)" \
  || fail "warm-started model is not trained"
set +e
"$TRAINER" train "${args[@]}" --hidden 16 --warm-start "$out/a/model.kiln" --output "$out/x" \
  --report "$out/x.json" >/dev/null 2>"$out/x.err"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q 'architecture differs' "$out/x.err" || fail "warm start on another architecture: $rc $(cat "$out/x.err")"
pass "warm start"
