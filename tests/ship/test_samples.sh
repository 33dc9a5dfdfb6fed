#!/usr/bin/env bash
# The sample TrainingJobs validate against the CRD's openAPIV3Schema (with
# hack/crd-validate.py), the validator rejects broken variants of them with
# the right message, and the CSV samples' data trains with kiln-trainer.
. "$(dirname "$0")/common.sh"
S=$KILN_SOURCE_DIR
V=$S/hack/crd-validate.py
samples=()
for f in "$S"/manifests/samples/*.yaml; do [ "${f##*/}" = kustomization.yaml ] || samples+=("$f"); done

out=$("$PY" "$V" "$CRD" "${samples[@]}") || fail "samples do not validate:
$out"
n=$(grep -c ': valid$' <<<"$out")
[ "$n" = 4 ] || fail "expected 4 valid samples, got $n: $out"
pass "4 samples validate against the CRD schema"

# Each mutation breaks one valid sample in one way; the validator must
# reject it (exit 1) with the expected message, and must not reject the
# untouched sample (checked above).
"$PY" - "$V" "$CRD" "$S/manifests/samples" "$SHIP_TMP" <<'PYEOF'
import copy, subprocess, sys, yaml
v, crd, sd, tmp = sys.argv[1:5]
base = {n: yaml.safe_load(open(f"{sd}/{n}.yaml")) for n in ("fashion-mnist", "tabular-csv", "kmeans-elbow")}
def put(o, path, val):
    keys = path.split(".")
    for k in keys[:-1]:
        o = o.setdefault(k, {})
    if val is DEL: o.pop(keys[-1])
    else: o[keys[-1]] = val
DEL = object()
cases = [
    ("fashion-mnist", "spec.data.uri", "ftp://host/x", "does not match"),
    ("fashion-mnist", "spec.data.uri", DEL, "spec.data.uri: required"),
    ("fashion-mnist", "spec.data", DEL, "spec.data: required"),
    ("fashion-mnist", "spec.data.format", "parquet", "is not one of"),
    ("fashion-mnist", "spec.model.mlp.hiddenLayers", [16, 0], "hiddenLayers[1]: 0 is below the minimum 1"),
    ("fashion-mnist", "spec.model.mlp.hiddenLayers", "16", "must be of type array"),
    ("fashion-mnist", "spec.training.learningRate", 0, "(exclusive)"),
    ("fashion-mnist", "spec.training.epochs", 2.5, "must be of type integer"),
    ("fashion-mnist", "spec.training.epochs", True, "must be of type integer"),
    ("fashion-mnist", "spec.tuning.maxTrials", 1001, "above the maximum 1000"),
    ("fashion-mnist", "spec.model.mlp.hiddenLayer", [16], "unknown field"),
    ("fashion-mnist", "spec.objective.goal", 1.5, "within [0, 1]"),
    ("fashion-mnist", "spec.tuning.parallelism", 9, "cannot exceed tuning.maxTrials"),
    ("fashion-mnist", "apiVersion", "kiln.dev/v1", "is not served"),
    ("tabular-csv", "spec.data.label", 1.5, "integer or a string"),
    ("tabular-csv", "spec.notify", {"email": {"smtpUrl": "smtp://m:25", "from": "k@x", "to": []}}, "fewer than 1 items"),
    ("tabular-csv", "spec.notify", {"webhook": {"url": "hooks.example/x"}}, "does not match '^https?://'"),
    ("kmeans-elbow", "spec.model.kmeans.clusters", -1, "below the minimum 0"),
    ("kmeans-elbow", "spec.objective.goal", -2, "within [-1, 1] for silhouette"),
]
bad = 0
for i, (name, path, val, want) in enumerate(cases):
    doc = copy.deepcopy(base[name])
    put(doc, path, val)
    f = f"{tmp}/broken{i}.yaml"
    yaml.safe_dump(doc, open(f, "w"))
    r = subprocess.run(["/usr/bin/python3", v, crd, f], capture_output=True, text=True)
    if r.returncode != 1 or want not in r.stdout:
        print(f"FAIL: {name} with {path}={val!r}: exit {r.returncode}, want 1 and {want!r}:\n{r.stdout}{r.stderr}", file=sys.stderr)
        bad += 1
# Extra fields are fine where the schema preserves them.
doc = copy.deepcopy(base["tabular-csv"])
put(doc, "spec.trainer", {"resources": {"limits": {"cpu": "2"}}})
yaml.safe_dump(doc, open(f"{tmp}/ok.yaml", "w"))
r = subprocess.run(["/usr/bin/python3", v, crd, f"{tmp}/ok.yaml"], capture_output=True, text=True)
if r.returncode != 0:
    print(f"FAIL: preserved fields rejected: {r.stdout}{r.stderr}", file=sys.stderr); bad += 1
if bad:
    sys.exit(1)
print(f"ok   {len(cases)} broken samples rejected with the expected message")
PYEOF

# The CSV samples' data is real and trainable: train each once with its own
# spec, the file:// URI pointed at the checked-in copy.
TRAINER=$KILN_BUILD_DIR/trainer/kiln-trainer
[ -x "$TRAINER" ] || fail "$TRAINER not built"
for s in tabular-csv:wine.csv kmeans-elbow:iris-unlabelled.csv; do
  name=${s%%:*} data=$S/manifests/samples/data/${s#*:}
  spec=$("$PY" -c 'import json,sys,yaml; s=yaml.safe_load(open(sys.argv[1]))["spec"]
u=s["data"]["uri"]; assert u.endswith("/" + sys.argv[2].rsplit("/",1)[1]), u
s["data"]["uri"]="file://"+sys.argv[2]; print(json.dumps(s))' "$S/manifests/samples/$name.yaml" "$data") ||
    fail "$name: its uri does not name ${s#*:}"
  OPENBLAS_NUM_THREADS=1 "$TRAINER" train --config-json "$spec" --output "$SHIP_TMP/$name" \
    --report "$SHIP_TMP/$name.json" >/dev/null 2>"$SHIP_TMP/$name.log" || fail "$name: training failed: $(tail -3 "$SHIP_TMP/$name.log")"
  got=$("$PY" -c 'import json,sys,yaml; r=json.load(open(sys.argv[1])); s=yaml.safe_load(open(sys.argv[2]))["spec"]
m=s["objective"]["metric"]; print(m, r["metrics"][m], r["params"]["family"])' "$SHIP_TMP/$name.json" "$S/manifests/samples/$name.yaml")
  read -r metric value family <<<"$got"
  want=$("$PY" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["spec"]["model"]["family"])' "$S/manifests/samples/$name.yaml")
  [ "$family" = "$want" ] || fail "$name trained a $family model, want $want"
  "$PY" -c 'import sys; v=float(sys.argv[1]); sys.exit(0 if 0.3 <= v <= 1 else 1)' "$value" ||
    fail "$name: $metric $value is not a plausible score"
  pass "$name trains on ${s#*:}: $metric $value"
done
