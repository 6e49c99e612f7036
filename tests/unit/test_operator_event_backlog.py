"""The event consumer's settling: an event that cannot apply yet waits in its job's line, on its
own due time, while other jobs' events go on; a job's events still apply in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from kube_transcode.messages import JobEvent, JobRef, Phase, encode
from kube_transcode_operator.event_consumer import (
    GIVE_UP_SECONDS,
    RETRY_DELAY_SECONDS,
    Action,
    Delivery,
    EventConsumer,
    action,
)
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.worker_events import Outcome, WorkerEventHandler

pytestmark = pytest.mark.unit


@dataclass
class Channel:
    """What the consumer did with each delivery tag."""

    acked: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)

    def basic_ack(self, tag: int) -> None:
        self.acked.append(tag)

    def basic_nack(self, tag: int, requeue: bool) -> None:
        assert not requeue, "a delivery is never put back to loop on"
        self.dead.append(tag)


@dataclass
class Handler:
    """Bodies are b"<job> <kind>"; a job's events apply once the job is published."""

    published: set[str] = field(default_factory=set)
    applied: list[bytes] = field(default_factory=list)
    tries: int = 0

    def handle(self, body: bytes) -> Outcome:
        self.tries += 1
        if body.endswith(b"garbage"):
            return Outcome.REJECT
        if self.line(body) not in self.published:
            return Outcome.RETRY_LATER
        self.applied.append(body)
        return Outcome.ACK

    def flush(self) -> None:
        pass

    def line(self, body: bytes) -> str:
        return body.split()[0].decode()

    def coalesces(self, newer: bytes, older: bytes) -> bool:
        return newer.endswith(b"progress") and older.endswith(b"progress")


class Consumer:
    def __init__(self) -> None:
        self.now = 100.0
        self.handler = Handler()
        self.channel = Channel()
        self.consumer = EventConsumer("amqp://unused", "q", self.handler, clock=lambda: self.now)
        self._tags = iter(range(1, 1000))

    def deliver(self, body: bytes) -> int:
        tag = next(self._tags)
        self.consumer.turn(self.channel, Delivery(tag, body))
        return tag

    def idle(self, seconds: float) -> None:
        self.now += seconds
        self.consumer.turn(self.channel, None)


def test_an_event_that_cannot_apply_yet_does_not_hold_back_other_jobs() -> None:
    c = Consumer()
    c.handler.published.add("b")
    held = c.deliver(b"a fetching")
    other = c.deliver(b"b fetching")
    assert c.channel.acked == [other]
    assert held not in c.channel.acked + c.channel.dead  # unacked until its patch lands
    assert c.handler.tries == 2  # tried once; no waiting on the consumer's thread


def test_a_held_event_is_tried_again_on_its_own_due_time_and_acked_once_it_applied() -> None:
    c = Consumer()
    held = c.deliver(b"a fetching")
    c.idle(RETRY_DELAY_SECONDS / 2)
    assert c.handler.tries == 1
    c.idle(RETRY_DELAY_SECONDS / 2)
    assert c.handler.tries == 2
    c.handler.published.add("a")
    c.idle(RETRY_DELAY_SECONDS)
    assert c.channel.acked == [held]
    assert c.handler.applied == [b"a fetching"]


def test_a_job_s_later_events_wait_behind_its_held_one_and_apply_in_order() -> None:
    c = Consumer()
    first = c.deliver(b"a fetching")
    second = c.deliver(b"a requeued")
    third = c.deliver(b"a failed")
    assert c.handler.tries == 1  # the later ones were not tried past the held one
    c.handler.published.add("a")
    c.idle(RETRY_DELAY_SECONDS)
    assert c.handler.applied == [b"a fetching", b"a requeued", b"a failed"]
    assert c.channel.acked == [first, second, third]


def test_progress_behind_held_progress_takes_its_place() -> None:
    # Held deliveries count against the prefetch: a job's progress must not pile up.
    c = Consumer()
    older = c.deliver(b"a progress")
    newer = c.deliver(b"a progress")
    assert c.channel.acked == [older]  # carried by the newer one
    c.handler.published.add("a")
    c.idle(RETRY_DELAY_SECONDS)
    assert c.channel.acked == [older, newer]
    assert c.handler.applied == [b"a progress"]


def test_an_event_that_never_applies_is_dead_lettered_after_a_minute_and_its_line_goes_on() -> None:
    c = Consumer()
    stuck = c.deliver(b"a fetching")
    c.idle(RETRY_DELAY_SECONDS)
    behind = c.deliver(b"a failed")
    while c.now < 100.0 + GIVE_UP_SECONDS - RETRY_DELAY_SECONDS:
        c.idle(RETRY_DELAY_SECONDS)
    assert c.channel.dead == []
    tries = c.handler.tries
    assert tries >= GIVE_UP_SECONDS / RETRY_DELAY_SECONDS - 2  # about every half second
    c.idle(RETRY_DELAY_SECONDS)
    assert c.channel.dead == [stuck]
    assert c.handler.tries == tries + 2  # the next in line was tried at once
    c.idle(RETRY_DELAY_SECONDS)
    assert c.channel.dead == [stuck]  # its minute started when it was first tried
    c.handler.published.add("a")
    c.idle(RETRY_DELAY_SECONDS)
    assert c.channel.acked == [behind]


def test_a_body_that_is_no_event_is_dead_lettered_at_once() -> None:
    c = Consumer()
    tag = c.deliver(b"x garbage")
    assert c.channel.dead == [tag]


def test_the_policy_holds_only_what_may_still_apply() -> None:
    assert action(Outcome.ACK, 0) is Action.ACK
    assert action(Outcome.REJECT, 0) is Action.DEAD_LETTER
    assert action(Outcome.RETRY_LATER, 0) is Action.HOLD
    assert action(Outcome.RETRY_LATER, GIVE_UP_SECONDS - 0.1) is Action.HOLD
    assert action(Outcome.RETRY_LATER, GIVE_UP_SECONDS) is Action.DEAD_LETTER


def job_event(phase: Phase, uid: str = "u1", attempt: int = 1, **fields: Any) -> bytes:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    ref = JobRef(uid=uid, namespace="team", name="movie", generation=1)
    return encode(JobEvent(job=ref, attempt=attempt, worker="w", phase=phase, started_at=now,
                           at=now, **fields))  # fmt: skip


def test_the_worker_events_handler_lines_up_a_job_s_events_and_coalesces_its_progress() -> None:
    handler = WorkerEventHandler(None, OperatorSettings(rabbitmq_url="amqp://x"), print)  # type: ignore[arg-type]
    assert handler.line(job_event(Phase.fetching)) == "u1"
    assert handler.line(job_event(Phase.fetching, uid="u2")) == "u2"
    assert handler.line(b"not json") == ""
    progress = job_event(Phase.transcoding, progress_percent=10.0)
    assert handler.coalesces(job_event(Phase.transcoding, progress_percent=20.0), progress)
    assert not handler.coalesces(job_event(Phase.failed, reason="Boom"), progress)
    assert not handler.coalesces(job_event(Phase.transcoding, attempt=2), progress)
    assert not handler.coalesces(b"not json", progress)
