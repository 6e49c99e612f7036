"""The thread that consumes the workers' events queue, and the one place that acks or nacks.

The operator's queue is durable and bound to the events exchange, so events published while
the operator is down wait for it. A delivery is acked only after its status patch landed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from kube_transcode.messages import (
    ALL_JOB_EVENTS,
    DEFAULT_EVENTS_EXCHANGE,
    dead_letter_name,
    declare_exchanges,
)
from kube_transcode_operator.worker_events import Outcome

log = logging.getLogger(__name__)
PREFETCH = 50
IDLE_SECONDS = 0.25
# An event that cannot apply yet is tried again after this, up to MAX_RETRIES times.
RETRY_DELAY_SECONDS = 0.5
MAX_RETRIES = 120
RECONNECT_SECONDS = (1.0, 2.0, 5.0, 10.0)


class EventConsumer:
    def __init__(
        self,
        url: str,
        queue: str,
        handle: Callable[[bytes], Outcome],
        flush: Callable[[], None],
        *,
        exchange: str = DEFAULT_EVENTS_EXCHANGE,
    ) -> None:
        self._params = pika.URLParameters(url)
        self._queue = queue
        self._exchange = exchange
        self._handle = handle
        self._flush = flush
        self._stop = threading.Event()
        self._retries: dict[bytes, int] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="worker-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._consume()
                failures = 0
            except (pika.exceptions.AMQPError, OSError) as error:
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning("events consumer lost the broker (%s); again in %ss", error, delay)
                self._stop.wait(delay)

    def _consume(self) -> None:
        connection = pika.BlockingConnection(self._params)
        try:
            channel = connection.channel()
            self._declare(channel)
            channel.basic_qos(prefetch_count=PREFETCH)
            for method, _, body in channel.consume(self._queue, inactivity_timeout=IDLE_SECONDS):
                if self._stop.is_set():
                    break
                self._flush()
                if method is not None:
                    self._settle(channel, method.delivery_tag, body, self._handle(body))
            channel.cancel()
        finally:
            if connection.is_open:
                connection.close()

    def _declare(self, channel: Any) -> None:
        declare_exchanges(channel, self._exchange)
        dead = dead_letter_name(self._queue)
        channel.exchange_declare(dead, exchange_type="fanout", durable=True)
        channel.queue_declare(dead, durable=True)
        channel.queue_bind(dead, dead)
        channel.queue_declare(self._queue, durable=True, arguments={"x-dead-letter-exchange": dead})
        channel.queue_bind(self._queue, self._exchange, routing_key=ALL_JOB_EVENTS)

    def _settle(self, channel: Any, tag: int, body: bytes, outcome: Outcome) -> None:
        if outcome is Outcome.ACK:
            self._retries.pop(body, None)
            channel.basic_ack(tag)
        elif outcome is Outcome.REJECT:
            channel.basic_nack(tag, requeue=False)
        else:
            tries = self._retries.get(body, 0) + 1
            if tries > MAX_RETRIES:
                log.error("dead-lettering an event that never applied: %r", body[:200])
                self._retries.pop(body, None)
                channel.basic_nack(tag, requeue=False)
                return
            self._retries[body] = tries
            time.sleep(RETRY_DELAY_SECONDS)
            channel.basic_nack(tag, requeue=True)
