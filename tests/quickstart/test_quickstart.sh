#!/usr/bin/env bash
# make quickstart without a terminal: it runs to the end on its own, prints
# the served prediction with its HTTP status, and leaves nothing running.
. "$(dirname "$0")/../lib.sh"
out=$TEST_TMP/quickstart.out
CI=true timeout 600 bash "$KILN_SOURCE_DIR/hack/quickstart.sh" </dev/null >"$out" 2>&1 \
  || { cat "$out" >&2; fail "quickstart exited non-zero"; }
grep -E '^quickstart: prediction .*\{"predictions":\[[0-9]\]\} \(HTTP 200\)$' "$out" >/dev/null \
  || { cat "$out" >&2; fail "no prediction line"; }
grep -q 'job Succeeded' "$out" || { cat "$out" >&2; fail "the sample did not reach its goal"; }
n=$(grep -c '^fashion-mnist-t[0-9]' "$out")
[ "$n" -ge 2 ] || fail "expected the trial table to show several trials, got $n"
if pgrep -f -- "$KILN_SOURCE_DIR/.quickstart/kubelite" >/dev/null; then
  fail "processes left running"
fi
pass "quickstart: $n trials, goal reached, prediction served ($(grep '^quickstart: prediction' "$out" | sed 's/.*: //'))"
