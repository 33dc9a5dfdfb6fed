#!/usr/bin/env bash
# kiln-trainer train on a Fashion-MNIST slice: progress lines, the report
# (metrics, params, absolute checkpoint path), inspect and predict.
. "$(dirname "$0")/../lib.sh"
out=$TEST_TMP

"$TRAINER" train --data "file://$FMNIST" --family mlp --hidden 64 --epochs 2 --max-samples 3000 \
  --output "$out/t0" --report "$out/report.json" >"$out/stdout" 2>"$out/stderr" \
  || { cat "$out/stderr"; fail "train exited $?"; }

# two progress lines, epoch 1 and 2, with the documented keys
n=$(grep -c '"epoch"' "$out/stdout")
[ "$n" -eq 2 ] || fail "expected 2 progress lines, got $n"
head -n 1 "$out/stdout" > "$out/line1.json"
[ "$(json "$out/line1.json" 'sorted(k for k in ("epoch","loss","trainAccuracy","valAccuracy","seconds") if k in j)==["epoch","loss","seconds","trainAccuracy","valAccuracy"]')" = True ] \
  || fail "progress line lacks keys: $(cat "$out/line1.json")"
pass "progress lines"

acc=$(json "$out/report.json" 'j["metrics"]["accuracy"]')
"$PY" -c "import sys; sys.exit(0 if 0.65 < $acc <= 1 else 1)" || fail "accuracy $acc too low"
[ "$(json "$out/report.json" 'j["epochs"]')" = 2 ] || fail "epochs"
[ "$(json "$out/report.json" 'j["params"]["family"]')" = mlp ] || fail "params.family"
[ "$(json "$out/report.json" 'j["params"]["hiddenLayers"]')" = "[64]" ] || fail "params.hiddenLayers"
ck=$(json "$out/report.json" 'j["checkpoint"]')
[ "$ck" = "$(cd "$out/t0" && pwd)/model.kiln" ] || fail "checkpoint path $ck"
[ -f "$ck" ] || fail "checkpoint missing"
for k in f1 loss auc; do
  json "$out/report.json" "j['metrics']['$k']" >/dev/null || fail "metrics.$k missing"
done
[ "$(stat -c %s "$out/report.json")" -le 4096 ] || fail "report over 4096 bytes"
pass "report (accuracy $acc)"

"$TRAINER" inspect "$ck" > "$out/inspect.json" || fail "inspect"
[ "$(json "$out/inspect.json" 'j["family"]')" = mlp ] || fail "inspect family"
[ "$(json "$out/inspect.json" 'j["sections"][0]["name"]')" = params ] || fail "inspect sections"
pass "inspect"

fmnist_slice "$out/slice" 50
"$TRAINER" predict --model "$ck" --input "$out/slice/images.idx" --probabilities > "$out/pred.jsonl" \
  || fail "predict"
[ "$(wc -l < "$out/pred.jsonl")" -eq 50 ] || fail "expected 50 predictions"
"$PY" - "$out/pred.jsonl" "$out/slice/labels.idx" <<'PYEOF' || fail "predictions do not match the labels well enough"
import json, sys
preds = [json.loads(l) for l in open(sys.argv[1])]
labels = open(sys.argv[2], "rb").read()[8:]
assert all(abs(sum(p["probabilities"]) - 1) < 1e-3 for p in preds)
right = sum(p["prediction"] == str(l) for p, l in zip(preds, labels))
assert right >= 30, right
PYEOF
pass "predict"

# the same run again refuses to overwrite a finished model
if "$TRAINER" train --data "$FMNIST" --epochs 1 --max-samples 500 --family logistic \
     --output "$out/t0" --report "$out/r2.json" >/dev/null 2>"$out/err2"; then
  fail "overwrote a finished model"
fi
grep -q 'already holds a finished model' "$out/err2" || fail "no clear message: $(cat "$out/err2")"
pass "finished models are not overwritten"

# libcurl is loaded only for an http(s) data source: a file:// run never
# maps it, an http:// run loads it and trains on what it fetched.
LD_DEBUG=files "$TRAINER" train --data "file://$FMNIST" --family logistic --epochs 1 --max-samples 300 \
  --output "$out/t1" --report "$out/r1.json" >/dev/null 2>"$out/ld1" || fail "file:// train: $(tail -3 "$out/ld1")"
grep -q 'file=libopenblas' "$out/ld1" || fail "LD_DEBUG=files showed no library loads"
grep -q 'file=libcurl' "$out/ld1" && fail "a file:// run loaded libcurl"
"$PY" - "$KILN_SOURCE_DIR/manifests/samples/data" >"$out/port" 2>/dev/null <<'PYEOF' &
import functools, http.server, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
s = http.server.HTTPServer(("127.0.0.1", 0), h)
print(s.server_address[1], flush=True)
s.serve_forever()
PYEOF
srv=$!
trap 'kill $srv 2>/dev/null; cleanup_tmp' EXIT
for _ in $(seq 50); do [ -s "$out/port" ] && break; sleep 0.1; done
[ -s "$out/port" ] || fail "the data server did not start"
LD_DEBUG=files "$TRAINER" train --data "http://127.0.0.1:$(cat "$out/port")/wine.csv" --label cultivar \
  --epochs 2 --output "$out/t2" --report "$out/r2h.json" >/dev/null 2>"$out/ld2" ||
  fail "http:// train: $(grep -v 'file=\|^ *[0-9]*:	*$\|calling\|transferring' "$out/ld2" | tail -3)"
grep -q 'file=libcurl.so.4 .*dynamically loaded' "$out/ld2" || fail "an http:// run did not load libcurl itself"
[ "$(json "$out/r2h.json" 'j["trainMetrics"]["accuracy"] > 0.4')" = True ] || fail "http:// report: $(cat "$out/r2h.json")"
pass "libcurl is loaded for http:// data only"
