#!/usr/bin/env bash
# Client test: kiln_kube (kube_kubelite_check) against a private kubelite,
# once with chunked-HTTP watches and once with WebSocket watches.
set -u
. "${KILN_SOURCE_DIR:-$(dirname "$0")/../..}/tests/kubelite/kl_lib.sh"
CHECK="${KILN_BUILD_DIR}/controller/kube_kubelite_check"
kl_start --no-kubelet
check "kiln_kube against kubelite (chunked watch)" "$CHECK"
check "kiln_kube against kubelite (WebSocket watch)" env KILN_CHECK_WEBSOCKET=1 "$CHECK"
kl_done
