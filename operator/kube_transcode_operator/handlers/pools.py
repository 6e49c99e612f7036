"""WorkerPool handlers: the pool's Deployment, and the autoscaler timer.

The timer is level-based: every tick it reads the queue (AMQP), the pool's Pods and its
Deployment, keeps the Pods' deletion costs current, sets replicas, moves waiting urgent jobs
when spot capacity is missing, and writes what it saw to the pool's status.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import kopf
import kubernetes

from kube_transcode_operator import autoscale, fallback, metrics
from kube_transcode_operator.amqp_link import BrokerUnavailableError
from kube_transcode_operator.conditions import parse_timestamp, set_condition, timestamp
from kube_transcode_operator.deletion_cost import (
    DELETION_COST,
    WorkerPod,
    busy_workers,
    cost_changes,
)
from kube_transcode_operator.fallback import JobView
from kube_transcode_operator.jobstore import ConflictError, JobStore
from kube_transcode_operator.kube_events import EventPoster
from kube_transcode_operator.pools import (
    PoolSpec,
    build_deployment,
    deployment_name,
    pod_selector,
)
from kube_transcode_operator.queue_depth import (
    ManagementStats,
    QueueInspector,
)
from kube_transcode_operator.runtime import runtime_of
from kube_transcode_operator.status import KubeEvent

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
MEMO_KEY: Final = "pools"
STATUS_RETRIES: Final = 5


@dataclass
class PoolRuntime:
    inspector: QueueInspector
    management: ManagementStats | None
    jobs: JobStore
    events: EventPoster


def _runtime(memo: kopf.Memo) -> PoolRuntime:
    """Built on first use from the operator's settings; closed by `stop`."""
    if MEMO_KEY not in memo:
        shared = runtime_of(memo)
        url = shared.settings.rabbitmq_url.get_secret_value()
        management = shared.settings.rabbitmq_management_url
        memo[MEMO_KEY] = PoolRuntime(
            inspector=QueueInspector(url),
            management=ManagementStats(management, url) if management else None,
            # The operator's own job store and Event poster, not second ones.
            jobs=shared.jobs,
            events=shared.events,
        )
    runtime = memo[MEMO_KEY]
    assert isinstance(runtime, PoolRuntime)
    return runtime


async def stop(memo: kopf.Memo) -> None:
    runtime = memo.get(MEMO_KEY)
    if isinstance(runtime, PoolRuntime):
        await runtime.inspector.close()
        if runtime.management is not None:
            await runtime.management.close()


def index_job(
    meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
) -> dict[str, JobView]:
    """For the `pool_jobs` index: queue -> the job, while it has a message somewhere."""
    found = JobView.from_body(meta, spec, status)
    if found is None or status.get("phase") not in ("Queued", "Running"):
        return {}  # an empty mapping (not None) removes the job from the index
    queue, view = found
    return {queue: view}


# ------------------------------------------------------------------ the Deployment


async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: Logger) -> None:
    """Create the pool's Deployment, or bring its template up to date; replicas untouched."""
    settings = runtime_of(memo).settings
    name, namespace = str(body.meta.name), str(body.meta.namespace)
    spec = PoolSpec.from_body(body.spec)
    wanted = build_deployment(
        name, namespace, spec, settings.worker_template, replicas=spec.min_replicas
    )
    kopf.adopt(wanted, owner=body)
    queue = spec.queue_of(name)
    metrics.JOBS.know_pool(pool_label(queue))
    try:
        await _runtime(memo).inspector.ready(queue)  # declares the queue: it exists from now on
    except BrokerUnavailableError as error:
        logger.warning("cannot declare queue %s yet: %s", queue, error)
    try:
        await asyncio.to_thread(_create_or_update, wanted)
    except kubernetes.client.ApiException as error:
        if error.status == 422:  # the merged template is invalid: only a spec change helps
            raise kopf.PermanentError(
                f"invalid worker Deployment: {_api_message(error)}"
            ) from error
        raise
    logger.info("deployment %s serves queue %s", wanted["metadata"]["name"], queue)


