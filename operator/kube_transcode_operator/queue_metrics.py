"""Queue depth, dead letters and replicas per pool for /metrics: read on a timer, and taken
from the autoscaler's ticks. `QueueMetrics` is the one writer of metrics.POOLS.

Per pool `p`: the broker's ready messages in `transcode.<p>` and in `transcode.<p>.dead` (a
passive declare through the operator's one queue reader, queue_depth.QueueInspector: AMQP
tells the ready count, not the unacknowledged one; `unacked` stays unset unless the
autoscaler's reading supplies it), and the worker Deployments labelled
`kubetranscode.io/pool=<p>` in the operator's namespace (spec.replicas is what the autoscaler
asked for, status.readyReplicas what runs). The pools are those of the TranscodeJobs seen and
of those Deployments. Depth by priority is not the broker's to tell: see metric_names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import kubernetes

from kube_transcode.messages import dead_letter_name, job_queue_name
from kube_transcode.metric_names import POOL_POD_LABEL
from kube_transcode_operator import metrics
from kube_transcode_operator.amqp_link import BrokerUnavailableError
from kube_transcode_operator.autoscale import QueueDepth
from kube_transcode_operator.credentials import service_account_dir
from kube_transcode_operator.metrics import PoolFigure
from kube_transcode_operator.pool_cluster import PoolCluster
from kube_transcode_operator.queue_depth import QueueInspector

log = logging.getLogger(__name__)
Replicas = dict[str, tuple[int, int]]


def figures(
    pools: Iterable[str],
    depths: Mapping[str, int | None],
    replicas: Mapping[str, tuple[int, int]],
    unacked: Mapping[str, int] | None = None,
) -> dict[str, PoolFigure]:
    """One PoolFigure per pool from what was read; `depths` is keyed by queue name."""
    result = {}
    for pool in sorted(set(pools) | set(replicas)):
        desired, ready = replicas.get(pool, (None, None))
        result[pool] = PoolFigure(
            ready=depths.get(job_queue_name(pool)),
            unacked=(unacked or {}).get(pool),
            dead_letters=depths.get(dead_letter_name(job_queue_name(pool))),
            desired_replicas=desired,
            ready_replicas=ready,
        )
    return result


def replicas_by_pool(deployments: Iterable[Any]) -> Replicas:
    """(spec.replicas, status.readyReplicas) summed per pool label of the Deployments."""
    totals: Replicas = {}
    for deployment in deployments:
        pool = (deployment.metadata.labels or {}).get(POOL_POD_LABEL)
        if not pool:
            continue
        desired = deployment.spec.replicas if deployment.spec.replicas is not None else 1
        ready = (deployment.status.ready_replicas if deployment.status else None) or 0
        before = totals.get(pool, (0, 0))
        totals[pool] = (before[0] + desired, before[1] + ready)
    return totals


def own_namespace() -> str | None:
    folder = service_account_dir()
    namespace_file = folder / "namespace" if folder else Path("/nonexistent")
    return namespace_file.read_text().strip() if namespace_file.exists() else None


class QueueMetrics:
    """An asyncio task that refreshes metrics.POOLS every `interval` seconds (0: never), and
    the autoscaler's fresher figures of one pool at each tick (`observe`)."""

    def __init__(
        self,
        queues: QueueInspector,
        cluster: PoolCluster,
        interval: float,
        namespace: str | None,
        known_pools: Callable[[], set[str]] = metrics.JOBS.pools,
    ) -> None:
        self._queues = queues
        self._cluster = cluster
        self._interval = interval
        self._namespace = namespace
        self._known_pools = known_pools
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._interval > 0:
            self._task = asyncio.create_task(self._run(), name="queue-metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def observe(self, pool: str, depth: QueueDepth, *, desired: int, ready: int) -> None:
        """A pool's figures as an autoscaler tick just read and decided them."""
        metrics.POOLS.observe(
            pool,
            ready=depth.ready,
            unacknowledged=depth.unacknowledged,
            desired_replicas=desired,
            ready_replicas=ready,
        )

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("queue metrics poll failed")
            await asyncio.sleep(self._interval)

    async def poll(self) -> None:
        replicas: Replicas = {}
        if self._namespace:
            try:
                replicas = replicas_by_pool(await self._cluster.worker_deployments(self._namespace))
            except (kubernetes.client.ApiException, OSError) as error:
                log.warning("cannot read the worker Deployments: %s", error)
        pools = self._known_pools() | set(replicas)
        queues = [name for pool in pools for name in _queues(pool)]
        broker_up = True
        try:
            depths = await self._queues.depths(queues)
        except BrokerUnavailableError as error:
            log.warning("cannot read queue depths: %s", error)
            depths, broker_up = {}, False
        metrics.POOLS.update(figures(pools, depths, replicas), broker_up=broker_up)


def _queues(pool: str) -> tuple[str, str]:
    queue = job_queue_name(pool)
    return queue, dead_letter_name(queue)
