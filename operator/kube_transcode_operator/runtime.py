"""What the handlers share: built once at startup, kept in kopf's memo, closed by one cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kube_transcode_operator.cleanup import OutputStore
from kube_transcode_operator.event_consumer import EventConsumer
from kube_transcode_operator.jobstore import JobStore
from kube_transcode_operator.kube_events import EventPoster
from kube_transcode_operator.notifier import Notifier
from kube_transcode_operator.pool_cluster import PoolCluster
from kube_transcode_operator.publisher import Publisher
from kube_transcode_operator.queue_depth import QueueInspector
from kube_transcode_operator.queue_metrics import QueueMetrics, own_namespace
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.template_store import TemplateStore
from kube_transcode_operator.worker_events import WorkerEventHandler

MEMO_KEY: Final = "runtime"


@dataclass
class Runtime:
    settings: OperatorSettings
    publisher: Publisher
    outputs: OutputStore
    jobs: JobStore
    templates: TemplateStore
    events: EventPoster
    consumer: EventConsumer
    # WorkerPools: the one queue reader, and their Kubernetes side.
    queues: QueueInspector
    pools: PoolCluster
    queue_metrics: QueueMetrics
    # Webhook deliveries in flight (asyncio tasks on kopf's loop).
    notifier: Notifier

    @classmethod
    def build(cls, settings: OperatorSettings) -> Runtime:
        """Every part, none started; the Kubernetes client configuration is loaded already."""
        url = settings.rabbitmq_url.get_secret_value()
        jobs, events = JobStore(), EventPoster()
        queues = QueueInspector(url, management_url=settings.rabbitmq_management_url)
        pools = PoolCluster()
        handler = WorkerEventHandler(jobs, settings, events.post)
        return cls(
            settings=settings,
            publisher=Publisher(url, timeout_seconds=settings.publish_timeout_seconds),
            outputs=OutputStore(settings),
            jobs=jobs,
            templates=TemplateStore(),
            events=events,
            consumer=EventConsumer(url, settings.events_queue, handler),
            queues=queues,
            pools=pools,
            queue_metrics=QueueMetrics(
                queues, pools, settings.queue_metrics_seconds, own_namespace()
            ),
            notifier=Notifier(settings),
        )

    def start(self) -> None:
        """The background work: the /metrics poll and the worker events consumer."""
        self.queue_metrics.start()
        self.consumer.start()

    async def close(self) -> None:
        await self.queue_metrics.stop()
        await self.notifier.close()
        await asyncio.to_thread(self.consumer.stop)
        await self.publisher.close()
        await self.queues.close()
        self.pools.close()


def runtime_of(memo: Mapping[str, Any]) -> Runtime:
    runtime = memo[MEMO_KEY]
    assert isinstance(runtime, Runtime)
    return runtime
