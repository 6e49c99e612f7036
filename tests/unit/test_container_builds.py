"""What can be checked of the container path without a container engine: the Dockerfiles
(hadolint, non-root, pinned bases) and the kind cluster's shape."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kube_transcode_devstack.nodeagent.nodes import DEFAULT_SPOT_TAINTS

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "operator" / "Dockerfile", ROOT / "worker" / "Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(__file__).parents[2] / ".venv/bin/hadolint")
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_runs_as_non_root_from_pinned_bases(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, "the image must set USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        assert re.search(r":\d+\.\d+\.\d+", base), f"{base} is not pinned to a full version"
    assert "--require-hashes" in text, "dependencies are installed from the lock, with hashes"


def test_kind_cluster_has_a_spot_node_tainted_like_the_local_stack() -> None:
    cluster = yaml.safe_load((ROOT / "hack" / "kind" / "cluster.yaml").read_text())
    workers = [n for n in cluster["nodes"] if n["role"] == "worker"]
    spot = [n for n in workers if n["labels"].get("karpenter.sh/capacity-type") == "spot"]
    ondemand = [n for n in workers if n["labels"].get("karpenter.sh/capacity-type") == "on-demand"]
    assert len(spot) == 1 and len(ondemand) == 1
    patch = yaml.safe_load(spot[0]["kubeadmConfigPatches"][0])
    taints = {f"{t['key']}={t['value']}:{t['effect']}" for t in patch["nodeRegistration"]["taints"]}
    assert taints == set(DEFAULT_SPOT_TAINTS)
