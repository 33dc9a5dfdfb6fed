#!/bin/bash
# kubelite's kubelet driven by kubectl: a /bin/sh pod reaches its final
# phase with exit code, logs and termination message; restartPolicy
# Always restarts with back-off; two containers share an emptyDir; a pod
# waits Pending for its PersistentVolumeClaim; logs -f
# follows a running container; readiness feeds Endpoints and the Service
# forwarder; Deployments roll out; graceful deletion; activeDeadlineSeconds;
# fault injection kills a pod's process.
. "$(dirname "$0")/kl_lib.sh"
kl_start

kubectl run p --image=busybox --restart=Never --command -- /bin/sh -c 'echo hi; echo done-msg > /dev/termination-log; exit 3' >/dev/null
eventually 20 "sh pod reaches Failed" bash -c "[ \"\$(kubectl get pod p -o jsonpath='{.status.phase}')\" = Failed ]"
check "exit code 3" test "$(kubectl get pod p -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')" = 3
check "termination message" test "$(kubectl get pod p -o jsonpath='{.status.containerStatuses[0].state.terminated.message}')" = done-msg
check "logs" test "$(kubectl logs p)" = hi
check "pod IP is a loopback address" bash -c "kubectl get pod p -o jsonpath='{.status.podIP}' | grep -q '^127\.'"
kubectl run ok --image=busybox --restart=Never --command -- /bin/sh -c 'exit 0' >/dev/null
eventually 20 "exit 0 reaches Succeeded" bash -c "[ \"\$(kubectl get pod ok -o jsonpath='{.status.phase}')\" = Succeeded ]"
check "reason Completed" test "$(kubectl get pod ok -o jsonpath='{.status.containerStatuses[0].state.terminated.reason}')" = Completed

# CPU weight by QoS class. Where kubelite can write the cgroup v1 cpu
# controller (root), each pod gets a cgroup as a kubelet gives it:
# BestEffort pods under a group weighing 2 in all, a 500m request 512
# shares under the burstable group, a Guaranteed 1-CPU pod 1024 shares and
# a 100 ms CFS quota per 100 ms period. Elsewhere each container takes the
# niceness closest to that weight (19, 3, 0), its session's scheduler
# autogroup too (else the session would weigh as much as the whole API
# server whatever its processes' niceness).
probe='echo $(cut -d" " -f19 /proc/self/stat) $(sed -n "s/.* nice //p" /proc/self/autogroup 2>/dev/null || echo none) $(sed -n "s/^[0-9]*:cpu:\(.*\)/\1/p" /proc/self/cgroup)'
cat <<YAML | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: qos-besteffort}
spec:
  restartPolicy: Never
  containers: [{name: c, image: busybox, command: [/bin/sh, -c, '$probe']}]
---
apiVersion: v1
kind: Pod
metadata: {name: qos-half}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox, command: [/bin/sh, -c, '$probe'], resources: {requests: {cpu: 500m}}}
---
apiVersion: v1
kind: Pod
metadata: {name: qos-one}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox, command: [/bin/sh, -c, '$probe'], resources: {limits: {cpu: "1", memory: 64Mi}}}
YAML
for p in qos-besteffort qos-half qos-one; do
  eventually 20 "$p succeeds" bash -c "[ \"\$(kubectl get pod $p -o jsonpath='{.status.phase}')\" = Succeeded ]"
done
cg() { kubectl logs "$1" | cut -d' ' -f3; }
uid() { kubectl get pod "$1" -o jsonpath='{.metadata.uid}'; }
cpufs=/sys/fs/cgroup/cpu
if [ -w $cpufs/cpu.shares ]; then
  be=$(cg qos-besteffort) half=$(cg qos-half) one=$(cg qos-one)
  check "BestEffort pod in its own cgroup under besteffort" bash -c "[[ '$be' == /kubelite-*/besteffort/pod$(uid qos-besteffort) ]]"
  check "BestEffort pod weighs 2" test "$(cat $cpufs$be/cpu.shares)" = 2
  check "all BestEffort pods together weigh 2" test "$(cat $cpufs${be%/*}/cpu.shares)" = 2
  check "a 500m request: 512 shares under burstable" bash -c "[[ '$half' == /kubelite-*/burstable/pod$(uid qos-half) ]] && [ \$(cat $cpufs$half/cpu.shares) = 512 ]"
  check "burstable weighs its pods' requests" test "$(cat $cpufs${half%/*}/cpu.shares)" = 512
  check "no CPU quota without a limit" test "$(cat $cpufs$half/cpu.cfs_quota_us)" = -1
  check "Guaranteed 1-CPU pod: 1024 shares beside the QoS groups" bash -c "[ '$one' = '${be%/besteffort/*}/pod$(uid qos-one)' ] && [ \$(cat $cpufs$one/cpu.shares) = 1024 ]"
  check "a 1-CPU limit is 100 ms of CPU per 100 ms" test "$(cat $cpufs$one/cpu.cfs_quota_us) $(cat $cpufs$one/cpu.cfs_period_us)" = "100000 100000"
  check "the pods' group weighs the node's cores" test "$(cat $cpufs${be%/besteffort/*}/cpu.shares)" = $(($(nproc) * 1024))
  kubectl delete pod qos-half --wait=true >/dev/null
  eventually 20 "a deleted pod's cgroup is removed" bash -c "[ ! -d $cpufs$half ]"
  check "burstable's weight drops with it" test "$(cat $cpufs${half%/*}/cpu.shares)" = 2
