"""RabbitMQ as a test sees it: a vhost of its own, and its own connection to publish jobs and
read what the workers report (events, dead letters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pika
import requests
from pika.adapters.blocking_connection import BlockingChannel

from kube_transcode.messages import (
    CANCELLED_REASON,
    DEFAULT_EVENTS_EXCHANGE,
    JobEvent,
    JobMessage,
    Phase,
    Priority,
    dead_letter_name,
    declare_topology,
    decode_event,
    encode,
)
from kube_transcode_devstack.services import RabbitMQ
from kube_transcode_devstack.waiting import wait_until

QUEUE = "transcode.test"  # the work queue of the harness's workers


@dataclass
class Vhost:
    name: str
    url: str
    management_url: str
    auth: tuple[str, str]

    def queue(self, queue: str) -> dict[str, Any]:
        resp = requests.get(
            f"{self.management_url}/api/queues/{quote(self.name, safe='')}/{queue}",
            auth=self.auth,
            timeout=10,
        )
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data


class Broker:
    """The test's own AMQP connection: publishes jobs, reads events and dead letters."""

    def __init__(self, vhost: Vhost) -> None:
        self.vhost = vhost
        self.connection = pika.BlockingConnection(pika.URLParameters(vhost.url))
        self.channel: BlockingChannel = self.connection.channel()
        self.channel.confirm_delivery()
        declare_topology(self.channel, QUEUE, DEFAULT_EVENTS_EXCHANGE)
        self.events_queue = self.channel.queue_declare("test.events", exclusive=True).method.queue
        self.channel.queue_bind(self.events_queue, DEFAULT_EVENTS_EXCHANGE, "job.#")
        self.events: list[JobEvent] = []

    def publish(self, message: JobMessage | bytes, priority: int | None = None) -> None:
        body = message if isinstance(message, bytes) else encode(message)
        if priority is None:
            normal = Priority.normal
            priority = (message.priority if isinstance(message, JobMessage) else normal).amqp
        self.channel.basic_publish(
            "",
            QUEUE,
            body,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                priority=priority,
            ),
            mandatory=True,
        )

    def poll_events(self) -> list[JobEvent]:
        while True:
            method, _props, body = self.channel.basic_get(self.events_queue, auto_ack=True)
            if method is None:
                return self.events
            self.events.append(decode_event(body))

    def event(self, uid: str, phase: Phase, timeout: float = 60) -> JobEvent:
        def found() -> JobEvent | None:
            self.poll_events()
            mine = [e for e in self.events if e.job.uid == uid]
            wanted = next((e for e in mine if e.phase == phase), None)
            failed = next(
                (
                    e
                    for e in mine
                    if e.phase == Phase.failed and e.part is None and e.reason != CANCELLED_REASON
                ),
                None,
            )
            if wanted is None and failed is not None:
                # The job ended otherwise: say how now, rather than time out on it later. A
                # cancelled generation is no such end: a newer one of the same job may follow.
                raise AssertionError(
                    f"job {uid} failed while waiting for {phase}: {failed.reason}: {failed.message}"
                )
            return wanted

        return wait_until(f"a {phase} event of job {uid}", found, timeout)

    def phases(self, uid: str) -> list[Phase]:
        return [e.phase for e in self.poll_events() if e.job.uid == uid]

    def get(self, queue: str) -> tuple[pika.BasicProperties, bytes] | None:
        method, props, body = self.channel.basic_get(queue, auto_ack=True)
        return None if method is None else (props, body)

    def dead_letters(self, count: int, timeout: float = 60) -> list[tuple[dict[str, Any], bytes]]:
        letters: list[tuple[dict[str, Any], bytes]] = []

        def enough() -> bool:
            got = self.get(dead_letter_name(QUEUE))
            if got is not None:
                letters.append((dict(got[0].headers or {}), got[1]))
            return len(letters) >= count

        wait_until(f"{count} dead letters", enough, timeout)
        return letters

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def queue_counts(rabbitmq: RabbitMQ, vhost: Vhost, queue: str) -> tuple[int, int]:
    """(ready, unacknowledged) straight from the queue process, not the 5 s stats cache."""
    out = rabbitmq.ctl(
        "list_queues",
        "-p",
        vhost.name,
        "--no-table-headers",
        "--quiet",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {queue} not listed: {out!r}")
