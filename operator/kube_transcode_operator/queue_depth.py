"""A pool's queue as the autoscaler and /metrics see it, and moving waiting jobs between queues.

Depth source. RabbitMQ's management API has messages_ready and messages_unacknowledged, but
its statistics are collected every 5 s (collect_statistics_interval) and lag behind by up to
that much: too slow for "queue change to Deployment patch within 5 s". A passive
queue.declare over AMQP answers with the ready count as it is now, in a millisecond. So:
- ready: passive queue.declare (current);
- unacknowledged: the busy workers (TranscodeJobs Running on one of the pool's Pods, current
  to a status patch), or the management API's count when that is higher (it also counts
  deliveries whose job status has not caught up; it may be 5 s old, which only delays a
  scale-in). The management API is optional (KT_RABBITMQ_MANAGEMENT_URL).

Both go over the inspector's own AMQP connection (amqp_link); an unreachable broker raises
BrokerUnavailableError and the next tick tries again. The inspector is the operator's one
reader of queue depth: the autoscaler's ticks and the /metrics poll (queue_metrics) use it.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import pika.exceptions

from kube_transcode.messages import JobRef, job_ref_of
from kube_transcode_operator.amqp_link import AmqpLink, Channel
from kube_transcode_operator.autoscale import QueueDepth

log = logging.getLogger(__name__)
MANAGEMENT_REFRESH_SECONDS: Final = 5.0
MANAGEMENT_TIMEOUT_SECONDS: Final = 1.5


@dataclass(frozen=True)
class Moved:
    job: JobRef
    priority: int | None


class QueueInspector:
    """Queue depths and job moves over one AMQP connection of its own (amqp_link), and the
    management API's unacknowledged counts when it has a URL for it."""

    def __init__(
        self, url: str, *, management_url: str | None = None, timeout_seconds: float = 5.0
    ) -> None:
        self._link = AmqpLink(url, name="amqp-pools", timeout_seconds=timeout_seconds)
        self._management = ManagementStats(management_url, url) if management_url else None

    async def ready(self, queue: str) -> int:
        """Messages waiting now; declares the queue (as publisher and worker do) first."""
        return await self._link.call(self._ready, queue)

    async def depth(self, queue: str, busy: int) -> QueueDepth:
        """What the autoscaler counts: waiting now, and running (at least the busy workers)."""
        ready = await self.ready(queue)
        unacked = await self._management.unacknowledged(queue) if self._management else None
        return QueueDepth(ready, max(busy, unacked or 0))

    async def depths(self, queues: Iterable[str]) -> dict[str, int | None]:
        """Messages waiting now per queue, None for one that does not exist (not declared)."""
        return await self._link.call(self._depths, list(queues))

    async def move(self, source: str, target: str, uids: set[str], limit: int) -> list[Moved]:
        """Take the waiting messages of these jobs out of `source` and into `target`."""
        return await self._link.call(self._move, source, target, set(uids), limit)

    async def close(self) -> None:
        await self._link.close()
        if self._management is not None:
            await self._management.close()

    def _ready(self, channel: Channel, queue: str) -> int:
        self._link.declare_queue(channel, queue)
        return _count(channel, queue)

    def _depths(self, channel: Channel, queues: list[str]) -> dict[str, int | None]:
        depths: dict[str, int | None] = {}
        for queue in queues:
            try:
                depths[queue] = _count(channel, queue)
            except pika.exceptions.ChannelClosedByBroker:  # 404: the broker closed the channel
                depths[queue] = None
                channel = self._link.reopen_channel()
        return depths

    def _move(
        self, channel: Channel, source: str, target: str, uids: set[str], limit: int
    ) -> list[Moved]:
        """basic.get in priority order; a wanted job is published to `target` (confirmed) and
        only then acked from `source`, the others go back where they were. A crash between
        the two leaves the job in both queues: delivered twice, which the worker's
        idempotent outputs allow; never lost."""
        self._link.declare_queue(channel, source)
        self._link.declare_queue(channel, target)
        moved: list[Moved] = []
        others: list[int] = []
        try:
            for _ in range(limit):
                if not uids:
                    break
                method, properties, body = channel.basic_get(source, auto_ack=False)
                if method is None:
                    break
                ref = job_ref_of(body)
                if ref is None or ref.uid not in uids:
                    others.append(method.delivery_tag)
                    continue
                channel.basic_publish("", target, body, properties, mandatory=True)
                channel.basic_ack(method.delivery_tag)
                uids.discard(ref.uid)
                moved.append(Moved(ref, properties.priority))
        finally:
            for tag in others:
                channel.basic_nack(tag, requeue=True)
        return moved


class ManagementStats:
    """messages_unacknowledged from the management API, refreshed at most every 5 s."""

    def __init__(self, management_url: str, amqp_url: str) -> None:
        amqp = urlsplit(amqp_url)
        self._base = management_url.rstrip("/")
        self._vhost = quote(unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/", safe="")
        user, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._cache: dict[str, tuple[float, int | None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def unacknowledged(self, queue: str) -> int | None:
        """The broker's count (up to ~5 s old), or None when the API does not answer."""
        fetched, value = self._cache.get(queue, (float("-inf"), None))
        if time.monotonic() - fetched < MANAGEMENT_REFRESH_SECONDS:
            return value
        value = await self._fetch(queue)
        self._cache[queue] = (time.monotonic(), value)
        return value

    async def _fetch(self, queue: str) -> int | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=MANAGEMENT_TIMEOUT_SECONDS),
            )
        url = f"{self._base}/api/queues/{self._vhost}/{quote(queue, safe='')}"
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    return None
                data = await response.json()
        except (aiohttp.ClientError, TimeoutError) as error:
            log.debug("management API: %s", error)
            return None
        count = data.get("messages_unacknowledged")
        return int(count) if isinstance(count, int) else None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _count(channel: Channel, queue: str) -> int:
    """Messages ready in the queue now (a passive declare)."""
    count: int = channel.queue_declare(queue, passive=True).method.message_count
    return count
