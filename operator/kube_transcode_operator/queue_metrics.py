"""Queue depth, dead letters and replicas per pool, read on a timer for /metrics.

Per pool `p`: the broker's ready messages in `transcode.<p>` and in `transcode.<p>.dead` (a
passive declare: AMQP tells the ready count, not the unacknowledged one; `unacked` stays unset
unless the autoscaler's reading supplies it), and the worker Deployments labelled
`kubetranscode.io/pool=<p>` in the operator's namespace (spec.replicas is what the autoscaler
asked for, status.readyReplicas what runs). The pools are those of the TranscodeJobs seen and
of those Deployments. Depth by priority is not the broker's to tell: see metric_names.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import pika
import pika.exceptions

from kube_transcode.messages import dead_letter_name, job_queue_name
from kube_transcode.metric_names import POOL_POD_LABEL
from kube_transcode_operator import metrics
from kube_transcode_operator.credentials import service_account_dir
from kube_transcode_operator.metrics import PoolFigure

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_SECONDS = 5.0
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


def read_depths(params: pika.URLParameters, queues: Iterable[str]) -> dict[str, int | None]:
    """Ready messages per queue; None for a queue that does not exist (yet)."""
    depths: dict[str, int | None] = {}
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        for queue in queues:
            try:
                depths[queue] = channel.queue_declare(queue, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker:  # 404: the broker closed the channel
                depths[queue] = None
                channel = connection.channel()
    finally:
        if connection.is_open:
            connection.close()
    return depths


def own_namespace() -> str | None:
    folder = service_account_dir()
    namespace_file = folder / "namespace" if folder else Path("/nonexistent")
    return namespace_file.read_text().strip() if namespace_file.exists() else None


def read_replicas(namespace: str) -> Replicas:
    apps = kubernetes.client.AppsV1Api()
    listing = apps.list_namespaced_deployment(namespace, label_selector=POOL_POD_LABEL)
    return replicas_by_pool(listing.items)


class QueueMetrics:
    """A daemon thread that refreshes metrics.POOLS every `interval` seconds."""

    def __init__(
        self,
        amqp_url: str,
        interval: float,
        namespace: str | None,
        known_pools: Callable[[], set[str]] = metrics.JOBS.pools,
    ) -> None:
        self._params = pika.URLParameters(amqp_url)
        self._params.socket_timeout = CONNECT_TIMEOUT_SECONDS
        self._params.blocked_connection_timeout = CONNECT_TIMEOUT_SECONDS
        self._interval = interval
        self._namespace = namespace
        self._known_pools = known_pools
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-metrics", daemon=True)

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.poll()
            self._stopping.wait(self._interval)

    def poll(self) -> None:
        replicas: Replicas = {}
        if self._namespace:
            try:
                replicas = read_replicas(self._namespace)
            except (kubernetes.client.ApiException, OSError) as error:
                log.warning("cannot read the worker Deployments: %s", error)
        pools = self._known_pools() | set(replicas)
        queues = [name for pool in pools for name in _queues(pool)]
        broker_up = True
        try:
            depths = read_depths(self._params, queues)
        except (pika.exceptions.AMQPError, OSError) as error:
            log.warning("cannot read queue depths: %s", error)
            depths, broker_up = {}, False
        metrics.POOLS.update(figures(pools, depths, replicas), broker_up=broker_up)


def _queues(pool: str) -> tuple[str, str]:
    queue = job_queue_name(pool)
    return queue, dead_letter_name(queue)
