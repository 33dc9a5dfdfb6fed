#!/usr/bin/env bash
# The copies hack/sync-chart-crds.sh makes (the CRD in the chart and in
# manifests/crd, the RBAC rules in the chart) match their sources. Run
# hack/sync-chart-crds.sh after editing crds/ or manifests/rbac/role.yaml.
. "$(dirname "$0")/common.sh"
S=$KILN_SOURCE_DIR
FILES="charts/kiln/crds/kiln.dev_trainingjobs.yaml manifests/crd/kiln.dev_trainingjobs.yaml charts/kiln/files/rbac-rules.yaml"

bash "$S/hack/sync-chart-crds.sh" "$SHIP_TMP/fresh" >/dev/null || fail "hack/sync-chart-crds.sh"

# stale_in ROOT: prints the first copy under ROOT that differs from a fresh
# sync, and fails; succeeds when all are in sync.
stale_in() {
  local f
  for f in $FILES; do
    [ -s "$SHIP_TMP/fresh/$f" ] || { echo "the sync script did not write $f"; return 1; }
    if ! diff -u "$SHIP_TMP/fresh/$f" "$1/$f" >"$SHIP_TMP/diff"; then
      echo "$f is stale; run hack/sync-chart-crds.sh:"
      head -20 "$SHIP_TMP/diff"
      return 1
    fi
  done
}
msg=$(stale_in "$S") || fail "$msg"
cmp -s "$S/crds/kiln.dev_trainingjobs.yaml" "$S/charts/kiln/crds/kiln.dev_trainingjobs.yaml" ||
  fail "the chart's CRD differs from crds/"
pass "chart CRD, manifests/crd CRD and chart RBAC rules are in sync"

# The comparison can fail: a tree whose chart CRD lost one limit, and one
# whose chart rules lost a verb, are both reported.
for f in charts/kiln/crds/kiln.dev_trainingjobs.yaml charts/kiln/files/rbac-rules.yaml; do
  rm -rf "$SHIP_TMP/stale"
  for g in $FILES; do install -D -m 644 "$S/$g" "$SHIP_TMP/stale/$g"; done
  sed -i -e '0,/maximum: 1000/s//maximum: 999/' -e '0,/verbs: \[list, watch, create, delete\]/s//verbs: [list, watch, create]/' \
    "$SHIP_TMP/stale/$f"
  cmp -s "$S/$f" "$SHIP_TMP/stale/$f" && fail "could not make a stale $f"
  msg=$(stale_in "$SHIP_TMP/stale") && fail "a stale $f was not noticed"
  grep -q "^$f is stale" <<<"$msg" || fail "wrong report for a stale $f: $msg"
done
pass "stale copies are detected"
