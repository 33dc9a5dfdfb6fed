# shellcheck shell=bash disable=SC2034
# Helpers for the tests in tests/ship (installation: manifests, chart,
# images, docs). Sourced, not run. These tests need helm, kubectl and
# /usr/bin/python3 with PyYAML, not the built binaries (except where a test
# says so).
set -euo pipefail
KILN_SOURCE_DIR=${KILN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KILN_BUILD_DIR=${KILN_BUILD_DIR:-$KILN_SOURCE_DIR/build}
PY=/usr/bin/python3
HELM=${HELM:-helm}
CHART=$KILN_SOURCE_DIR/charts/kiln
CRD=$KILN_SOURCE_DIR/crds/kiln.dev_trainingjobs.yaml

SHIP_TMP=$(mktemp -d /tmp/kiln-ship.XXXXXX)
trap 'rm -rf "$SHIP_TMP"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok   $*"; }

# yq FILE EXPR: evaluates a Python expression over the YAML documents in
# FILE (the list `docs`, and `by_kind(kind)` returning the documents of a
# kind) and prints the result.
yq() {
  "$PY" - "$1" "$2" <<'PYEOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def by_kind(k): return [d for d in docs if d.get("kind") == k]
print(eval(sys.argv[2]))
PYEOF
}
