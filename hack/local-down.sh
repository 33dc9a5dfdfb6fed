#!/usr/bin/env bash
# Stops what hack/local-up.sh DIR started: the controller (SIGTERM releases
# its Lease), then kubelite and every pod process it ran. Leaves no process
# behind; the state in DIR stays for inspection.
set -uo pipefail
dir=${1:?usage: hack/local-down.sh DIR}
[ -d "$dir" ] || exit 0
dir=$(cd "$dir" && pwd)

stop() { # PIDFILE
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f"
}
stop "$dir/controller.pid"
stop "$dir/kubelite.pid"
# Pod processes run in sandboxes whose command lines name the data dir;
# anything kubelite could not stop is ended here.
pkill -KILL -f -- "$dir/kubelite" 2>/dev/null
for _ in $(seq 50); do pgrep -f -- "$dir/kubelite" >/dev/null || break; sleep 0.1; done
if pgrep -f -- "$dir/kubelite" >/dev/null; then
  echo "local-down: processes still running under $dir" >&2
  exit 1
fi
echo "local-down: stopped"
