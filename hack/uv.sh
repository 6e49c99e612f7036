#!/usr/bin/env bash
# Runs the pinned uv, installing it into the cache outside the checkout on first use.
set -euo pipefail
UV_VERSION=0.13.8
cache="${KT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-transcode}"
venv="$cache/uv-$UV_VERSION"
if [[ ! -x "$venv/bin/uv" ]]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
fi
export UV_CACHE_DIR="$cache/uv-cache" UV_PYTHON_DOWNLOADS=never
exec "$venv/bin/uv" "$@"
