#!/bin/bash
# helm 3 against kubelite: install a chart with a CRD in crds/, a
# ConfigMap, a custom resource, a Deployment and a Service with --wait;
# upgrade with --set; list and history; uninstall leaves nothing behind.
# helm stores releases as protobuf Secrets, so this also proves the
# protobuf decoder.
. "$(dirname "$0")/kl_lib.sh"
CHART="$(dirname "$0")/chart"
kl_start
HELM=${HELM:-/usr/local/bin/helm}

out=$(timeout 120 $HELM install demo "$CHART" --wait --timeout 90s 2>&1)
check "install --wait: deployed ($(echo "$out" | grep STATUS))" bash -c "echo '$out' | grep -q 'STATUS: deployed'"
check "release secret stored with helm's labels and type" test \
  "$(kubectl get secret sh.helm.release.v1.demo.v1 -o jsonpath='{.type} {.metadata.labels.owner} {.metadata.labels.status}')" = "helm.sh/release.v1 helm deployed"
check "custom resource created" test "$(kubectl get wd demo-w -o jsonpath='{.spec.goal}')" = 0.8
check "objects carry helm's ownership metadata" test "$(kubectl get cm demo-cfg -o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}')" = Helm
check "deployment ready" test "$(kubectl get deploy demo-app -o jsonpath='{.status.readyReplicas}')" = 1
check "service has a cluster IP" test -n "$(kubectl get svc demo-svc -o jsonpath='{.spec.clusterIP}')"

out=$(timeout 120 $HELM upgrade demo "$CHART" --set goal=0.9 --set replicas=2 --wait --timeout 90s 2>&1)
check "upgrade: deployed revision 2" bash -c "echo '$out' | grep -q 'REVISION: 2'"
check "upgrade patched the configmap" test "$(kubectl get cm demo-cfg -o jsonpath='{.data.goal}')" = 0.9
check "upgrade patched the custom resource" test "$(kubectl get wd demo-w -o jsonpath='{.spec.goal}')" = 0.9
check "upgrade scaled the deployment" test "$(kubectl get deploy demo-app -o jsonpath='{.status.readyReplicas}')" = 2
check "list shows the release" bash -c "$HELM list | grep -q '^demo.*deployed'"
h=$($HELM history demo 2>&1)
check "history: superseded then deployed" bash -c "echo '$h' | grep -q '^1.*superseded' && echo '$h' | grep -q '^2.*deployed'"

check "uninstall" timeout 60 $HELM uninstall demo --wait --timeout 50s
eventually 20 "no release secrets left" bash -c "[ -z \"\$(kubectl get secrets -l owner=helm -o name)\" ]"
eventually 20 "no chart objects left" bash -c "[ -z \"\$(kubectl get cm,deploy,svc,wd -o name | grep demo)\" ]"
eventually 20 "no pods left" bash -c "[ -z \"\$(kubectl get pods -o name)\" ]"
kl_done