def _create_or_update(wanted: dict[str, Any]) -> None:
    apps = kubernetes.client.AppsV1Api(_client())
    meta = wanted["metadata"]
    try:
        apps.create_namespaced_deployment(meta["namespace"], wanted)  # type: ignore[arg-type]
        return
    except kubernetes.client.ApiException as error:
        if error.status != 409:
            raise
    current = apps.read_namespaced_deployment(meta["name"], meta["namespace"])
    wanted["spec"]["replicas"] = current.spec.replicas
    wanted["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[union-attr]
    try:
        apps.replace_namespaced_deployment(meta["name"], meta["namespace"], wanted)  # type: ignore[arg-type]
    except kubernetes.client.ApiException as error:
        if error.status == 409:
            raise kopf.TemporaryError("the Deployment changed meanwhile", delay=1) from error
        raise


# ------------------------------------------------------------------ the autoscaler


async def autoscale_tick(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    pool_jobs: kopf.Index[str, JobView],
    logger: Logger,
) -> None:
    runtime = _runtime(memo)
    now = datetime.now(UTC)
    name, namespace = str(body.meta.name), str(body.meta.namespace)
    spec = PoolSpec.from_body(body.spec)
    status = dict(body.status)
    queue = spec.queue_of(name)
    deployment = await asyncio.to_thread(_read_deployment, namespace, deployment_name(name))
    if deployment is None:
        raise kopf.TemporaryError("the pool's Deployment does not exist yet", delay=2)
    pods = [WorkerPod.from_body(p) for p in await asyncio.to_thread(_list_pods, namespace, name)]
    jobs = list(pool_jobs.get(queue, []))
    busy = busy_workers(pods, fallback.running_workers(jobs))
    # Costs first: the ReplicaSet must know who is busy before replicas go down.
    await asyncio.to_thread(_set_costs, namespace, cost_changes(pods, busy))
    try:
        ready = await runtime.inspector.ready(queue)
    except BrokerUnavailableError as error:
        patch.status["conditions"] = _condition(
            status, "QueueReachable", "False", "BrokerUnavailable", str(error), body, now
        )
        raise kopf.TemporaryError(f"cannot read queue {queue}: {error}", delay=2) from error
    broker_unacked = await runtime.management.unacknowledged(queue) if runtime.management else None
    depth = autoscale.QueueDepth(ready, max(len(busy), broker_unacked or 0))
    current = int(deployment.get("spec", {}).get("replicas") or 0)
    demand = autoscale.demand_replicas(depth, spec)
    since = autoscale.demand_since(
        status.get("demandReplicas"), parse_timestamp(status.get("demandSince")), demand, now
    )
    decision = autoscale.decide_replicas(depth, len(busy), current, spec, since, now)
    if decision.changes(current):
        await asyncio.to_thread(_scale, namespace, deployment_name(name), decision.replicas)
        logger.info("scaled %s -> %s: %s", current, decision.replicas, decision.message)
        await runtime.events.emit(body, KubeEvent("Normal", decision.reason, decision.message))
        patch.status["lastScaleTime"] = timestamp(now)
        patch.status["lastScaleReason"] = decision.reason
        patch.status["lastScaleMessage"] = decision.message
    metrics.POOLS.observe(
        pool_label(queue),
        ready=depth.ready,
        unacknowledged=depth.unacknowledged,
        desired_replicas=decision.replicas,
        ready_replicas=int(deployment.get("status", {}).get("readyReplicas") or 0),
    )
    moved = await _fall_back(runtime, spec, queue, pods, jobs, now, logger)
    _write_status(patch, status, body, now, queue=queue, depth=depth, busy=len(busy),
                  demand=demand, since=since, decision=decision, deployment=deployment,
                  pods=pods, moved=moved)  # fmt: skip


def pool_label(queue: str) -> str:
    """The pool label jobs carry (spec.pool), from the queue it names: transcode.<pool>."""
    return queue.removeprefix("transcode.")


def _write_status(
    patch: kopf.Patch,
    status: Mapping[str, Any],
    body: kopf.Body,
    now: datetime,
    *,
    queue: str,
    depth: autoscale.QueueDepth,
    busy: int,
    demand: int,
    since: datetime,
    decision: autoscale.Decision,
    deployment: Mapping[str, Any],
    pods: list[WorkerPod],
    moved: int,
) -> None:
    observed = deployment.get("status") or {}
    unschedulable = sum(1 for p in pods if p.unschedulable and not p.terminating)
    conditions = _condition(status, "QueueReachable", "True", "Connected", f"reading {queue}",
                            body, now)  # fmt: skip
    ready = int(observed.get("readyReplicas") or 0)
    available = ready >= decision.replicas
    conditions = set_condition(
        conditions, "Available", "True" if available else "False",
        "Ready" if available else "WorkersStarting",
        f"{ready} of {decision.replicas} workers ready",
        generation=int(body.meta["generation"]), now=now,
    )  # fmt: skip
    conditions = set_condition(
        conditions, "Schedulable", "False" if unschedulable else "True",
        "Unschedulable" if unschedulable else "Scheduled",
        f"{unschedulable} workers found no node" if unschedulable else "every worker has a node",
        generation=int(body.meta["generation"]), now=now,
    )  # fmt: skip
    wanted: dict[str, Any] = {
        "queue": queue,
        "queueDepth": {
            "ready": depth.ready,
            "unacknowledged": depth.unacknowledged,
            "busyWorkers": busy,
        },
        "replicas": int(observed.get("replicas") or 0),
        "readyReplicas": ready,
        "unschedulableReplicas": unschedulable,
        "desiredReplicas": decision.replicas,
        "demandReplicas": demand,
        "demandSince": timestamp(since),
        "observedGeneration": int(body.meta["generation"]),
        "conditions": conditions,
    }
    if moved:
        wanted["movedToOnDemand"] = int(status.get("movedToOnDemand") or 0) + moved
    for key, value in wanted.items():
        if status.get(key) != value:
            patch.status[key] = value


def _condition(
    status: Mapping[str, Any],
    type_: Any,
    value: Any,
    reason: str,
    message: str,
    body: kopf.Body,
    now: datetime,
) -> list[dict[str, Any]]:
    return set_condition(
        status.get("conditions") or [], type_, value, reason, message,
        generation=int(body.meta["generation"]), now=now,
    )  # fmt: skip


# ------------------------------------------------------------------ spot fallback


async def _fall_back(
    runtime: PoolRuntime,
    spec: PoolSpec,
    queue: str,
    pods: Iterable[WorkerPod],
    jobs: Iterable[JobView],
    now: datetime,
    logger: Logger,
) -> int:
    rule = spec.on_demand_fallback
    if rule is None or not fallback.capacity_missing(pods):
        return 0
    due = fallback.jobs_to_move(jobs, rule, now)
    if not due:
        return 0
    target_spec_queue = f"transcode.{rule.pool}"
    target = await asyncio.to_thread(_fallback_queue, rule.pool, target_spec_queue)
    moved = await runtime.inspector.move(queue, target, set(due), fallback.MAX_MOVES_PER_TICK)
    for item in moved:
        job = due[item.job.uid]
        waited = (now - job.waiting_since).total_seconds() if job.waiting_since else 0.0
        logger.info("moved job %s/%s to %s after %.0fs", job.namespace, job.name, target, waited)
        await asyncio.to_thread(
            _record_move, runtime, job, source=queue, target=target, pool=rule.pool, waited=waited
        )
    return len(moved)


def _fallback_queue(pool: str, default: str) -> str:
    """The fallback pool's queue: its spec.queue when it names one (pools are looked up in
    every namespace: a pool's name is global within the vhost)."""
    api = kubernetes.client.CustomObjectsApi(_client())
    found = api.list_cluster_custom_object(
        "kubetranscode.io", "v1alpha1", "workerpools", field_selector=f"metadata.name={pool}"
    )
    items = found.get("items") if isinstance(found, dict) else None
    for item in items or []:
        queue = (item.get("spec") or {}).get("queue")
        if queue:
            return str(queue)
    return default


def _record_move(
    runtime: PoolRuntime, job: JobView, *, source: str, target: str, pool: str, waited: float
) -> None:
    """The job's status names its new queue; conflicts with concurrent event patches retry."""
    for _ in range(STATUS_RETRIES):
        body = runtime.jobs.get(job.namespace, job.name)
        if body is None or body["metadata"]["uid"] != job.uid:
            return
        update, event = fallback.moved_status(
            body.get("status") or {}, source=source, target=target, pool=pool,
            waited=waited, now=datetime.now(UTC),
        )  # fmt: skip
        try:
            runtime.jobs.patch_status(body, update)
        except ConflictError:
            continue
        runtime.events.post(body, event)
        return


# ------------------------------------------------------------------ Kubernetes I/O


@functools.cache
def _client() -> kubernetes.client.ApiClient:
    """One client (one connection pool) for every tick; made after startup loaded the config."""
    return kubernetes.client.ApiClient()


def _read_deployment(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        response = kubernetes.client.AppsV1Api(_client()).read_namespaced_deployment(
            name, namespace, _preload_content=False
        )
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return _json(response)


def _list_pods(namespace: str, pool: str) -> list[dict[str, Any]]:
    response = kubernetes.client.CoreV1Api(_client()).list_namespaced_pod(
        namespace, label_selector=pod_selector(pool), _preload_content=False
    )
    items: list[dict[str, Any]] = _json(response).get("items") or []
    return items


def _api_message(error: kubernetes.client.ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.reason)


def _json(response: Any) -> dict[str, Any]:
    """Raw JSON (`_preload_content=False`): plain dicts, no model round trip."""
    data = json.loads(response.data)
    assert isinstance(data, dict)
    return data


def _set_costs(namespace: str, changes: Mapping[str, str]) -> None:
    core = kubernetes.client.CoreV1Api(_client())
    for pod, cost in changes.items():
        try:
            core.patch_namespaced_pod(
                pod, namespace, {"metadata": {"annotations": {DELETION_COST: cost}}}
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:  # gone meanwhile: nothing to protect
                raise


def _scale(namespace: str, name: str, replicas: int) -> None:
    kubernetes.client.AppsV1Api(_client()).patch_namespaced_deployment(
        name, namespace, {"spec": {"replicas": replicas}}
    )