else
  ag=none; [ -r /proc/self/autogroup ] && ag=
  check "BestEffort container and its session run at niceness 19" test "$(kubectl logs qos-besteffort | cut -d' ' -f1-2)" = "19 ${ag:-19}"
  check "a 500m request runs at niceness 3" test "$(kubectl logs qos-half | cut -d' ' -f1-2)" = "3 ${ag:-3}"
  check "a 1-CPU limit runs at niceness 0" test "$(kubectl logs qos-one | cut -d' ' -f1-2)" = "0 ${ag:-0}"
fi

cat <<'YAML' | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers: [{name: c, image: busybox, command: [/bin/sh, -c, 'echo attempt; exit 1']}]
---
apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  restartPolicy: Never
  volumes: [{name: shared, emptyDir: {}}]
  containers:
  - name: writer
    image: busybox
    command: [/bin/sh, -c, 'echo from-writer > /data/x']
    volumeMounts: [{name: shared, mountPath: /data}]
  - name: reader
    image: busybox
    command: [/bin/sh, -c, 'for i in $(seq 1 50); do [ -s /data/x ] && cat /data/x && echo "$POD/$NS" && exit 0; sleep 0.1; done; exit 1']
    volumeMounts: [{name: shared, mountPath: /data}]
    env:
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
---
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  restartPolicy: Never
  activeDeadlineSeconds: 1
  containers: [{name: c, image: busybox, command: [/bin/sleep, "30"]}]
YAML
eventually 30 "Always pod restarted with back-off" bash -c "[ \"\$(kubectl get pod crash -o jsonpath='{.status.containerStatuses[0].restartCount}')\" -ge 2 ]"
check "lastState records the exit" test "$(kubectl get pod crash -o jsonpath='{.status.containerStatuses[0].lastState.terminated.exitCode}')" = 1
check "previous logs" test "$(kubectl logs crash --previous)" = attempt
eventually 20 "two containers with a shared emptyDir succeed" bash -c "[ \"\$(kubectl get pod two -o jsonpath='{.status.phase}')\" = Succeeded ]"

# A pod mounting a PersistentVolumeClaim that does not exist stays Pending
# and unscheduled, as a scheduler keeps it, and runs once the claim is made.
cat <<YAML | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: needs-claim}
spec:
  restartPolicy: Never
  containers: [{name: c, image: busybox, command: [/bin/sh, -c, 'echo kept > /data/f; cat /data/f'], volumeMounts: [{name: d, mountPath: /data}]}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: late-claim}}]
