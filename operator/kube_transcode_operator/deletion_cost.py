"""Which worker Pods a scale-in may remove: `controller.kubernetes.io/pod-deletion-cost`.

The ReplicaSet controller removes Pods of lower cost first (after unscheduled, pending and
unready ones). The autoscaler keeps the annotation current on every worker Pod of a pool, busy
high and idle low, before it ever lowers replicas, and never lowers them below the number of
busy workers: so a scale-in takes idle workers only.

A worker is busy when a TranscodeJob says it runs there (phase Running, status.worker = the
Pod's name): the worker's own events, as the operator recorded them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

DELETION_COST: Final = "controller.kubernetes.io/pod-deletion-cost"
BUSY_COST: Final = "10000"
IDLE_COST: Final = "0"


@dataclass(frozen=True)
class WorkerPod:
    name: str
    phase: str
    ready: bool
    unschedulable: bool
    terminating: bool
    cost: str | None

    @classmethod
    def from_body(cls, pod: Mapping[str, Any]) -> WorkerPod:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        scheduled = conditions.get("PodScheduled") or {}
        return cls(
            name=str(meta.get("name")),
            phase=str(status.get("phase") or "Pending"),
            ready=(conditions.get("Ready") or {}).get("status") == "True",
            unschedulable=scheduled.get("status") == "False"
            and scheduled.get("reason") == "Unschedulable",
            terminating=meta.get("deletionTimestamp") is not None,
            cost=(meta.get("annotations") or {}).get(DELETION_COST),
        )


def cost_changes(pods: Iterable[WorkerPod], busy: set[str]) -> dict[str, str]:
    """Pod name -> the cost it should carry, for Pods whose annotation is not that yet."""
    changes: dict[str, str] = {}
    for pod in pods:
        if pod.terminating:
            continue
        want = BUSY_COST if pod.name in busy else IDLE_COST
        if pod.cost != want:
            changes[pod.name] = want
    return changes


def busy_workers(pods: Iterable[WorkerPod], running_on: set[str]) -> set[str]:
    """The pool's live Pods that a running job names as its worker."""
    return {pod.name for pod in pods if pod.name in running_on and not pod.terminating}
