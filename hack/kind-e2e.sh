#!/usr/bin/env bash
# End-to-end check of the released artefacts on kind: builds both images
# with Docker, loads them into a kind cluster, installs the Helm chart,
# applies the Fashion-MNIST sample, waits for condition GoalReached, then
# port-forwards the job's Service and posts a prediction to
# /v1/models/fashion-mnist:predict.
#
# Needs Docker, kind, kubectl and helm; not run in CI (ctest does not run
# it). Takes tens of minutes (real training on Fashion-MNIST).
#   KILN_E2E_CLUSTER=name   cluster name (default kiln-e2e)
#   KILN_E2E_KEEP=1         keep the cluster afterwards
#   KILN_E2E_TIMEOUT=45m    how long to wait for GoalReached
. "$(dirname "$0")/e2e-lib.sh"
cluster=${KILN_E2E_CLUSTER:-kiln-e2e}
need docker kind kubectl helm curl

cluster_up() {
  kind get clusters 2>/dev/null | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 3m
  kubectl config use-context "kind-$cluster"
}
load_image() { kind load docker-image "$1" --name "$cluster"; }
cluster_down() { kind delete cluster --name "$cluster"; }

e2e_main
