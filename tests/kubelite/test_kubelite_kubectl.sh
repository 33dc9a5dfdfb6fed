#!/bin/bash
# kubectl v1.32 against kubelite: CRD and custom resources, printer
# columns, patches of every type, validation errors, wait, watch,
# cascading deletes, server-side apply, protobuf generators (create
# deployment too, whose pod then runs), TLS auth.
. "$(dirname "$0")/kl_lib.sh"
M="$(dirname "$0")/manifests"
kl_start --no-kubelet

out=$(kubectl apply -f "$M/crd.yaml" 2>&1)
check "apply CRD: created, no warnings ($out)" test "$out" = "customresourcedefinition.apiextensions.k8s.io/widgets.test.kiln.dev created"
out=$(kubectl apply -f "$M/widget.yaml" 2>&1)
check "apply CR: created ($out)" test "$out" = "widget.test.kiln.dev/demo created"
out=$(sed 's/goal: 0.8/goal: 0.9/' "$M/widget.yaml" | kubectl apply -f - 2>&1)
check "re-apply: configured ($out)" test "$out" = "widget.test.kiln.dev/demo configured"
check "requests carry fieldValidation=Strict" grep -q 'fieldValidation=Strict\|"code":201' "$KL_DIR/requests.log"
check "re-apply sent a merge patch" grep -q '"contentType":"application/merge-patch+json"' "$KL_DIR/requests.log"

out=$(kubectl get wd)
check "get with printer columns" bash -c "echo '$out' | head -1 | grep -q 'NAME *PHASE *GOAL *AGE' && echo '$out' | grep -q '^demo  *0.9  *[0-9]*s'"
y=$(kubectl get widget demo -o yaml)
check "-o yaml has uid, resourceVersion, generation 2, defaulted replicas" bash -c "echo '$y' | grep -q 'uid:' && echo '$y' | grep -q 'resourceVersion:' && echo '$y' | grep -q 'generation: 2' && echo '$y' | grep -q 'replicas: 1'"

gen() { kubectl get wd demo -o jsonpath='{.metadata.generation}'; }
kubectl patch wd demo --type=merge -p '{"spec":{"goal":0.5}}' >/dev/null
check "merge patch bumps generation" test "$(gen)" = 3
kubectl patch wd demo --type=json -p '[{"op":"replace","path":"/spec/goal","value":0.6}]' >/dev/null
check "json patch applied" test "$(kubectl get wd demo -o jsonpath='{.spec.goal}')" = 0.6
kubectl patch wd demo --subresource=status --type=merge -p '{"status":{"phase":"Running"}}' >/dev/null
check "status patch leaves generation" test "$(gen)" = 4
kubectl label wd demo team=ml >/dev/null && kubectl annotate wd demo note=x >/dev/null
check "label and annotate leave generation" test "$(gen)" = 4
out=$(kubectl scale wd demo --replicas=3 2>&1)
check "scale subresource ($out)" test "$(kubectl get wd demo -o jsonpath='{.spec.replicas}')" = 3
kubectl create configmap cfg --from-literal=a=1 >/dev/null
kubectl patch cm cfg -p '{"data":{"b":"2"}}' >/dev/null
check "strategic merge patch on a configmap" test "$(kubectl get cm cfg -o jsonpath='{.data.a}{.data.b}')" = 12
check "the request log names a create's object (a POST's URL has no name)" \
  grep -q '"method":"POST","path":"/api/v1/namespaces/default/configmaps",.*"name":"cfg",.*"code":201' "$KL_DIR/requests.log"
out=$(kubectl patch wd demo --type=json -p '[{"op":"test","path":"/spec/goal","value":7}]' 2>&1)
check "failed json patch test gives 422 ($out)" bash -c "echo '$out' | grep -q 'is invalid\|Invalid'"

out=$(printf 'apiVersion: test.kiln.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {model: rnn, goal: 1.5}\n' | kubectl apply -f - 2>&1)
check "schema violations rejected with causes" bash -c "echo '$out' | grep -q 'spec.goal: Invalid value: 1.5: spec.goal in body should be less than or equal to 1' && echo '$out' | grep -q 'Unsupported value: \"rnn\"'"
out=$(printf 'apiVersion: test.kiln.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {goal: 0.5}\n' | kubectl apply -f - 2>&1)
check "required field" bash -c "echo '$out' | grep -q 'spec.model: Required value'"
out=$(printf 'apiVersion: test.kiln.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {model: cnn, foo: 1}\n' | kubectl apply -f - 2>&1)
check "unknown field with strict validation gives 400" bash -c "echo '$out' | grep -q 'strict decoding error: unknown field \"spec.foo\"'"

