"""Where a pool's workers run: spot preference or requirement, and the worker Pod template.

Pure. The pool's template is merged over the operator's default template (the chart's worker
settings, KT_WORKER_TEMPLATE), then the fields the pool itself decides are set.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

Capacity = Literal["Spot", "SpotOnly", "OnDemand"]
WORKER_CONTAINER: Final = "worker"
DEFAULT_WORKER_COMMAND: Final = ("kube-transcode-worker",)

# Node labels that mark spot capacity on Karpenter, EKS, GKE and AKS.
SPOT_NODE_LABELS: Final[tuple[tuple[str, str], ...]] = (
    ("karpenter.sh/capacity-type", "spot"),
    ("eks.amazonaws.com/capacityType", "SPOT"),
    ("cloud.google.com/gke-spot", "true"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
)
# The taints AKS and GKE put on spot nodes.
SPOT_TOLERATIONS: Final[tuple[dict[str, str], ...]] = (
    {
        "key": "kubernetes.azure.com/scalesetpriority",
        "operator": "Equal",
        "value": "spot",
        "effect": "NoSchedule",
    },
    {
        "key": "cloud.google.com/gke-spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    },
)


def spot_affinity(required: bool) -> dict[str, Any]:
    """Prefer (or require) a node carrying any one of the spot capacity labels."""
    terms = [
        {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
        for key, value in SPOT_NODE_LABELS
    ]
    if required:
        # Terms are ORed: any spot label will do.
        return {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
            }
        }
    preferred = [{"weight": 100, "preference": term} for term in terms]
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}


def place(pod_spec: dict[str, Any], capacity: Capacity, *, own_affinity: bool) -> None:
    """Add the capacity's affinity (unless the pool's template brings one) and tolerations."""
    if capacity == "OnDemand":
        return
    if not own_affinity:
        pod_spec["affinity"] = spot_affinity(required=capacity == "SpotOnly")
    tolerations = list(pod_spec.get("tolerations") or [])
    tolerations += [dict(t) for t in SPOT_TOLERATIONS if t not in tolerations]
    pod_spec["tolerations"] = tolerations


def _merge_by_name(
    base: Sequence[Mapping[str, Any]], overlay: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Items of both lists keyed by `name`; the overlay's win, new ones are appended."""
    merged = [dict(item) for item in base]
    index = {item.get("name"): position for position, item in enumerate(merged)}
    for item in overlay:
        position = index.get(item.get("name"))
        if position is None:
            merged.append(dict(item))
        else:
            merged[position] = dict(item)
    return merged


def _merge_container(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**copy.deepcopy(dict(base)), **copy.deepcopy(dict(overlay))}
    if "env" in base and "env" in overlay:
        merged["env"] = _merge_by_name(base["env"], overlay["env"])
    return merged


def merge_pod_spec(default: Mapping[str, Any], pool: Mapping[str, Any]) -> dict[str, Any]:
    """The pool's Pod spec over the default one; containers merge by name, other fields replace."""
    merged = {**copy.deepcopy(dict(default)), **copy.deepcopy(dict(pool))}
    base_containers = {c.get("name"): c for c in default.get("containers") or []}
    containers = []
    for container in pool.get("containers") or []:
        base = base_containers.pop(container.get("name"), None)
        containers.append(_merge_container(base, container) if base else copy.deepcopy(container))
    # Default containers the pool does not mention stay, first.
    merged["containers"] = [copy.deepcopy(c) for c in base_containers.values()] + containers
    if not merged["containers"]:
        merged["containers"] = [{"name": WORKER_CONTAINER}]
    return merged


def worker_pod_template(
    default: Mapping[str, Any],
    pool_template: Mapping[str, Any],
    *,
    labels: Mapping[str, str],
    queue: str,
    capacity: Capacity,
    grace_seconds: int,
) -> dict[str, Any]:
    """The complete Pod template of a pool's Deployment."""
    default_meta = default.get("metadata") or {}
    pool_meta = pool_template.get("metadata") or {}
    spec = merge_pod_spec(default.get("spec") or {}, pool_template.get("spec") or {})
    own_affinity = "affinity" in (pool_template.get("spec") or {})
    place(spec, capacity, own_affinity=own_affinity)
    # Workers hold no Kubernetes credentials: spot nodes never carry cluster write access.
    spec["automountServiceAccountToken"] = False
    spec["terminationGracePeriodSeconds"] = grace_seconds
    worker = _worker_container(spec["containers"])
    worker.setdefault("command", list(DEFAULT_WORKER_COMMAND))
    worker["env"] = _merge_by_name(worker.get("env") or [], [{"name": "KT_QUEUE", "value": queue}])
    metadata: dict[str, Any] = {
        "labels": {**default_meta.get("labels", {}), **pool_meta.get("labels", {}), **labels}
    }
    annotations = {**default_meta.get("annotations", {}), **pool_meta.get("annotations", {})}
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": spec}


def _worker_container(containers: list[dict[str, Any]]) -> dict[str, Any]:
    """The container named worker, else the first one."""
    return next((c for c in containers if c.get("name") == WORKER_CONTAINER), containers[0])
