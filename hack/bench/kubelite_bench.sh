#!/bin/bash
# kubelite benchmark: creates/s and gets/s with wrk, watch events/s
# delivered to 100 concurrent watchers during the create load, and the
# server's RSS. Prints figures only; nothing here asserts on wall time.
#
#   hack/bench/kubelite_bench.sh [BUILD_DIR] [--no-fsync]
# Goals from the requirements: >= 5,000 writes/s, >= 50,000 watch events/s.
set -eu
BUILD=${1:-build}
shift || true
EXTRA=("$@")
BIN="$BUILD/hack/kubelite/kubelite"
DIR=$(mktemp -d /tmp/kubelite-bench.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
"$BIN" --data-dir "$DIR" --insecure-http --no-kubelet "${EXTRA[@]}" 2>"$DIR/stderr.log" &
PID=$!
for _ in $(seq 100); do [ -s "$DIR/kubeconfig" ] && break; sleep 0.1; done
URL=$(sed -n 's/ *server: //p' "$DIR/kubeconfig")
HOSTPORT=${URL#http://}
DUR=${KL_BENCH_SECONDS:-5}

cat >"$DIR/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"b-","labels":{"bench":"1"}},"data":{"k":"v"}}'
wrk.headers["Content-Type"] = "application/json"
LUA

rv=$(curl -s "$URL/api/v1/namespaces/default/configmaps?limit=1" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')
# 100 watchers from the current resourceVersion, counting event lines.
/usr/bin/python3 - "$HOSTPORT" "$rv" "$DIR/watch.count" "$((DUR + 3))" <<'PY' &
import socket, sys, threading, time
host, port = sys.argv[1].split(":")
rv, out, dur = sys.argv[2], sys.argv[3], float(sys.argv[4])
counts = [0] * 100
first = [None]
def run(i):
    s = socket.create_connection((host, int(port)))
    s.sendall(("GET /api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=%d HTTP/1.1\r\n"
               "Host: x\r\nAccept: application/json\r\n\r\n" % (rv, int(dur) + 5)).encode())
    s.settimeout(0.5)
    end = time.time() + dur
    while time.time() < end:
        try:
            b = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not b:
            break
        n = b.count(b'{"type":')
        if n and first[0] is None:
            first[0] = time.time()
        counts[i] += n
    s.close()
ts = [threading.Thread(target=run, args=(i,)) for i in range(100)]
for t in ts: t.start()
for t in ts: t.join()
open(out, "w").write("%d\n" % sum(counts))
PY
WPID=$!
sleep 1
wrk -t2 -c16 -d${DUR}s -s "$DIR/post.lua" "$URL/api/v1/namespaces/default/configmaps" >"$DIR/create.txt"
creates=$(sed -n 's/Requests\/sec: *//p' "$DIR/create.txt")
wait $WPID
events=$(cat "$DIR/watch.count")
name=$(curl -s "$URL/api/v1/namespaces/default/configmaps?limit=1" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["metadata"]["name"])')
wrk -t2 -c16 -d${DUR}s "$URL/api/v1/namespaces/default/configmaps/$name" >"$DIR/get.txt"
gets=$(sed -n 's/Requests\/sec: *//p' "$DIR/get.txt")
rss=$(awk '/VmRSS/{print $2" "$3}' /proc/$PID/status)
objects=$(curl -s "$URL/api/v1/namespaces/default/configmaps?labelSelector=bench%3D1&limit=1" >/dev/null; grep -c . "$DIR/store.wal" || true)
echo "kubelite benchmark (${DUR}s phases, 2 wrk threads x 16 connections, fsync ${EXTRA[*]:-on})"
echo "  creates/s:                 $creates"
echo "  gets/s:                    $gets"
echo "  watch events delivered:    $events to 100 watchers ($(( events / (DUR) )) events/s during the create phase)"
echo "  server RSS:                $rss (after $objects stored objects)"
