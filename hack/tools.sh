#!/usr/bin/env bash
# Builds the pinned Go tools (tools/*/go.mod) once into a cache outside the checkout.
# A tool set is rebuilt only when its go.mod, go.sum or this script changes.
# Usage: hack/tools.sh [kubernetes|etcd|helm|minio ...]   (default: all)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-transcode}"
bin="$cache/bin"
export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gobuild" GOFLAGS=-modcacherw
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$bin"

k8s_ldflags() {
  local v; v="$(cd "$root/tools/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  [[ "$v" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "tools: cannot read the Kubernetes version" >&2; exit 1; }
  local major="${v#v}"; major="${major%%.*}"
  local minor="${v#v*.}"; minor="${minor%%.*}"
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

build_set() {
  local name="$1" dir="$root/tools/$1"
  local stamp; stamp="$(cat "$dir/go.mod" "$dir/go.sum" "$0" | sha256sum | cut -c1-16)"
  if [[ -f "$bin/.$name.stamp" && "$(cat "$bin/.$name.stamp")" == "$stamp" ]]; then
    echo "tools: $name up to date"; return
  fi
  echo "tools: building $name (cold builds take minutes; log in $cache/build-$name.log)"
  local start=$SECONDS ldflags="-s -w" tags=""
  if [[ "$name" == kubernetes ]]; then ldflags="$(k8s_ldflags)"; tags="selinux,notest"; fi
  local pkgs; pkgs="$(awk '/^tool \(/{t=1;next} t&&/^\)/{t=0} t{print $1} /^tool [^(]/{print $2}' "$dir/go.mod")"
  # A set with one tool names its binary after the set (etcd's main package is ".../server/v3").
  local out="$bin/"; [[ $(wc -w <<<"$pkgs") -eq 1 ]] && out="$bin/$name"
  # shellcheck disable=SC2086
  (cd "$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out" $pkgs) \
    >"$cache/build-$name.log" 2>&1 || { tail -40 "$cache/build-$name.log"; exit 1; }
  echo "$stamp" >"$bin/.$name.stamp"
  echo "tools: $name built in $((SECONDS - start)) s"
}

sets=("$@")
[[ ${#sets[@]} -gt 0 ]] || sets=(kubernetes etcd helm minio)
for s in "${sets[@]}"; do build_set "$s"; done
