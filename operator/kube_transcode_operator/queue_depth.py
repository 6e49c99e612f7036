"""A pool's queue as the autoscaler sees it, and moving waiting jobs between queues.

Depth source. RabbitMQ's management API has messages_ready and messages_unacknowledged, but
its statistics are collected every 5 s (collect_statistics_interval) and lag behind by up to
that much: too slow for "queue change to Deployment patch within 5 s". A passive
queue.declare over AMQP answers with the ready count as it is now, in a millisecond. So:
- ready: passive queue.declare (current);
- unacknowledged: the busy workers (TranscodeJobs Running on one of the pool's Pods, current
  to a status patch), or the management API's count when that is higher (it also counts
  deliveries whose job status has not caught up; it may be 5 s old, which only delays a
  scale-in). The management API is optional (KT_RABBITMQ_MANAGEMENT_URL).

pika's BlockingConnection belongs to one thread: every AMQP call runs on one executor thread.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import pika
import pika.exceptions

from kube_transcode.messages import JobRef, declare_topology, job_ref_of

log = logging.getLogger(__name__)
MANAGEMENT_REFRESH_SECONDS: Final = 5.0
MANAGEMENT_TIMEOUT_SECONDS: Final = 1.5


class QueueUnavailableError(Exception):
    """The broker could not be asked; the next tick tries again."""


@dataclass(frozen=True)
class Moved:
    job: JobRef
    priority: int | None


class QueueInspector:
    """Ready counts and job moves over one AMQP connection of its own."""

    def __init__(self, url: str, *, timeout_seconds: float = 5.0) -> None:
        self._params = pika.URLParameters(url)
        self._params.socket_timeout = timeout_seconds
        self._params.blocked_connection_timeout = timeout_seconds
        self._params.connection_attempts = 1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amqp-pools")
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._declared: set[str] = set()

    async def ready(self, queue: str) -> int:
        return int(await self._run(self._ready, queue))

    async def move(self, source: str, target: str, uids: set[str], limit: int) -> list[Moved]:
        """Take the waiting messages of these jobs out of `source` and into `target`."""
        moved: list[Moved] = await self._run(self._move, source, target, set(uids), limit)
        return moved

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (pika.exceptions.AMQPError, OSError) as error:
            await loop.run_in_executor(self._executor, self._disconnect)
            raise QueueUnavailableError(f"{type(error).__name__}: {error}") from error

    def _ready(self, queue: str) -> int:
        channel = self._declared_channel(queue)
        count: int = channel.queue_declare(queue, passive=True).method.message_count
        return count

    def _move(self, source: str, target: str, uids: set[str], limit: int) -> list[Moved]:
        """basic.get in priority order; a wanted job is published to `target` (confirmed) and
        only then acked from `source`, the others go back where they were. A crash between
        the two leaves the job in both queues: delivered twice, which the worker's
        idempotent outputs allow; never lost."""
        channel = self._declared_channel(source)
        self._declared_channel(target)
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

    def _declared_channel(self, queue: str) -> Any:
        channel = self._ensure_channel()
        if queue not in self._declared:
            # The same declaration as publisher and worker: a pool's queue exists from the start.
            declare_topology(channel, queue)
            self._declared.add(queue)
        return channel

    def _ensure_channel(self) -> Any:
        if self._connection is not None and self._connection.is_open:
            self._connection.process_data_events(time_limit=0)
            if self._channel is not None and self._channel.is_open:
                return self._channel
        self._disconnect()
        self._connection = pika.BlockingConnection(self._params)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        return self._channel

    def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._declared.clear()
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                log.debug("closing a broken connection failed", exc_info=True)


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
