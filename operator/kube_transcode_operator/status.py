"""Status patches for what the operator itself decides: queued, rejected, deadline, broker down.

Each function returns a merge patch for `.status` (None deletes a field) and is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from kube_transcode_operator.conditions import (
    Condition,
    parse_timestamp,
    set_condition,
    timestamp,
)

Phase = Literal["Pending", "Queued", "Running", "Retrying", "Succeeded", "Failed"]
TERMINAL_PHASES: Final = frozenset({"Succeeded", "Failed"})
# Conditions a new generation starts without: they described the previous spec.
_RUN_CONDITIONS: Final = frozenset({"Running", "Succeeded", "Failed"})

StatusPatch = dict[str, Any]


@dataclass(frozen=True)
class KubeEvent:
    """A Kubernetes Event to post about the job."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def publish_key(uid: str, generation: int, attempt: int = 1) -> str:
    """The idempotency key of a job message, kept in status.published.key."""
    return f"{uid}/{generation}/{attempt}"


def is_published(status: Mapping[str, Any], uid: str, generation: int) -> bool:
    """This generation's message is already in the queue: never publish it twice."""
    published = status.get("published") or {}
    return bool(published.get("key", "").startswith(f"{uid}/{generation}/"))


def is_settled(status: Mapping[str, Any], generation: int) -> bool:
    """This generation already ended (rejected, failed or succeeded)."""
    return status.get("phase") in TERMINAL_PHASES and status.get("observedGeneration") == generation


def _conditions(status: Mapping[str, Any], new_generation: bool) -> list[Condition]:
    existing: list[Condition] = list(status.get("conditions") or [])
    if new_generation:
        return [c for c in existing if c.get("type") not in _RUN_CONDITIONS]
    return existing


def _fresh_run(generation: int) -> StatusPatch:
    """Fields of a previous generation's run that no longer describe anything."""
    return {
        "observedGeneration": generation,
        "progress": 0,
        "worker": None,
        "outputs": None,
        "completionTime": None,
        "nextAttemptTime": None,
        "chunks": None,
    }


def queued(
    status: Mapping[str, Any],
    *,
    uid: str,
    generation: int,
    queue: str,
    priority: str,
    bucket: str,
    prefix: str,
    now: datetime,
) -> tuple[StatusPatch, KubeEvent]:
    new_generation = status.get("observedGeneration") != generation
    message = f"published to queue {queue} at priority {priority}"
    conditions = set_condition(
        _conditions(status, new_generation),
        "Queued",
        "True",
        "Published",
        message,
        generation=generation,
        now=now,
    )
    patch: StatusPatch = {
        **_fresh_run(generation),
        "phase": "Queued",
        "attempts": 1,
        "startTime": timestamp(now),
        "message": message,
        "conditions": conditions,
        "published": {
            "key": publish_key(uid, generation),
            "generation": generation,
            "attempt": 1,
            "queue": queue,
            "bucket": bucket,
            "prefix": prefix,
            "time": timestamp(now),
        },
    }
    return patch, KubeEvent("Normal", "Queued", message)


def rejected(
    status: Mapping[str, Any], *, reason: str, message: str, generation: int, now: datetime
) -> tuple[StatusPatch, KubeEvent]:
    conditions = set_condition(
        _conditions(status, status.get("observedGeneration") != generation),
        "Failed",
        "True",
        reason,
        message,
        generation=generation,
        now=now,
    )
    patch: StatusPatch = {
        **_fresh_run(generation),
        "phase": "Failed",
        "completionTime": timestamp(now),
        "message": message,
        "conditions": conditions,
    }
    return patch, KubeEvent("Warning", reason, message)


def broker_unavailable(
    status: Mapping[str, Any], *, error: str, generation: int, now: datetime
) -> StatusPatch:
    new_generation = status.get("observedGeneration") != generation
    message = f"cannot publish to RabbitMQ, retrying: {error}"
    conditions = set_condition(
        _conditions(status, new_generation),
        "Queued",
        "False",
        "BrokerUnavailable",
        message,
        generation=generation,
        now=now,
    )
    patch: StatusPatch = {"phase": "Pending", "message": message, "conditions": conditions}
    if new_generation:
        patch |= _fresh_run(generation)
    return patch


def template_missing(
    status: Mapping[str, Any], *, template: str, namespace: str, generation: int, now: datetime
) -> tuple[StatusPatch, KubeEvent | None]:
    """Not published until the template exists; the Event only when the condition is new."""
    new_generation = status.get("observedGeneration") != generation
    message = (
        f"TranscodeTemplate {template} not found in namespace {namespace}; "
        "the job is queued once it exists"
    )
    before = _conditions(status, new_generation)
    already = any(
        c.get("type") == "Queued" and c.get("reason") == "TemplateNotFound"
        and c.get("message") == message and c.get("observedGeneration") == generation
        for c in before
    )  # fmt: skip
    conditions = set_condition(
        before, "Queued", "False", "TemplateNotFound", message, generation=generation, now=now
    )
    patch: StatusPatch = {"phase": "Pending", "message": message, "conditions": conditions}
    if new_generation:
        patch |= _fresh_run(generation)
    return patch, None if already else KubeEvent("Warning", "TemplateNotFound", message)


def deadline_exceeded(
    status: Mapping[str, Any], *, deadline_seconds: int, generation: int, now: datetime
) -> tuple[StatusPatch, KubeEvent]:
    message = f"the job was active longer than activeDeadlineSeconds ({deadline_seconds}s)"
    conditions = _conditions(status, False)
    for type_ in ("Queued", "Running"):
        if any(c.get("type") == type_ and c.get("status") == "True" for c in conditions):
            conditions = set_condition(
                conditions, type_, "False", "DeadlineExceeded", message,
                generation=generation, now=now,
            )  # fmt: skip
    conditions = set_condition(
        conditions, "Failed", "True", "DeadlineExceeded", message, generation=generation, now=now
    )
    patch: StatusPatch = {
        "phase": "Failed",
        "completionTime": timestamp(now),
        "nextAttemptTime": None,
        "message": message,
        "conditions": conditions,
    }
    return patch, KubeEvent("Warning", "DeadlineExceeded", message)


def deadline_passed(status: Mapping[str, Any], deadline_seconds: int | None, now: datetime) -> bool:
    started = parse_timestamp(status.get("startTime"))
    if deadline_seconds is None or started is None or status.get("phase") in TERMINAL_PHASES:
        return False
    return (now - started).total_seconds() >= deadline_seconds


def ttl_expired(status: Mapping[str, Any], ttl_seconds: int | None, now: datetime) -> bool:
    finished = parse_timestamp(status.get("completionTime"))
    if ttl_seconds is None or finished is None or status.get("phase") not in TERMINAL_PHASES:
        return False
    return (now - finished).total_seconds() >= ttl_seconds
