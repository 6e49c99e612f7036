"""Persistent, confirmed publishes to RabbitMQ: a job to its pool's queue, a cancel to every
worker. Off the event loop, over the publisher's own connection (amqp_link); an unreachable
broker raises amqp_link.BrokerUnavailableError, and publishing again is safe."""

from __future__ import annotations

import time

import pika

from kube_transcode.messages import (
    CONTENT_TYPE,
    CONTROL_EXCHANGE,
    JobCancel,
    JobMessage,
    declare_exchanges,
    encode,
)
from kube_transcode_operator import metrics
from kube_transcode_operator.amqp_link import AmqpLink, Channel

PERSISTENT = pika.DeliveryMode.Persistent


class Publisher:
    def __init__(self, url: str, *, timeout_seconds: float = 10.0) -> None:
        # A cancel may come before any job on this connection: the exchanges come first.
        self._link = AmqpLink(
            url,
            name="amqp-publisher",
            timeout_seconds=timeout_seconds,
            on_connect=declare_exchanges,
        )

    async def publish_job(self, message: JobMessage, queue: str) -> float:
        """Publish and wait for the broker's confirm; returns the seconds it took."""
        started = time.monotonic()
        await self._link.call(self._publish_job, message, queue)
        return self._observed(started)

    async def publish_cancel(self, cancel: JobCancel) -> float:
        started = time.monotonic()
        await self._link.call(self._publish_cancel, cancel)
        return self._observed(started)

    async def close(self) -> None:
        await self._link.close()

    def _publish_job(self, channel: Channel, message: JobMessage, queue: str) -> None:
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            priority=message.priority.amqp,
            message_id=f"{message.job.uid}/{message.job.generation}/{message.attempt}",
            type="JobMessage",
        )
        self._link.declare_queue(channel, queue)
        # mandatory: a job that reaches no queue is an error, not a silent drop.
        channel.basic_publish("", queue, encode(message), properties, mandatory=True)

    def _publish_cancel(self, channel: Channel, cancel: JobCancel) -> None:
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE, delivery_mode=PERSISTENT, type="JobCancel"
        )
        # Not mandatory: with no worker listening there is nothing running to stop.
        channel.basic_publish(CONTROL_EXCHANGE, "", encode(cancel), properties, mandatory=False)

    @staticmethod
    def _observed(started: float) -> float:
        elapsed = time.monotonic() - started
        metrics.PUBLISH_SECONDS.observe(elapsed)
        return elapsed
