"""Spot capacity gone: urgent jobs that waited too long move to an on-demand pool's queue.

Mechanism (one, in the operator): when some of a spot pool's Pods are Unschedulable and a job
of a fallback priority has been Queued longer than afterSeconds, the operator takes that job's
message out of the spot queue (basic.get, manual ack), publishes the very same message (same
job, generation and attempt, same priority) to the fallback pool's queue with a publisher
confirm, and only then acks it from the spot queue (queue_depth.QueueInspector.move). A job a
spot worker took in the meantime is simply not found in the queue and stays where it runs.
Workers need no change and see no stale copies. The job's status then says
Queued/MovedToOnDemand and names the new queue (status.published.queue), so the fallback
pool's autoscaler counts it as its own.

This module is the pure part: which jobs, and the status patch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from kube_transcode_operator.conditions import find_condition, parse_timestamp, set_condition
from kube_transcode_operator.deletion_cost import WorkerPod
from kube_transcode_operator.pools import OnDemandFallback
from kube_transcode_operator.status import KubeEvent, StatusPatch

MOVED_REASON: Final = "MovedToOnDemand"
MAX_MOVES_PER_TICK: Final = 20


@dataclass(frozen=True)
class JobView:
    """What the pool timers need of a TranscodeJob (kept in a kopf index by queue)."""

    uid: str
    namespace: str
    name: str
    phase: str
    priority: str
    worker: str | None
    waiting_since: datetime | None
    # A chunked job's: every worker encoding one of its parts now.
    part_workers: frozenset[str] = frozenset()

    @classmethod
    def from_body(
        cls, meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
    ) -> tuple[str, JobView] | None:
        """(queue, view) for a job with a message in some queue; None for others."""
        queue = (status.get("published") or {}).get("queue")
        if not queue:
            return None
        queued = find_condition(status.get("conditions") or [], "Queued") or {}
        since = parse_timestamp(queued.get("lastTransitionTime"))
        view = cls(
            uid=str(meta.get("uid")),
            namespace=str(meta.get("namespace")),
            name=str(meta.get("name")),
            phase=str(status.get("phase") or ""),
            priority=str(spec.get("priority") or "normal"),
            worker=status.get("worker"),
            waiting_since=since if queued.get("status") == "True" else None,
            part_workers=frozenset((status.get("chunks") or {}).get("workers") or ()),
        )
        return queue, view


def running_workers(jobs: Iterable[JobView]) -> set[str]:
    """The workers busy with a Running job: its worker, and a chunked job's part workers."""
    busy: set[str] = set()
    for job in jobs:
        if job.phase == "Running":
            busy |= job.part_workers | ({job.worker} if job.worker else set())
    return busy


def capacity_missing(pods: Iterable[WorkerPod]) -> bool:
    """The scheduler found no node for some of the pool's Pods."""
    return any(pod.unschedulable and not pod.terminating for pod in pods)


def jobs_to_move(
    jobs: Iterable[JobView], fallback: OnDemandFallback, now: datetime
) -> dict[str, JobView]:
    """uid -> job: Queued jobs of a fallback priority that waited longer than afterSeconds."""
    due: dict[str, JobView] = {}
    for job in jobs:
        if job.phase != "Queued" or job.priority not in fallback.priorities:
            continue
        if job.waiting_since is None:
            continue
        if (now - job.waiting_since).total_seconds() >= fallback.after_seconds:
            due[job.uid] = job
    return due


def moved_status(
    status: Mapping[str, Any], *, source: str, target: str, pool: str, waited: float, now: datetime
) -> tuple[StatusPatch, KubeEvent]:
    generation = int(status.get("observedGeneration") or 1)
    message = (
        f"no spot capacity for {waited:.0f}s: moved from queue {source} to {target} "
        f"(pool {pool}), same attempt"
    )
    conditions = set_condition(
        status.get("conditions") or [],
        "Queued",
        "True",
        MOVED_REASON,
        message,
        generation=generation,
        now=now,
    )
    published = dict(status.get("published") or {})
    published["queue"] = target
    patch: StatusPatch = {"message": message, "conditions": conditions, "published": published}
    return patch, KubeEvent("Normal", MOVED_REASON, message)
