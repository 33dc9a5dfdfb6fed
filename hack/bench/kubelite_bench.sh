#!/bin/bash
# kubelite benchmark: creates/s and gets/s with wrk, watch events/s
# delivered to 100 concurrent watchers during the create load, and the
# server's RSS, plus what does not depend on a quiet machine: the server's
# CPU time per create (its own user+system time, fan-out to the watchers
# included) and fdatasyncs of the write-ahead log per create (group
# commit). Prints figures only; nothing here asserts on wall time.
#
#   hack/bench/kubelite_bench.sh [BUILD_DIR] [--no-fsync]
# Environment: KL_BENCH_SECONDS (phase length, 5), KL_BENCH_CONNS (wrk
# connections, 16), KL_BENCH_WATCHERS (100).
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
CONNS=${KL_BENCH_CONNS:-16}
WATCHERS=${KL_BENCH_WATCHERS:-100}
# The server's user+system CPU time in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
stat_of() { curl -s "$URL/kubelite/stats" | /usr/bin/python3 -c 'import json,sys; print(int(json.load(sys.stdin)["'"$1"'"]))'; }

cat >"$DIR/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"b-","labels":{"bench":"1"}},"data":{"k":"v"}}'
wrk.headers["Content-Type"] = "application/json"
LUA

rv=$(curl -s "$URL/api/v1/namespaces/default/configmaps?limit=1" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')
# Watchers from the current resourceVersion, counting event lines.
/usr/bin/python3 - "$HOSTPORT" "$rv" "$DIR/watch.count" "$((DUR + 3))" "$WATCHERS" <<'PY' &
import selectors, socket, sys, time
# One thread with epoll for all watchers: 100 Python threads would spend
# the benchmark's CPU on the GIL instead of reading events.
host, port = sys.argv[1].split(":")
rv, out, dur, nw = sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
sel = selectors.DefaultSelector()
total = 0
for i in range(nw):
    s = socket.create_connection((host, int(port)))
    s.sendall(("GET /api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=%d HTTP/1.1\r\n"
               "Host: x\r\nAccept: application/json\r\n\r\n" % (rv, int(dur) + 5)).encode())
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, [b""])
end = time.time() + dur
while sel.get_map() and time.time() < end:
    for key, _ in sel.select(timeout=0.5):
        try:
            b = key.fileobj.recv(65536)
        except BlockingIOError:
            continue
        if not b:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            continue
        # Each event has one marker; the 7 bytes kept from the last read
        # catch a marker split between reads and cannot hold a whole one.
        data = key.data[0] + b
        total += data.count(b'{"type":')
        key.data[0] = data[-7:]
open(out, "w").write("%d\n" % total)
PY
WPID=$!
sleep 1
w0=$(stat_of writes); s0=$(stat_of walSyncs); m0=$(stat_of walSyncMicros); c0=$(cpu_ticks)
wrk -t2 -c"$CONNS" -d${DUR}s -s "$DIR/post.lua" "$URL/api/v1/namespaces/default/configmaps" >"$DIR/create.txt"
c1=$(cpu_ticks); w1=$(stat_of writes); s1=$(stat_of walSyncs); m1=$(stat_of walSyncMicros)
creates=$(sed -n 's/Requests\/sec: *//p' "$DIR/create.txt")
nwrites=$((w1 - w0))
hz=$(getconf CLK_TCK)
cpu_us=$(awk -v c=$((c1 - c0)) -v hz="$hz" -v n="$nwrites" 'BEGIN { printf "%.1f", n ? c * 1e6 / hz / n : 0 }')
syncs_per=$(awk -v s=$((s1 - s0)) -v n="$nwrites" 'BEGIN { printf "%.3f", n ? s / n : 0 }')
# A write is answered only after an fdatasync that started after it, so
# with C connections creates/s cannot exceed C / (fdatasync time).
sync_us=$(awk -v m=$((m1 - m0)) -v s=$((s1 - s0)) 'BEGIN { printf "%.0f", s ? m / s : 0 }')
bound=$(awk -v c="$CONNS" -v u="$sync_us" 'BEGIN { printf "%.0f", u ? c * 1e6 / u : 0 }')
wait $WPID
events=$(cat "$DIR/watch.count")
name=$(curl -s "$URL/api/v1/namespaces/default/configmaps?limit=1" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["metadata"]["name"])')
wrk -t2 -c"$CONNS" -d${DUR}s "$URL/api/v1/namespaces/default/configmaps/$name" >"$DIR/get.txt"
gets=$(sed -n 's/Requests\/sec: *//p' "$DIR/get.txt")
rss=$(awk '/VmRSS/{print $2" "$3}' /proc/$PID/status)
objects=$(curl -s "$URL/api/v1/namespaces/default/configmaps?labelSelector=bench%3D1&limit=1" >/dev/null; grep -c . "$DIR/store.wal" || true)
echo "kubelite benchmark (${DUR}s phases, 2 wrk threads x $CONNS connections, $WATCHERS watchers, fsync ${EXTRA[*]:-on})"
echo "  creates/s:                 $creates"
echo "  server CPU per create:     $cpu_us us (user+system, $nwrites writes, watch fan-out included)"
echo "  WAL fdatasyncs per write:  $syncs_per ($((s1 - s0)) for $nwrites writes)"
[ "$sync_us" != 0 ] && echo "  mean fdatasync:            $sync_us us (so at most $bound creates/s with $CONNS connections)"
echo "  gets/s:                    $gets"
echo "  watch events delivered:    $events to $WATCHERS watchers ($(( events / (DUR) )) events/s during the create phase)"
# wrk counts failed requests separately from Requests/sec: show them.
grep -hE "Non-2xx|Socket errors" "$DIR/create.txt" "$DIR/get.txt" | sed 's/^ */  wrk: /' || true
echo "  server RSS:                $rss (after $objects stored objects)"
