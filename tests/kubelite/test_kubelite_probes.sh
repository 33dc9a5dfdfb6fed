#!/bin/bash
# kubelite's kubelet, container lifecycle beyond start and exit, driven by
# kubectl: a failing liveness probe restarts the container (restartCount,
# lastState, Killing and Unhealthy events); HTTPS readiness probes speak
# TLS and httpHeaders are sent; a startup probe gates the other
# probes and kills a container that never passes it; init containers run
# in order to completion before the app container, share an emptyDir with
# it, and fail the pod under restartPolicy Never (or retry under Always).
. "$(dirname "$0")/kl_lib.sh"
kl_start

# A serving certificate for the HTTPS probe target (openssl s_server).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=probe \
    -keyout "$KL_DIR/probe.key" -out "$KL_DIR/probe.crt" -days 1 >/dev/null 2>&1
kubectl create secret generic probe-tls --from-file=tls.crt="$KL_DIR/probe.crt" \
    --from-file=tls.key="$KL_DIR/probe.key" >/dev/null

jp() { kubectl get pod "$1" -o jsonpath="$2"; }
cat <<'YAML' | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: busybox
    command: [/bin/sh, -c, 'touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 300']
    livenessProbe: {exec: {command: [/bin/sh, -c, 'test -f /tmp/alive']}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: nostart}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [/bin/sleep, "300"]
    startupProbe: {exec: {command: [/bin/sh, -c, 'test -f /tmp/never']}, periodSeconds: 1, failureThreshold: 2}
    livenessProbe: {exec: {command: [/bin/true]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: slowstart}
spec:
  containers:
  - name: c
    image: busybox
    command: [/bin/sh, -c, 'sleep 5; touch /tmp/up; sleep 300']
    startupProbe: {exec: {command: [/bin/sh, -c, 'test -f /tmp/up']}, periodSeconds: 1, failureThreshold: 10}
    readinessProbe: {tcpSocket: {port: 9}, periodSeconds: 1}
    livenessProbe: {exec: {command: [/bin/false]}, initialDelaySeconds: 30}
---
apiVersion: v1
kind: Pod
metadata: {name: init}
spec:
  restartPolicy: Never
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - name: first
    image: busybox
    command: [/bin/sh, -c, 'sleep 5; echo one > /work/a']
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: busybox
    command: [/bin/sh, -c, 'test -s /work/a && echo two > /work/b']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: busybox
    command: [/bin/sh, -c, 'cat /work/a /work/b']
    volumeMounts: [{name: work, mountPath: /work}]
---
apiVersion: v1
kind: Pod
metadata: {name: initfail}
spec:
  restartPolicy: Never
  initContainers: [{name: bad, image: busybox, command: [/bin/sh, -c, 'echo init-broke; exit 1']}]
  containers: [{name: app, image: busybox, command: [/bin/sleep, "300"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: initretry}
spec:
  initContainers: [{name: bad, image: busybox, command: [/bin/sh, -c, 'exit 2']}]
  containers: [{name: app, image: busybox, command: [/bin/sleep, "300"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: headers}
spec:
  containers:
  - name: c
    image: busybox
    env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
    command:
    - /usr/bin/python3
    - -c
    - |
      import http.server, os
      class H(http.server.BaseHTTPRequestHandler):
          def do_GET(self):
              ok = self.headers.get("X-Probe-Token") == "s3cret" and self.headers.get("Host") == "svc.example"
              self.send_response(200 if ok else 403)
              self.end_headers()
      http.server.HTTPServer((os.environ["POD_IP"], 8080), H).serve_forever()
    readinessProbe:
      httpGet: {port: 8080, path: /healthz, httpHeaders: [{name: X-Probe-Token, value: s3cret}, {name: Host, value: svc.example}]}
      periodSeconds: 1
YAML

# Two openssl s_server pods, probed over HTTPS and (wrongly) over HTTP.
tls_pod() { # NAME SCHEME
    cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  volumes: [{name: tls, secret: {secretName: probe-tls}}]
  containers:
  - name: c
    image: busybox
    env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
    command: [/bin/sh, -c, 'exec openssl s_server -accept "\$POD_IP:8443" -cert /tls/tls.crt -key /tls/tls.key -www -quiet']
    volumeMounts: [{name: tls, mountPath: /tls}]
    readinessProbe: {httpGet: {port: 8443, scheme: $2, path: /}, periodSeconds: 1}
YAML
}
{ tls_pod tlsready HTTPS; tls_pod tlsplain HTTP; } | kubectl apply -f - >/dev/null

eventually 10 "startup probe pending: running but not started" bash -c "[[ \"\$(kubectl get pod slowstart -o jsonpath='{.status.containerStatuses[0].state.running.startedAt}|{.status.containerStatuses[0].started}')\" == ?*'|false' ]]"

# init containers run one at a time, then the app reads both files. One
# read of the status, so that all fields come from the same moment.
first_init_running() {
    local st
    st=$(kubectl get pod init -o jsonpath='{.status.phase}/{.status.conditions[?(@.type=="Initialized")].status}/{.status.initContainerStatuses[1].state.waiting.reason}/{.status.containerStatuses[0].state.waiting.reason}/{.status.initContainerStatuses[0].state.running.startedAt}')
    [[ $st == Pending/False/PodInitializing/PodInitializing/?* ]]
}
eventually 10 "first init container runs: pod Pending, not Initialized, the second init container and the app wait (PodInitializing)" first_init_running
eventually 20 "pod with two init containers Succeeded" bash -c "[ \"\$(kubectl get pod init -o jsonpath='{.status.phase}')\" = Succeeded ]"
check "app read both init containers' files" test "$(kubectl logs init -c app)" = "$(printf 'one\ntwo')"
check "both init containers Completed" test "$(jp init '{.status.initContainerStatuses[*].state.terminated.reason}')" = "Completed Completed"
check "Initialized condition True" test "$(jp init '{.status.conditions[?(@.type=="Initialized")].status}')" = True
eventually 10 "failing init container with restartPolicy Never: pod Failed" bash -c "[ \"\$(kubectl get pod initfail -o jsonpath='{.status.phase}')\" = Failed ]"
check "init exit code recorded" test "$(jp initfail '{.status.initContainerStatuses[0].state.terminated.exitCode}')" = 1
check "app container never started" test "$(jp initfail '{.status.containerStatuses[0].state.waiting.reason}')" = PodInitializing
check "init container terminated with reason Error" test "$(jp initfail '{.status.initContainerStatuses[0].state.terminated.reason}')" = Error
check "init container logs" test "$(kubectl logs initfail -c bad)" = init-broke
eventually 15 "failing init container under Always is retried" bash -c "[ \"\$(kubectl get pod initretry -o jsonpath='{.status.initContainerStatuses[0].restartCount}')\" -ge 1 ]"
check "retrying pod stays Pending" test "$(jp initretry '{.status.phase}')" = Pending

# liveness: the file goes away after 2 s, two failed checks, SIGTERM, restart
eventually 30 "liveness failure restarts the container" bash -c "[ \"\$(kubectl get pod live -o jsonpath='{.status.containerStatuses[0].restartCount}')\" -ge 1 ]"
code=$(jp live '{.status.containerStatuses[0].lastState.terminated.exitCode}')
check "lastState.terminated records the kill ($code)" bash -c "[ '$code' = 143 ] || [ '$code' = 137 ]"
eventually 10 "restarted container runs and is started" bash -c "[ \"\$(kubectl get pod live -o jsonpath='{.status.containerStatuses[0].started}')\" = true ]"
ev=$(kubectl get events -o jsonpath='{range .items[?(@.involvedObject.name=="live")]}{.reason}{"\n"}{end}')
check "Unhealthy and Killing events recorded" bash -c "echo '$ev' | grep -qx Unhealthy && echo '$ev' | grep -qx Killing"
check "Killing event names the liveness probe" bash -c "kubectl get events -o jsonpath='{.items[?(@.reason==\"Killing\")].message}' | grep -q 'Container c failed liveness probe, will be restarted'"
eventually 30 "liveness keeps restarting it (restartCount >= 2)" bash -c "[ \"\$(kubectl get pod live -o jsonpath='{.status.containerStatuses[0].restartCount}')\" -ge 2 ]"

# startup probes
eventually 15 "startup probe passes: started true" bash -c "[ \"\$(kubectl get pod slowstart -o jsonpath='{.status.containerStatuses[0].started}')\" = true ]"
check "readiness probe (port 9 closed) keeps it unready" test "$(jp slowstart '{.status.containerStatuses[0].ready}')" = false
check "initialDelaySeconds holds back a failing liveness probe" test "$(jp slowstart '{.status.containerStatuses[0].restartCount}')" = 0
eventually 15 "startup probe that never passes kills the container: Failed" bash -c "[ \"\$(kubectl get pod nostart -o jsonpath='{.status.phase}')\" = Failed ]"
check "killed container never counted as started" test "$(jp nostart '{.status.containerStatuses[0].started}')" = false
check "Killing event names the startup probe" bash -c "kubectl get events -o jsonpath='{.items[?(@.reason==\"Killing\")].message}' | grep -q 'Container c failed startup probe'"

# HTTPS and header probes (the pods started with the others)
eventually 15 "HTTPS readiness probe: TLS handshake, then 200" bash -c "[ \"\$(kubectl get pod tlsready -o jsonpath='{.status.containerStatuses[0].ready}')\" = true ]"
eventually 15 "httpHeaders reach the probed server (Host included)" bash -c "[ \"\$(kubectl get pod headers -o jsonpath='{.status.containerStatuses[0].ready}')\" = true ]"
check "plain HTTP against a TLS server is not ready" test "$(jp tlsplain '{.status.containerStatuses[0].ready}')" = false
eventually 10 "its Unhealthy event says why" bash -c "kubectl get events -o jsonpath='{.items[?(@.involvedObject.name==\"tlsplain\")].message}' | grep -q 'Readiness probe failed: the answer is not HTTP'"
kl_done