# wait --for=condition with observedGeneration, then --for=jsonpath
( sleep 1; kubectl patch wd demo --subresource=status --type=merge \
    -p "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"observedGeneration\":$(gen)}]}}" >/dev/null ) &
p1=$!
check "wait --for=condition=Ready" timeout 20 kubectl wait --for=condition=Ready wd/demo --timeout=15s
( sleep 1; kubectl patch wd demo --subresource=status --type=merge -p '{"status":{"phase":"Succeeded"}}' >/dev/null ) &
p2=$!
check "wait --for=jsonpath" timeout 20 kubectl wait --for=jsonpath='{.status.phase}'=Succeeded wd/demo --timeout=15s
wait $p1 $p2

# get -w prints one line per change
timeout 6 kubectl get wd -w >"$KL_DIR/watch.out" 2>&1 &
wpid=$!
eventually 5 "watch started" grep -q demo "$KL_DIR/watch.out"
kubectl patch wd demo --subresource=status --type=merge -p '{"status":{"phase":"P1"}}' >/dev/null
kubectl patch wd demo --subresource=status --type=merge -p '{"status":{"phase":"P2"}}' >/dev/null
eventually 5 "get -w shows each change" grep -q 'demo *P2' "$KL_DIR/watch.out"
check "get -w rows are tables (P1 row present)" grep -q 'demo *P1' "$KL_DIR/watch.out"
kill $wpid 2>/dev/null; wait $wpid 2>/dev/null

# cascading deletes through ownerReferences
own() {
    local uid; uid=$(kubectl get wd "$1" -o jsonpath='{.metadata.uid}')
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  ownerReferences: [{apiVersion: test.kiln.dev/v1, kind: Widget, name: %s, uid: %s, controller: true, blockOwnerDeletion: true}]\n' "$2" "$1" "$uid" | kubectl apply -f - >/dev/null
}
for mode in background foreground orphan; do
    printf 'apiVersion: test.kiln.dev/v1\nkind: Widget\nmetadata: {name: w-%s}\nspec: {model: cnn}\n' $mode | kubectl apply -f - >/dev/null
    own w-$mode dep-$mode
    check "delete --cascade=$mode returns" timeout 20 kubectl delete wd w-$mode --cascade=$mode
    if [ $mode = orphan ]; then
        eventually 5 "orphaned dependent loses its owner" bash -c "[ -z \"\$(kubectl get cm dep-orphan -o jsonpath='{.metadata.ownerReferences}')\" ]"
    else
        eventually 5 "$mode dependent deleted" bash -c "! kubectl get cm dep-$mode 2>/dev/null"
    fi
done
# a dependent written with an owner that is not there (a stale uid) is
# collected; one whose owner is there stays
printf 'apiVersion: test.kiln.dev/v1\nkind: Widget\nmetadata: {name: w-live}\nspec: {model: cnn}\n' | kubectl apply -f - >/dev/null
own w-live dep-live
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dep-stale\n  ownerReferences: [{apiVersion: test.kiln.dev/v1, kind: Widget, name: w-live, uid: 00000000-0000-0000-0000-000000000000}]\n' | kubectl apply -f - >/dev/null
eventually 8 "dependent of an absent owner deleted" bash -c "! kubectl get cm dep-stale 2>/dev/null"
check "dependent of a live owner kept" kubectl get cm dep-live
out=$(kubectl delete wd nope 2>&1); rc=$?
check "delete missing: NotFound, exit 1" bash -c "[ $rc = 1 ] && echo '$out' | grep -q 'Error from server (NotFound): widgets.test.kiln.dev \"nope\" not found'"

# finalizers keep an object until they are removed
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fin, finalizers: [kiln.dev/x]}\n' | kubectl apply -f - >/dev/null
kubectl delete cm fin --wait=false >/dev/null
check "finalizer: deletionTimestamp set, object kept" test -n "$(kubectl get cm fin -o jsonpath='{.metadata.deletionTimestamp}')"
kubectl patch cm fin --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
eventually 5 "removing the finalizer deletes the object" bash -c "! kubectl get cm fin 2>/dev/null"

