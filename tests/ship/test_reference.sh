#!/usr/bin/env bash
# docs/reference.md is what hack/gen-reference.py makes from the CRD today:
# regenerate it and fail on any difference. Also checks, independently of
# the generator, that every spec and status field of the CRD has a row, and
# that the check itself can fail (a CRD with a new field gives a different
# reference; a field with no description is refused).
. "$(dirname "$0")/common.sh"
S=$KILN_SOURCE_DIR
G=$S/hack/gen-reference.py

"$PY" "$G" "$CRD" "$SHIP_TMP/reference.md" || fail "hack/gen-reference.py failed"
diff -u "$S/docs/reference.md" "$SHIP_TMP/reference.md" >"$SHIP_TMP/diff" ||
  fail "docs/reference.md is stale; run hack/gen-reference.py:
$(head -30 "$SHIP_TMP/diff")"
pass "docs/reference.md matches the CRD"

"$PY" - "$CRD" "$S/docs/reference.md" <<'PYEOF'
import re, sys, yaml
crd = yaml.safe_load(open(sys.argv[1]))
root = next(v for v in crd["spec"]["versions"] if v.get("storage"))["schema"]["openAPIV3Schema"]
doc = open(sys.argv[2]).read()
rows = dict(re.findall(r"^\| `([^`]+)`[^|]*\| ([^|]*)\|", doc, re.M))
paths = []
def walk(s, p):
    paths.append((p, s))
    for k, sub in s.get("properties", {}).items():
        walk(sub, f"{p}.{k}")
    it = s.get("items")
    if isinstance(it, dict):
        for k, sub in it.get("properties", {}).items():
            walk(sub, f"{p}[].{k}")
walk(root["properties"]["spec"], "spec")
walk(root["properties"]["status"], "status")
missing = [p for p, _ in paths if p not in rows]
if missing:
    sys.exit(f"FAIL: fields missing from docs/reference.md: {missing}")
extra = sorted(set(rows) - {p for p, _ in paths})
if extra:
    sys.exit(f"FAIL: docs/reference.md documents fields the CRD lacks: {extra}")
line = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)`.*$", doc, re.M)}
for p, s in paths:
    if "default" in s and f"`{__import__('json').dumps(s['default'], separators=(', ', ': '))}`" not in line[p]:
        sys.exit(f"FAIL: {p}: default {s['default']!r} not shown")
    for e in s.get("enum", []):
        if f"`{e}`" not in line[p]:
            sys.exit(f"FAIL: {p}: enum value {e} not shown")
print(f"ok   all {len(paths)} spec and status fields documented with their defaults and enums")
PYEOF

# A new described field changes the reference; an undescribed one is refused.
"$PY" - "$CRD" "$SHIP_TMP" <<'PYEOF'
import sys, yaml
crd = yaml.safe_load(open(sys.argv[1]))
props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["serving"]["properties"]
props["path"] = {"type": "string", "default": "/v1", "description": "URL prefix of the model server."}
yaml.safe_dump(crd, open(f"{sys.argv[2]}/described.yaml", "w"))
props["host"] = {"type": "string"}
yaml.safe_dump(crd, open(f"{sys.argv[2]}/undescribed.yaml", "w"))
PYEOF
"$PY" "$G" "$SHIP_TMP/described.yaml" "$SHIP_TMP/ref2.md" || fail "generator failed on a CRD with a new field"
diff -q "$S/docs/reference.md" "$SHIP_TMP/ref2.md" >/dev/null && fail "a new field did not change the reference"
# shellcheck disable=SC2016 # backquotes are Markdown here
grep -q '^| `spec.serving.path` | string | `"/v1"` |' "$SHIP_TMP/ref2.md" || fail "the new field has no row"
if "$PY" "$G" "$SHIP_TMP/undescribed.yaml" "$SHIP_TMP/ref3.md" 2>"$SHIP_TMP/err"; then
  fail "a field without a description was accepted"
fi
grep -q 'spec.serving.host' "$SHIP_TMP/err" || fail "wrong complaint: $(cat "$SHIP_TMP/err")"
pass "the comparison notices a new field and refuses an undescribed one"
