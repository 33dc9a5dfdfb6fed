#!/usr/bin/env bash
# End-to-end check of the released artefacts on minikube: builds both
# images with Docker, loads them into a minikube profile, installs the Helm
# chart, applies the Fashion-MNIST sample, waits for condition GoalReached,
# then port-forwards the job's Service and posts a prediction to
# /v1/models/fashion-mnist:predict.
#
# Needs Docker, minikube, kubectl and helm; not run in CI (ctest does not
# run it). Takes tens of minutes (real training on Fashion-MNIST).
#   KILN_E2E_CLUSTER=name   minikube profile (default kiln-e2e)
#   KILN_E2E_KEEP=1         keep the profile afterwards
#   KILN_E2E_TIMEOUT=45m    how long to wait for GoalReached
. "$(dirname "$0")/e2e-lib.sh"
profile=${KILN_E2E_CLUSTER:-kiln-e2e}
need docker minikube kubectl helm curl

cluster_up() {
  minikube status -p "$profile" >/dev/null 2>&1 || minikube start -p "$profile" --driver=docker --cpus=2 --memory=4g
  kubectl config use-context "$profile"
}
load_image() { minikube image load "$1" -p "$profile"; }
cluster_down() { minikube delete -p "$profile"; }

e2e_main
