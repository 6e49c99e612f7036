"""The thread that consumes the workers' events queue, and the one place that acks or nacks.

The operator's queue is durable and bound to the events exchange, so events published while
the operator is down wait for it. A delivery is acked only after its status patch landed (or
a newer event of its job that carries it was taken in its place).

An event that cannot apply yet (the job's status does not show it published yet, or the API
failed) is held unacked in a per-job backlog and tried again from this loop on its own due
time, while every other job's events go on; the later events of that job wait behind it. After
GIVE_UP_SECONDS of never applying it is dead-lettered. Held deliveries count against the
prefetch, which is why progress that a newer one carries is acked as it arrives. When the
channel closes, the broker hands the held deliveries out again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Protocol

import pika
import pika.exceptions

from kube_transcode.messages import (
    ALL_JOB_EVENTS,
    DEFAULT_EVENTS_EXCHANGE,
    dead_letter_name,
    declare_exchanges,
)
from kube_transcode_operator.backlog import Backlog
from kube_transcode_operator.worker_events import Outcome

log = logging.getLogger(__name__)
PREFETCH: Final = 50
IDLE_SECONDS: Final = 0.25
# An event that cannot apply yet is tried again this often, for this long at most.
RETRY_DELAY_SECONDS: Final = 0.5
GIVE_UP_SECONDS: Final = 60.0
RECONNECT_SECONDS: Final = (1.0, 2.0, 5.0, 10.0)


class EventHandler(Protocol):
    def handle(self, body: bytes) -> Outcome:
        """Apply the event now; what to do with its delivery."""

    def flush(self) -> None:
        """Called on every turn of the loop, idle ones too."""

    def line(self, body: bytes) -> str:
        """Events with the same line (a job's) apply in the order they came."""

    def coalesces(self, newer: bytes, older: bytes) -> bool:
        """`newer` carries all of `older`, which need not apply."""


class Action(Enum):
    ACK = "ack"
    DEAD_LETTER = "dead-letter"
    HOLD = "hold"


def action(outcome: Outcome, held_seconds: float) -> Action:
    """The settling policy: what becomes of a delivery, given its outcome and how long it has
    been held already."""
    if outcome is Outcome.ACK:
        return Action.ACK
    if outcome is Outcome.RETRY_LATER and held_seconds < GIVE_UP_SECONDS:
        return Action.HOLD
    return Action.DEAD_LETTER


@dataclass(frozen=True)
class Delivery:
    tag: int
    body: bytes


class EventConsumer:
    def __init__(
        self,
        url: str,
        queue: str,
        handler: EventHandler,
        *,
        exchange: str = DEFAULT_EVENTS_EXCHANGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._params = pika.URLParameters(url)
        self._queue = queue
        self._exchange = exchange
        self._handler = handler
        self._clock = clock
        self._backlog: Backlog[Delivery] = Backlog(RETRY_DELAY_SECONDS)
        self._stop = threading.Event()
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
                self.turn(channel, None if method is None else Delivery(method.delivery_tag, body))
            channel.cancel()
        finally:
            self._backlog.clear()
            if connection.is_open:
                connection.close()

    def turn(self, channel: Any, delivery: Delivery | None) -> None:
        """One turn of the loop: the new delivery (None when idle), then what is due."""
        self._handler.flush()
        if delivery is not None:
            self._receive(channel, delivery)
        self._retry_due(channel)

    def _declare(self, channel: Any) -> None:
        declare_exchanges(channel, self._exchange)
        dead = dead_letter_name(self._queue)
        channel.exchange_declare(dead, exchange_type="fanout", durable=True)
        channel.queue_declare(dead, durable=True)
        channel.queue_bind(dead, dead)
        channel.queue_declare(self._queue, durable=True, arguments={"x-dead-letter-exchange": dead})
        channel.queue_bind(self._queue, self._exchange, routing_key=ALL_JOB_EVENTS)

    def _receive(self, channel: Any, delivery: Delivery) -> None:
        line = self._handler.line(delivery.body)
        if not self._backlog.blocked(line):
            self._settle(channel, line, delivery, self._handler.handle(delivery.body), None)
        elif self._handler.coalesces(delivery.body, self._backlog.last(line).body):
            carried = self._backlog.replace_last(line, delivery)
            self._settle(channel, line, carried, Outcome.ACK, None)
        else:
            self._backlog.hold(line, delivery, self._clock())

    def _retry_due(self, channel: Any) -> None:
        while due := self._backlog.due(self._clock()):
            for line, held in due:
                outcome = self._handler.handle(held.item.body)
                self._settle(channel, line, held.item, outcome, held.since)

    def _settle(
        self, channel: Any, line: str, delivery: Delivery, outcome: Outcome, since: float | None
    ) -> None:
        """Ack, dead-letter or hold a delivery; `since` when it was held, None when it was not."""
        now = self._clock()
        held_seconds = 0.0 if since is None else now - since
        decided = action(outcome, held_seconds)
        if decided is Action.HOLD:
            if since is None:
                self._backlog.hold(line, delivery, now)
            else:
                self._backlog.later(line, now)
            return
        if decided is Action.ACK:
            channel.basic_ack(delivery.tag)
        else:
            if outcome is Outcome.RETRY_LATER:
                log.error(
                    "dead-lettering an event that never applied in %.0fs: %r",
                    held_seconds,
                    delivery.body[:200],
                )
            channel.basic_nack(delivery.tag, requeue=False)
        if since is not None:
            self._backlog.settled(line, now)
