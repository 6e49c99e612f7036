#!/usr/bin/env bash
# For machines with Docker: a kind cluster with a spot and an on-demand node, the operator and
# worker images built and loaded, development RabbitMQ and MinIO, and the chart installed.
# Untested on this project's own machines, which have no container engine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${KT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-transcode}/bin"
cluster=kube-transcode
docker info >/dev/null 2>&1 || { echo "kind-up: Docker is not running here; use 'make up' (no containers needed)" >&2; exit 1; }
"$root/hack/tools.sh" kind helm kubernetes
export PATH="$bin:$PATH"

kind get clusters 2>/dev/null | grep -qx "$cluster" || kind create cluster --config "$root/hack/kind/cluster.yaml"
export KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}"
kubectl config use-context "kind-$cluster" >/dev/null

for component in operator worker; do
  docker build -t "kube-transcode/$component:dev" -f "$root/$component/Dockerfile" "$root"
  kind load docker-image --name "$cluster" "kube-transcode/$component:dev"
done

kubectl apply -f "$root/hack/kind/services.yaml"
kubectl -n kube-transcode-deps rollout status deployment/rabbitmq deployment/minio --timeout=5m
kubectl -n kube-transcode-deps run make-buckets --rm -i --restart=Never --image=minio/mc:RELEASE.2025-08-13T08-35-41Z \
  --command -- sh -c 'mc alias set local http://minio:9000 kube-transcode kube-transcode-dev && mc mb -p local/kube-transcode local/sources'

helm upgrade --install kube-transcode "$root/charts/kube-transcode" \
  --namespace kube-transcode --create-namespace -f "$root/hack/kind/values.yaml" --wait --timeout 10m
echo "kind-up: ready. kubectl get tj -A; examples in manifests/examples/"
