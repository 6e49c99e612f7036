"""Persistent, confirmed publishes to RabbitMQ, off the event loop.

pika's BlockingConnection belongs to one thread, so every call runs on a single-thread
executor; kopf's handlers await it. A broken connection is dropped and the next call
reconnects, so a broker restart costs one failed publish (a kopf retry), not a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
import pika.exceptions

from kube_transcode.messages import (
    CONTENT_TYPE,
    CONTROL_EXCHANGE,
    JobCancel,
    JobMessage,
    declare_exchanges,
    declare_topology,
    encode,
)
from kube_transcode_operator import metrics

log = logging.getLogger(__name__)
PERSISTENT = pika.DeliveryMode.Persistent


class BrokerUnavailableError(Exception):
    """The message may not have reached the broker; publishing again is safe."""


class Publisher:
    def __init__(self, url: str, *, timeout_seconds: float = 10.0) -> None:
        self._params = pika.URLParameters(url)
        self._params.blocked_connection_timeout = timeout_seconds
        self._params.socket_timeout = timeout_seconds
        self._params.connection_attempts = 1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amqp-publisher")
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._declared: set[str] = set()

    async def publish_job(self, message: JobMessage, queue: str) -> float:
        """Publish and wait for the broker's confirm; returns the seconds it took."""
        return await self._run(self._publish_job, message, queue)

    async def publish_cancel(self, cancel: JobCancel) -> float:
        return await self._run(self._publish_cancel, cancel)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any) -> float:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        await loop.run_in_executor(self._executor, fn, *args)
        elapsed = time.monotonic() - started
        metrics.PUBLISH_SECONDS.observe(elapsed)
        return elapsed

    def _publish_job(self, message: JobMessage, queue: str) -> None:
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            priority=message.priority.amqp,
            message_id=f"{message.job.uid}/{message.job.generation}/{message.attempt}",
            type="JobMessage",
        )
        # mandatory: a job that reaches no queue is an error, not a silent drop.
        self._publish("", queue, encode(message), properties, declare=queue, mandatory=True)

    def _publish_cancel(self, cancel: JobCancel) -> None:
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE, delivery_mode=PERSISTENT, type="JobCancel"
        )
        # Not mandatory: with no worker listening there is nothing running to stop.
        self._publish(
            CONTROL_EXCHANGE, "", encode(cancel), properties, declare=None, mandatory=False
        )

    def _publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        declare: str | None,
        mandatory: bool,
    ) -> None:
        try:
            channel = self._ensure_channel()
            if declare is not None:
                self._declare_work_queue(channel, declare)
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
        except (pika.exceptions.AMQPError, OSError) as error:
            self._disconnect()
            raise BrokerUnavailableError(f"{type(error).__name__}: {error}") from error

    def _ensure_channel(self) -> Any:
        if self._connection is not None and self._connection.is_open:
            # Serve heartbeats that arrived while idle; raises if the broker went away.
            self._connection.process_data_events(time_limit=0)
            if self._channel is not None and self._channel.is_open:
                return self._channel
        self._disconnect()
        self._connection = pika.BlockingConnection(self._params)
        channel = self._connection.channel()
        channel.confirm_delivery()
        declare_exchanges(channel)  # a cancel may come before any job on this connection
        self._channel = channel
        return channel

    def _declare_work_queue(self, channel: Any, queue: str) -> None:
        """Once per queue and connection; the same declaration as the worker's."""
        if queue in self._declared:
            return
        declare_topology(channel, queue)
        self._declared.add(queue)

    def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._declared.clear()
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                log.debug("closing a broken connection failed", exc_info=True)