# server-side apply, generators (protobuf), namespaces
out=$(printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: "1"}\n' | kubectl apply --server-side -f - 2>&1)
check "server-side apply creates ($out)" test "$out" = "configmap/ssa serverside-applied"
out=$(printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: "2"}\n' | kubectl apply --server-side -f - 2>&1)
check "server-side apply updates" test "$(kubectl get cm ssa -o jsonpath='{.data.a}')" = 2
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {b: "x", c: "y"}\n' | kubectl apply --server-side --field-manager=other -f - >/dev/null
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: "2"}\n' | kubectl apply --server-side -f - >/dev/null
check "another manager's fields survive a re-apply" test "$(kubectl get cm ssa -o jsonpath='{.data.b}{.data.c}')" = xy
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {b: "x"}\n' | kubectl apply --server-side --field-manager=other -f - >/dev/null
check "a field the manager stops applying is removed" test "$(kubectl get cm ssa -o jsonpath='{.data.a}/{.data.b}/{.data.c}')" = 2/x/
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {b: "z"}\n' | kubectl apply --server-side -f - >"$KL_DIR/conflict.out" 2>&1
check "changing another manager's field conflicts" grep -q 'Apply failed with 1 conflict: conflict with "other" using v1: .data.b' "$KL_DIR/conflict.out"
check "--force-conflicts takes the field" bash -c "printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {b: \"z\"}\n' | kubectl apply --server-side --force-conflicts -f - >/dev/null && [ \"\$(kubectl get cm ssa -o jsonpath='{.data.b}')\" = z ]"
check "managedFields recorded" bash -c "kubectl get cm ssa -o yaml --show-managed-fields | grep -q 'operation: Apply'"
check "create secret (protobuf)" kubectl create secret generic s1 --from-literal=k=v
check "secret data base64" test "$(kubectl get secret s1 -o jsonpath='{.data.k}')" = dg==
check "create namespace (protobuf)" kubectl create namespace ns2
check "create in new namespace" kubectl -n ns2 create configmap c --from-literal=a=b
check "delete namespace" timeout 20 kubectl delete namespace ns2
out=$(kubectl -n nope create configmap c --from-literal=a=b 2>&1)
check "create in missing namespace: NotFound" bash -c "echo '$out' | grep -q 'namespaces \"nope\" not found'"
check "api-resources lists widgets" bash -c "kubectl api-resources | grep -q '^widgets *wd *test.kiln.dev/v1 *true *Widget'"
check "explain uses the CRD schema" bash -c "kubectl explain wd.spec | grep -q 'model'"

# deleting the CRD removes its objects and endpoints
check "delete CRD" timeout 20 kubectl delete crd widgets.test.kiln.dev
eventually 5 "resource gone from discovery" bash -c "! kubectl get wd 2>/dev/null"

# emptied metadata lists are dropped (omitempty), not stored as []
kubectl patch cm cfg --type merge -p '{"metadata":{"finalizers":["kiln.dev/test"]}}' >/dev/null
kubectl patch cm cfg --type merge -p '{"metadata":{"finalizers":[],"ownerReferences":[]}}' >/dev/null
check "emptied finalizers and ownerReferences are absent" test "$(kubectl get cm cfg -o jsonpath='{.metadata.finalizers}{.metadata.ownerReferences}')" = ""