YAML
eventually 20 "a pod without its claim is Unschedulable" bash -c "[ \"\$(kubectl get pod needs-claim -o jsonpath='{.status.conditions[?(@.type==\"PodScheduled\")].reason}')\" = Unschedulable ]"
sleep 1
check "it stays Pending, naming the claim" bash -c "[ \"\$(kubectl get pod needs-claim -o jsonpath='{.status.phase} {.status.conditions[?(@.type==\"PodScheduled\")].message}')\" = 'Pending 0/1 nodes are available: persistentvolumeclaim \"late-claim\" not found.' ]"
cat <<YAML | kubectl apply -f - >/dev/null
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: late-claim}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}
YAML
eventually 20 "with its claim made, the pod runs" bash -c "[ \"\$(kubectl get pod needs-claim -o jsonpath='{.status.phase}')\" = Succeeded ]"
check "and is scheduled" test "$(kubectl get pod needs-claim -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].status}')" = True
check "reader saw the writer's file and downward API env" test "$(kubectl logs two -c reader)" = "$(printf 'from-writer\ntwo/default')"
kubectl run ticker --image=busybox --restart=Never --command -- /bin/sh -c 'sleep 1; for i in 1 2 3 4 5; do echo tick $i; sleep 0.4; done' >/dev/null
eventually 10 "ticker running" bash -c "[ \"\$(kubectl get pod ticker -o jsonpath='{.status.phase}')\" = Running ]"
out=$(timeout 20 kubectl logs -f ticker)
check "logs -f follows until the container exits ($out)" test "$out" = "$(printf 'tick 1\ntick 2\ntick 3\ntick 4\ntick 5')"
check "tailLines" test "$(kubectl logs ticker --tail=2)" = "$(printf 'tick 4\ntick 5')"
cat <<'YAML' | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [/usr/bin/python3, -c, "x = bytearray(300 * 1024 * 1024); print(len(x))"]
    resources: {limits: {memory: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: probes}
spec:
  containers:
  - name: c
    image: busybox
    command: [/bin/sh, -c, 'touch /tmp/ready; sleep 300']
    readinessProbe: {exec: {command: [/bin/sh, -c, 'test -f /tmp/ready']}, periodSeconds: 1}
YAML
eventually 20 "memory limit: OOMKilled" bash -c "[ \"\$(kubectl get pod hog -o jsonpath='{.status.containerStatuses[0].state.terminated.reason}')\" = OOMKilled ]"
eventually 20 "exec readiness probe marks the pod Ready" bash -c "[ \"\$(kubectl get pod probes -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}')\" = True ]"
eventually 15 "activeDeadlineSeconds: DeadlineExceeded" bash -c "[ \"\$(kubectl get pod slow -o jsonpath='{.status.reason}')\" = DeadlineExceeded ]"

# readiness, endpoints, service forwarding, deployments
cat <<'YAML' | kubectl apply -f - >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: c
        image: busybox
        command: [/usr/bin/python3, -c, "import http.server,os; http.server.HTTPServer((os.environ['IP'],8080), http.server.SimpleHTTPRequestHandler).serve_forever()"]
        workingDir: /etc
        env: [{name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
        readinessProbe: {httpGet: {path: /missing, port: 8080}, periodSeconds: 1}
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
YAML
eventually 20 "unready pods sit in notReadyAddresses" bash -c "[ -n \"\$(kubectl get endpoints web -o jsonpath='{.subsets[0].notReadyAddresses}')\" ]"
# a probe path that exists (the server's working dir is /etc): a new ReplicaSet rolls out
kubectl patch deploy web -p '{"spec":{"template":{"spec":{"containers":[{"name":"c","readinessProbe":{"httpGet":{"path":"/passwd","port":8080}}}]}}}}' >/dev/null
check "rollout completes" timeout 40 kubectl rollout status deploy/web --timeout=35s
check "two ready endpoints" test "$(kubectl get endpoints web -o jsonpath='{.subsets[0].addresses[*].ip}' | wc -w)" = 2
ip=$(kubectl get svc web -o jsonpath='{.spec.clusterIP}')
eventually 10 "service forwards to a pod ($ip)" bash -c "curl -s -m 2 http://$ip:80/passwd | grep -q root"
check "deployment status counts ready replicas" test "$(kubectl get deploy web -o jsonpath='{.status.readyReplicas}/{.status.observedGeneration}')" = "2/$(kubectl get deploy web -o jsonpath='{.metadata.generation}')"
pod=$(kubectl get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
check "graceful delete returns" timeout 20 kubectl delete pod "$pod"
eventually 10 "replacement pod created" bash -c "[ \"\$(kubectl get pods -l app=web --no-headers | wc -l)\" -ge 2 ]"

# graceful deletion: SIGTERM reaches the container's own process, which
# finishes its work within the grace period; one that ignores SIGTERM is
# killed when the grace period ends
mkdir -p "$KL_DIR/drain"
cat <<YAML | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: drain}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{name: out, hostPath: {path: "$KL_DIR/drain"}}]
  containers:
  - name: c
    image: busybox
    command: [/bin/sh, -c, 'trap "sleep 1; echo drained > /out/done; exit 0" TERM; echo up > /out/up; while :; do sleep 0.1; done']
    volumeMounts: [{name: out, mountPath: /out}]
---
apiVersion: v1
kind: Pod
metadata: {name: ignores-term}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [/bin/sh, -c, 'trap "" TERM; while :; do sleep 0.1; done']
YAML
eventually 15 "drain pod up" test -f "$KL_DIR/drain/up"
eventually 15 "ignores-term pod running" bash -c "[ \"\$(kubectl get pod ignores-term -o jsonpath='{.status.phase}')\" = Running ]"
check "delete waits for the container to finish" timeout 20 kubectl delete pod drain
check "SIGTERM let the container finish its work" grep -q drained "$KL_DIR/drain/done"
check "a container that ignores SIGTERM is killed after its grace period" timeout 20 kubectl delete pod ignores-term

# fault injection: kill a pod's process; restartPolicy Always brings it back
kubectl run kill-me --image=busybox --command -- /bin/sleep 300 >/dev/null
eventually 10 "kill-me running" bash -c "[ \"\$(kubectl get pod kill-me -o jsonpath='{.status.phase}')\" = Running ]"
server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
token=$(kubectl config view --raw -o jsonpath='{.users[0].user.token}')
check "faults endpoint kills the pod" bash -c "curl -s -k -H 'Authorization: Bearer $token' -X POST -d '{\"killPod\":\"default/kill-me\"}' $server/kubelite/faults | grep -q '\"killed\":true'"
eventually 15 "killed pod restarted" bash -c "[ \"\$(kubectl get pod kill-me -o jsonpath='{.status.containerStatuses[0].restartCount}')\" -ge 1 ]"
check "delete deployment cascades" timeout 20 kubectl delete deploy web
eventually 15 "deployment pods gone" bash -c "[ -z \"\$(kubectl get pods -l app=web -o name)\" ]"
kl_done
