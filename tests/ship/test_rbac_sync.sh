#!/usr/bin/env bash
# The chart grants exactly the rules of manifests/rbac/role.yaml: the
# ClusterRole when watching all namespaces, and with one watched namespace a
# Role there with the same rules plus a Role in the release namespace with
# only the Lease and Event rules. Rules compare as sets of
# (apiGroup, resource, verb) triples, so order and grouping do not matter.
. "$(dirname "$0")/common.sh"

kubectl kustomize "$KILN_SOURCE_DIR/manifests/rbac" >"$SHIP_TMP/kust.yaml" || fail "kubectl kustomize manifests/rbac"
"$HELM" template kiln "$CHART" --namespace kiln-system >"$SHIP_TMP/cluster.yaml" || fail "helm template"
"$HELM" template kiln "$CHART" --namespace kiln-system --set 'watchNamespaces={ml}' >"$SHIP_TMP/ns.yaml" ||
  fail "helm template (one namespace)"

"$PY" - "$SHIP_TMP/kust.yaml" "$SHIP_TMP/cluster.yaml" "$SHIP_TMP/ns.yaml" <<'PYEOF'
import sys, yaml
def load(p): return [d for d in yaml.safe_load_all(open(p)) if d]
def triples(rules):
    out = set()
    for r in rules:
        assert "resourceNames" not in r and "nonResourceURLs" not in r, r
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    assert v != "*" and res != "*" and g != "*", f"wildcard in {r}"
                    out.add((g, res, v))
    return out
def one(docs, kind, ns=None):
    m = [d for d in docs if d["kind"] == kind and d["metadata"].get("namespace") == ns]
    assert len(m) == 1, f"{len(m)} {kind} in namespace {ns}"
    return m[0]
def fail(msg):
    print("FAIL:", msg, file=sys.stderr); sys.exit(1)

src = triples(one(load(sys.argv[1]), "ClusterRole")["rules"])
if len(src) < 10:
    fail(f"manifests/rbac has only {len(src)} permissions")
chart = triples(one(load(sys.argv[2]), "ClusterRole")["rules"])
if chart != src:
    fail(f"chart ClusterRole differs: only in chart {sorted(chart - src)}, only in manifests {sorted(src - chart)}")
ns = load(sys.argv[3])
if any(d["kind"].startswith("Cluster") for d in ns):
    fail("namespaced install still renders cluster-wide RBAC")
watched = triples(one(ns, "Role", "ml")["rules"])
if watched != src:
    fail(f"Role in the watched namespace differs: {sorted(watched ^ src)}")
own = triples(one(ns, "Role", "kiln-system")["rules"])
want = {t for t in src if t[0] == "coordination.k8s.io" or t[1] == "events"}
if own != want or not want:
    fail(f"release-namespace Role has {sorted(own)}, want {sorted(want)}")
for d in ns:
    if d["kind"] == "RoleBinding":
        if d["roleRef"]["name"] != d["metadata"]["name"] or d["subjects"][0]["namespace"] != "kiln-system":
            fail(f"RoleBinding {d['metadata']} binds the wrong role or subject")
print(f"ok   chart RBAC equals manifests/rbac ({len(src)} permissions; namespaced: {len(watched)} + {len(own)})")
PYEOF
