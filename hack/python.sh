#!/usr/bin/env bash
# The project's Python environment (.venv) from requirements/dev.txt, hashes required.
# Skipped when nothing changed since the last run; safe to run any number of times.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
stamp_file=.venv/.kube-transcode-stamp
stamp="$(cat requirements/dev.txt pyproject.toml | sha256sum | cut -c1-16)"
if [[ -x .venv/bin/python && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
  exit 0
fi
[[ -x .venv/bin/python ]] || hack/uv.sh venv --quiet --python python3 .venv
hack/uv.sh pip sync --quiet --python .venv/bin/python --require-hashes requirements/dev.txt
hack/uv.sh pip install --quiet --python .venv/bin/python --no-deps -e .
echo "$stamp" >"$stamp_file"
