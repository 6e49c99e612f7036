"""One connection to RabbitMQ: its channels and declarations, and reconnecting when it breaks.

Threads. Only the thread that turns the session (the worker's main thread) calls the channels:
`turn` runs `process_data_events(time_limit=...)` (heartbeats keep flowing during long
encodes) and the callbacks other threads schedule with `call_soon`
(`add_callback_threadsafe`). A callback scheduled on a session that is gone is dropped.

Channels. The work channel consumes the work queue (prefetch 1, manual ack) and publishes
events, retries and dead letters, all with confirms. A second channel consumes this worker's
exclusive, auto-delete queue on the control exchange (auto-ack: a cancel is advice, not
work), so cancels arrive while a job runs without touching the work channel's prefetch. It is
bound before the work queue is consumed: a cancel sent once this worker holds a job finds it.

Broker lost. `keep_serving` logs it, lets the caller drop what went with the connection, and
serves again after a jittered, doubling wait (at most RECONNECT_MAX_SECONDS).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from kube_transcode.messages import (
    CONTENT_TYPE,
    CONTROL_EXCHANGE,
    JobEvent,
    declare_topology,
    encode,
    event_routing_key,
)
from kube_transcode_worker.delivery import PERSISTENT
from kube_transcode_worker.health import HealthState
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

TURN_SECONDS: Final = 0.2
RECONNECT_MAX_SECONDS: Final = 30.0

OnMessage = Callable[[BlockingChannel, Any, pika.BasicProperties, bytes], None]


class Session:
    """An open connection with its work and control channels; `close` ends it."""

    def __init__(
        self,
        connection: BlockingConnection,
        channel: BlockingChannel,
        control: BlockingChannel,
        consumer_tag: str,
        health: HealthState,
        metrics: WorkerMetrics,
        events_exchange: str,
    ) -> None:
        self.connection = connection
        self.channel = channel  # the work channel
        self._control = control
        self._consumer_tag: str | None = consumer_tag
        self._health = health
        self._metrics = metrics
        self._events_exchange = events_exchange

    @classmethod
    def open(
        cls,
        settings: WorkerSettings,
        health: HealthState,
        metrics: WorkerMetrics,
        on_delivery: OnMessage,
        on_control: OnMessage,
    ) -> Session:
        """Connect, declare, listen for cancels, then consume the work queue."""
        params = pika.URLParameters(settings.rabbitmq_url.get_secret_value())
        params.heartbeat = settings.heartbeat_seconds
        params.blocked_connection_timeout = max(60, 2 * settings.heartbeat_seconds)
        params.client_properties = {"connection_name": f"kube-transcode-worker {settings.pod_name}"}
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            declare_topology(channel, settings.queue, settings.events_exchange)
            control = connection.channel()
            declared = control.queue_declare("", exclusive=True, auto_delete=True)
            control.queue_bind(declared.method.queue, CONTROL_EXCHANGE)
            control.basic_consume(declared.method.queue, on_control, auto_ack=True)
            channel.basic_qos(prefetch_count=1)
            consumer_tag = channel.basic_consume(settings.queue, on_delivery)
        except Exception:
            _close_quietly(connection)
            raise
        health.set_connected(True)
        metrics.broker_connected.set(1)
        log.info("consuming %s as %s", settings.queue, settings.pod_name)
        return cls(
            connection, channel, control, consumer_tag, health, metrics, settings.events_exchange
        )

    def turn(self) -> None:
        """Run the broker's callbacks for one turn; raise if the broker closed on us."""
        self.connection.process_data_events(time_limit=TURN_SECONDS)
        self._health.turned()
        # pika closes a channel silently when the broker does (consumer_timeout, a deleted
        # queue); only a later call would notice. Notice now, so the worker reconnects.
        if not self.channel.is_open or not self._control.is_open:
            raise pika.exceptions.ChannelWrongStateError("channel closed by the broker")
        if self._consumer_tag is not None and self._consumer_tag not in self.channel.consumer_tags:
            raise pika.exceptions.ChannelWrongStateError("the broker cancelled our consumer")

    def stop_consuming(self) -> None:
        if self._consumer_tag is not None:
            self.channel.basic_cancel(self._consumer_tag)
            self._consumer_tag = None

    def call_soon(self, callback: Callable[[], None]) -> None:
        """From any thread: run `callback` on the connection thread, never wait for it."""
        try:
            self.connection.add_callback_threadsafe(callback)
        except Exception:  # connection closed: the delivery is gone too, nothing to report
            log.info("connection closed; dropped a callback from the job thread")

    def publish_event(self, event: JobEvent) -> None:
        """Confirmed publish from the connection thread; raises if the broker refuses."""
        self.channel.basic_publish(
            self._events_exchange,
            event_routing_key(event.job),
            encode(event),
            pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=PERSISTENT),
        )

    def send_event_soon(self, event: JobEvent) -> None:
        """From the job thread: queue the event for the connection thread, never wait."""
        self.call_soon(partial(self._publish_event_quietly, event))

    def _publish_event_quietly(self, event: JobEvent) -> None:
        if not self.channel.is_open:
            return
        try:
            self.publish_event(event)
        except pika.exceptions.NackError:
            log.warning("broker refused a %s event", event.phase)

    def close(self) -> None:
        self._health.set_connected(False)
        self._metrics.broker_connected.set(0)
        _close_quietly(self.connection)


def _close_quietly(connection: BlockingConnection) -> None:
    if not connection.is_open:
        return
    try:
        connection.close()
    except Exception:  # already broken; nothing to tell it
        log.debug("closing a broken connection failed", exc_info=True)


def keep_serving(
    serve: Callable[[], None], stop: threading.Event, after_loss: Callable[[], None]
) -> None:
    """Call `serve` until it returns or `stop` is set; after each failure, back off and retry."""
    delay = 1.0
    while not stop.is_set():
        try:
            serve()
            return
        except Exception as exc:  # the boundary: log, let go of the job, serve again
            log.warning("broker connection lost: %r", exc, exc_info=log.isEnabledFor(10))
        after_loss()
        wait = random.uniform(delay / 2, delay)  # noqa: S311 - jitter
        log.info("reconnecting in %.1f s", wait)
        stop.wait(wait)
        delay = min(RECONNECT_MAX_SECONDS, delay * 2)
