# Shared helpers for the kubelite client tests (sourced, not run).
# kl_start [ARGS...] starts a private kubelite on a free port with its own
# data dir and kubeconfig; it is always killed at exit.
set -u
KL_BIN="${KILN_BUILD_DIR:-$(dirname "$0")/../../build}/hack/kubelite/kubelite"
KL_DIR=$(mktemp -d /tmp/kubelite-test.XXXXXX)
KL_PID=""
KL_FAILS=0
export KUBECONFIG="$KL_DIR/kubeconfig"
export KUBECACHEDIR="$KL_DIR/kubecache"
export HELM_CACHE_HOME="$KL_DIR/helm/cache" HELM_CONFIG_HOME="$KL_DIR/helm/config" HELM_DATA_HOME="$KL_DIR/helm/data"

kl_cleanup() {
    local rc=$?
    if [ -n "$KL_PID" ]; then kill -TERM "$KL_PID" 2>/dev/null; wait "$KL_PID" 2>/dev/null; fi
    # Pod processes a kubelite that died (or was killed) could not stop:
    # their command lines name the data dir.
    pkill -KILL -f -- "$KL_DIR/" 2>/dev/null
    # Under the sanitizer build, any report from kubelite fails the test.
    if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$KL_DIR/stderr.log" 2>/dev/null; then
        grep -B2 -A30 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$KL_DIR/stderr.log" | head -80
        echo "FAIL sanitizer report from kubelite"
        rc=1
    fi
    rm -rf "$KL_DIR"
    exit $rc
}
trap kl_cleanup EXIT

kl_start() {
    rm -f "$KUBECONFIG"
    "$KL_BIN" --data-dir "$KL_DIR" "$@" >>"$KL_DIR/stderr.log" 2>&1 &
    KL_PID=$!
    local i
    for i in $(seq 1 300); do
        [ -s "$KUBECONFIG" ] && return 0
        kill -0 "$KL_PID" 2>/dev/null || { cat "$KL_DIR/stderr.log"; echo "kubelite exited"; exit 1; }
        sleep 0.1
    done
    echo "kubelite did not start"; exit 1
}

kl_stop() {
    local sig=${1:-TERM}
    kill -"$sig" "$KL_PID" 2>/dev/null; wait "$KL_PID" 2>/dev/null; KL_PID=""
}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; KL_FAILS=$((KL_FAILS + 1)); }
# check DESC CMD...: passes when CMD succeeds
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
# eventually TIMEOUT_S DESC CMD...: polls CMD until it succeeds
eventually() {
    local t=$1 d=$2; shift 2
    local end=$((SECONDS + t))
    while [ $SECONDS -lt $end ]; do
        if "$@" >/dev/null 2>&1; then ok "$d"; return 0; fi
        sleep 0.2
    done
    fail "$d"; return 1
}
kl_done() { echo "$KL_FAILS failure(s)"; [ "$KL_FAILS" -eq 0 ]; }
