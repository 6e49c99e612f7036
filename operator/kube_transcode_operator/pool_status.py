"""A WorkerPool's status from what one autoscaler tick read and decided.

Pure, like status.py for jobs: each function returns a merge patch for `.status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kube_transcode_operator import autoscale
from kube_transcode_operator.autoscale import Decision, QueueDepth
from kube_transcode_operator.conditions import parse_timestamp, set_condition, timestamp
from kube_transcode_operator.deletion_cost import WorkerPod
from kube_transcode_operator.pools import PoolSpec
from kube_transcode_operator.status import StatusPatch


@dataclass(frozen=True)
class PoolReading:
    """What a tick read: the pool's queue, its Pods and its Deployment."""

    queue: str
    depth: QueueDepth
    busy: int
    pods: tuple[WorkerPod, ...]
    deployment: Mapping[str, Any]

    @property
    def replicas(self) -> int:
        """What the Deployment asks for now (spec.replicas)."""
        return int((self.deployment.get("spec") or {}).get("replicas") or 0)

    @property
    def ready_replicas(self) -> int:
        return int((self.deployment.get("status") or {}).get("readyReplicas") or 0)

    @property
    def unschedulable(self) -> int:
        return sum(1 for pod in self.pods if pod.unschedulable and not pod.terminating)


@dataclass(frozen=True)
class Plan:
    demand: int
    # When demand last changed: the scale-down cooldown counts from there.
    demand_since: datetime
    decision: Decision


def plan(status: Mapping[str, Any], reading: PoolReading, spec: PoolSpec, now: datetime) -> Plan:
    """The autoscaler's decision for this tick, with the demand it keeps in status."""
    demand = autoscale.demand_replicas(reading.depth, spec)
    since = autoscale.demand_since(
        status.get("demandReplicas"), parse_timestamp(status.get("demandSince")), demand, now
    )
    decision = autoscale.decide_replicas(
        reading.depth, reading.busy, reading.replicas, spec, since, now
    )
    return Plan(demand, since, decision)


def scaled(decision: Decision, now: datetime) -> StatusPatch:
    return {
        "lastScaleTime": timestamp(now),
        "lastScaleReason": decision.reason,
        "lastScaleMessage": decision.message,
    }


def queue_unreachable(
    status: Mapping[str, Any], *, error: str, generation: int, now: datetime
) -> StatusPatch:
    conditions = set_condition(
        status.get("conditions") or [], "QueueReachable", "False", "BrokerUnavailable", error,
        generation=generation, now=now,
    )  # fmt: skip
    return {"conditions": conditions}


def observed(
    status: Mapping[str, Any],
    *,
    reading: PoolReading,
    plan: Plan,
    moved: int,
    generation: int,
    now: datetime,
) -> StatusPatch:
    """What the tick saw and decided; only the fields that differ from `status`."""
    wanted = _observed(status, reading, plan, generation, now)
    if moved:
        wanted["movedToOnDemand"] = int(status.get("movedToOnDemand") or 0) + moved
    return {key: value for key, value in wanted.items() if status.get(key) != value}


def _observed(
    status: Mapping[str, Any], reading: PoolReading, plan: Plan, generation: int, now: datetime
) -> dict[str, Any]:
    desired = plan.decision.replicas
    return {
        "queue": reading.queue,
        "queueDepth": {
            "ready": reading.depth.ready,
            "unacknowledged": reading.depth.unacknowledged,
            "busyWorkers": reading.busy,
        },
        "replicas": int((reading.deployment.get("status") or {}).get("replicas") or 0),
        "readyReplicas": reading.ready_replicas,
        "unschedulableReplicas": reading.unschedulable,
        "desiredReplicas": desired,
        "demandReplicas": plan.demand,
        "demandSince": timestamp(plan.demand_since),
        "observedGeneration": generation,
        "conditions": _conditions(status, reading, desired, generation, now),
    }


def _conditions(
    status: Mapping[str, Any], reading: PoolReading, desired: int, generation: int, now: datetime
) -> list[dict[str, Any]]:
    ready, unschedulable = reading.ready_replicas, reading.unschedulable
    available = ready >= desired
    conditions = set_condition(
        status.get("conditions") or [], "QueueReachable", "True", "Connected",
        f"reading {reading.queue}", generation=generation, now=now,
    )  # fmt: skip
    conditions = set_condition(
        conditions, "Available", "True" if available else "False",
        "Ready" if available else "WorkersStarting", f"{ready} of {desired} workers ready",
        generation=generation, now=now,
    )  # fmt: skip
    return set_condition(
        conditions, "Schedulable", "False" if unschedulable else "True",
        "Unschedulable" if unschedulable else "Scheduled",
        f"{unschedulable} workers found no node" if unschedulable else "every worker has a node",
        generation=generation, now=now,
    )  # fmt: skip
