"""WorkerPool handlers: the pool's Deployment, and the autoscaler timer.

The timer is level-based: every tick it reads the queue (AMQP), the pool's Pods and its
Deployment, keeps the Pods' deletion costs current, sets replicas, moves waiting urgent jobs
when spot capacity is missing, and writes what it saw to the pool's status. The pieces:
autoscale and pool_status (pure), pool_cluster (Kubernetes), queue_depth (RabbitMQ).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import kopf

from kube_transcode.messages import job_queue_name, pool_of_queue
from kube_transcode_operator import fallback, metrics, pool_status
from kube_transcode_operator.amqp_link import BrokerUnavailableError
from kube_transcode_operator.autoscale import Decision
from kube_transcode_operator.deletion_cost import WorkerPod, busy_workers, cost_changes
from kube_transcode_operator.fallback import JobView
from kube_transcode_operator.jobstore import ConflictError
from kube_transcode_operator.pool_cluster import DeploymentChangedError, InvalidDeploymentError
from kube_transcode_operator.pool_status import PoolReading
from kube_transcode_operator.pools import PoolSpec, build_deployment, deployment_name
from kube_transcode_operator.runtime import Runtime, runtime_of
from kube_transcode_operator.status import KubeEvent, StatusPatch

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
log = logging.getLogger(__name__)
RETRY_SECONDS: Final = 2


def index_job(
    meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
) -> dict[str, JobView]:
    """For the `pool_jobs` index: queue -> the job, while it has a message somewhere."""
    found = JobView.from_body(meta, spec, status)
    if found is None or status.get("phase") not in ("Queued", "Running"):
        return {}  # an empty mapping (not None) removes the job from the index
    queue, view = found
    return {queue: view}


async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: Logger) -> None:
    """Create the pool's Deployment, or bring its template up to date; replicas untouched."""
    runtime = runtime_of(memo)
    name, namespace = str(body.meta.name), str(body.meta.namespace)
    spec = PoolSpec.from_body(body.spec)
    wanted = build_deployment(
        name, namespace, spec, runtime.settings.worker_template, replicas=spec.min_replicas
    )
    kopf.adopt(wanted, owner=body)
    queue = spec.queue_of(name)
    metrics.JOBS.know_pool(pool_of_queue(queue))
    try:
        await runtime.queues.ready(queue)  # declares the queue: it exists from now on
    except BrokerUnavailableError as error:
        logger.warning("cannot declare queue %s yet: %s", queue, error)
    try:
        await runtime.pools.apply_deployment(wanted)
    except InvalidDeploymentError as error:  # the merged template: only a spec change helps
        raise kopf.PermanentError(f"invalid worker Deployment: {error}") from error
    except DeploymentChangedError as error:
        raise kopf.TemporaryError("the Deployment changed meanwhile", delay=1) from error
    logger.info("deployment %s serves queue %s", wanted["metadata"]["name"], queue)


async def autoscale_tick(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    pool_jobs: kopf.Index[str, JobView],
    logger: Logger,
) -> None:
    runtime = runtime_of(memo)
    now = datetime.now(UTC)
    spec, status = PoolSpec.from_body(body.spec), dict(body.status)
    generation = int(body.meta["generation"])
    queue = spec.queue_of(str(body.meta.name))
    jobs = list(pool_jobs.get(queue, []))
    try:
        reading = await _read(runtime, body, queue, jobs)
    except BrokerUnavailableError as error:
        patch.status.update(
            pool_status.queue_unreachable(status, error=str(error), generation=generation, now=now)
        )
        raise kopf.TemporaryError(
            f"cannot read queue {queue}: {error}", delay=RETRY_SECONDS
        ) from error
    plan = pool_status.plan(status, reading, spec, now)
    if plan.decision.changes(reading.replicas):
        await _scale(runtime, body, reading.replicas, plan.decision, logger)
        patch.status.update(pool_status.scaled(plan.decision, now))
    runtime.queue_metrics.observe(
        pool_of_queue(queue), reading.depth, desired=plan.decision.replicas,
        ready=reading.ready_replicas,
    )  # fmt: skip
    moved = await _fall_back(runtime, spec, reading, jobs, now, logger)
    patch.status.update(
        pool_status.observed(
            status, reading=reading, plan=plan, moved=moved, generation=generation, now=now
        )
    )


async def _read(runtime: Runtime, body: kopf.Body, queue: str, jobs: list[JobView]) -> PoolReading:
    """The pool's Deployment, Pods and queue. The Pods' deletion costs are made current on the
    way, before the queue is read: the ReplicaSet must know who is busy before a scale-in."""
    name, namespace = str(body.meta.name), str(body.meta.namespace)
    deployment = await runtime.pools.deployment(namespace, deployment_name(name))
    if deployment is None:
        raise kopf.TemporaryError("the pool's Deployment does not exist yet", delay=RETRY_SECONDS)
    pods = tuple(WorkerPod.from_body(pod) for pod in await runtime.pools.pods(namespace, name))
    busy = busy_workers(pods, fallback.running_workers(jobs))
    await runtime.pools.set_costs(namespace, cost_changes(pods, busy))
    depth = await runtime.queues.depth(queue, len(busy))
    return PoolReading(queue, depth, len(busy), pods, deployment)


async def _scale(
    runtime: Runtime, body: kopf.Body, current: int, decision: Decision, logger: Logger
) -> None:
    name = deployment_name(str(body.meta.name))
    await runtime.pools.scale(str(body.meta.namespace), name, decision.replicas)
    logger.info("scaled %s -> %s: %s", current, decision.replicas, decision.message)
    await runtime.events.emit(body, KubeEvent("Normal", decision.reason, decision.message))


async def _fall_back(
    runtime: Runtime,
    spec: PoolSpec,
    reading: PoolReading,
    jobs: list[JobView],
    now: datetime,
    logger: Logger,
) -> int:
    """Urgent jobs that waited too long move to the on-demand pool's queue (see fallback.py)."""
    rule = spec.on_demand_fallback
    if rule is None or not fallback.capacity_missing(reading.pods):
        return 0
    due = fallback.jobs_to_move(jobs, rule, now)
    if not due:
        return 0
    target = await runtime.pools.pool_queue(rule.pool, job_queue_name(rule.pool))
    moved = await runtime.queues.move(reading.queue, target, set(due), fallback.MAX_MOVES_PER_TICK)
    for item in moved:
        job = due[item.job.uid]
        waited = (now - job.waiting_since).total_seconds() if job.waiting_since else 0.0
        logger.info("moved job %s/%s to %s after %.0fs", job.namespace, job.name, target, waited)
        await asyncio.to_thread(
            _record_move, runtime, job, source=reading.queue, target=target, pool=rule.pool,
            waited=waited,
        )  # fmt: skip
    return len(moved)


def _record_move(
    runtime: Runtime, job: JobView, *, source: str, target: str, pool: str, waited: float
) -> None:
    """The job's status names its new queue, and an Event says why it moved."""
    events: list[KubeEvent] = []

    def change(body: dict[str, Any]) -> StatusPatch:
        update, event = fallback.moved_status(
            body.get("status") or {}, source=source, target=target, pool=pool,
            waited=waited, now=datetime.now(UTC),
        )  # fmt: skip
        events.append(event)
        return update

    try:
        body = runtime.jobs.update_status(job, change)
    except ConflictError as error:
        log.warning(
            "moved %s/%s, but its status says otherwise: %s", job.namespace, job.name, error
        )
        return
    if body is not None:
        runtime.events.post(body, events[-1])