# fault injection: 20 % of requests answered 429/503 with Retry-After; client-go retries
server=$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')
token=$(kubectl config view --raw -o jsonpath='{.users[0].user.token}')
fault() { curl -s -k -H "Authorization: Bearer $token" -X POST -d "$1" "$server/kubelite/faults" >/dev/null; }
fault '{"errorRate":0.2,"errorCode":429}'
okc=0; for i in 1 2 3 4 5; do kubectl get cm cfg >/dev/null 2>&1 && okc=$((okc+1)); done
check "kubectl survives 20% 429 with Retry-After ($okc/5)" test $okc = 5
fault '{"errorRate":0.2,"errorCode":503}'
okc=0; for i in 1 2 3 4 5; do kubectl get cm cfg >/dev/null 2>&1 && okc=$((okc+1)); done
check "kubectl survives 20% 503 with Retry-After ($okc/5)" test $okc = 5
fault '{"errorRate":0}'
# dropping every watch ends kubectl get -w cleanly (it exits; clients re-watch)
timeout 10 kubectl get cm -w >"$KL_DIR/w2.out" 2>&1 &
wp=$!
eventually 5 "second watch started" grep -q cfg "$KL_DIR/w2.out"
fault '{"dropWatches":true}'
eventually 5 "dropWatches ends open watches" bash -c "! kill -0 $wp 2>/dev/null"
wait $wp 2>/dev/null
# a client that gives up on a watch (its close_notify and FIN unread while
# the stream is open): the server closes its end too, instead of leaving a
# readable socket in CLOSE-WAIT that keeps its event loop spinning
port=${server##*:}
curl -s -m 1 -k -H "Authorization: Bearer $token" "$server/api/v1/configmaps?watch=1" >/dev/null
eventually 5 "an abandoned watch is closed by the server" \
  bash -c "! ss -Htn state close-wait '( sport = :$port )' | grep -q ."

# TLS without a token: You must be logged in
server=$(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')
out=$(kubectl --kubeconfig=/dev/null --server="$server" --insecure-skip-tls-verify --token=wrong get ns 2>&1 </dev/null)
check "TLS without token: Unauthorized ($out)" bash -c "echo '$out' | grep -q 'You must be logged in to the server'"
out=$(curl -s -m 5 -k -H "Authorization: Bearer $token" "$server/api/v1/namespaces?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")
check "sendInitialEvents: ADDED events then the initial-events-end bookmark" bash -c "echo '$out' | grep -q '\"type\":\"ADDED\"' && echo '$out' | tail -1 | grep -q 'k8s.io/initial-events-end'"
code=$(curl -s -k -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -H 'Accept: application/json;as=Table;v=v9;g=meta.k8s.io' "$server/api/v1/namespaces")
check "Table in an unknown group-version: 406" test "$code" = 406
# a CRD served in two versions (conversion None): objects read back in the asked version
sed -e 's/name: v1$/name: v1/' "$M/crd.yaml" | /usr/bin/python3 -c '
import sys
t = sys.stdin.read()
i = t.index("  - name: v1")
block = t[i:]
print(t + block.replace("name: v1", "name: v2", 1).replace("storage: true", "storage: false"))' | kubectl apply -f - >/dev/null
eventually 10 "v2 served" bash -c "printf 'apiVersion: test.kiln.dev/v1\nkind: Widget\nmetadata: {name: mv}\nspec: {model: cnn}\n' | kubectl apply -f - >/dev/null 2>&1"
check "object read through v2 says v2" test "$(kubectl get widgets.v2.test.kiln.dev mv -o jsonpath='{.apiVersion}')" = test.kiln.dev/v2
pki="$KL_DIR/pki"
check "client certificate signed by the CA is accepted" bash -c "curl -sf --cacert $pki/ca.crt --cert $pki/client.crt --key $pki/client.key $server/api/v1/namespaces | grep -q NamespaceList"
check "request log records verb, resource, user agent and code" bash -c "grep -q '\"verb\":\"patch\",\"group\":\"test.kiln.dev\",\"resource\":\"widgets\"' $KL_DIR/requests.log && grep -q '\"userAgent\":\"kubectl/v1.32' $KL_DIR/requests.log"

# kubectl create deployment POSTs a protobuf apps/v1 Deployment
check "create deployment (protobuf)" kubectl create deployment d2 --image=busybox -- /bin/sh -c 'sleep 30'
check "request was protobuf" bash -c "grep '\"resource\":\"deployments\"' $KL_DIR/requests.log | grep '\"code\":201' | grep -q 'application/vnd.kubernetes.protobuf'"
check "decoded replicas, selector, template labels and command" test "$(kubectl get deploy d2 -o jsonpath='{.spec.replicas}/{.spec.selector.matchLabels.app}/{.spec.template.metadata.labels.app}/{.spec.template.spec.containers[0].image}/{.spec.template.spec.containers[0].command[*]}')" = "1/d2/d2/busybox//bin/sh -c sleep 30"
check "create deployment --replicas --port (protobuf)" kubectl create deployment d3 --image=busybox --replicas=2 --port=8080
check "decoded replicas and container port" test "$(kubectl get deploy d3 -o jsonpath='{.spec.replicas}/{.spec.template.spec.containers[0].ports[0].containerPort}')" = 2/8080
kubectl delete deploy d3 --wait=false >/dev/null
# the same data dir with the kubelet on: the Deployment's pod runs
kl_stop
kl_start
eventually 30 "the created Deployment's pod runs" bash -c "kubectl get pods -l app=d2 -o jsonpath='{.items[*].status.phase}' | grep -qw Running"
check "its container runs the decoded command" test "$(kubectl get pods -l app=d2 -o jsonpath='{.items[0].spec.containers[0].command[2]}')" = "sleep 30"
kl_done
