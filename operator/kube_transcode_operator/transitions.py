"""A worker's JobEvent applied to a job's status: the new status, and the Event to post.

Pure. The worker decides retries (see kube_transcode_worker.retry): it reports each failed
attempt as `requeued` with the next attempt and when, and the last one as `failed`. The
operator mirrors those decisions into status and never publishes a retry itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from kube_transcode.messages import JobEvent, Phase
from kube_transcode_operator.conditions import is_true, set_condition, timestamp
from kube_transcode_operator.status import TERMINAL_PHASES, KubeEvent, StatusPatch

RUNNING_PHASES = frozenset({Phase.fetching, Phase.probing, Phase.transcoding, Phase.uploading})


class Relevance(Enum):
    APPLIES = "applies"
    # The operator has not yet recorded publishing this generation: try again shortly.
    NOT_YET_PUBLISHED = "not-yet-published"
    # An older generation, an older attempt, or a job that already ended.
    STALE = "stale"


@dataclass(frozen=True)
class Transition:
    patch: StatusPatch
    event: KubeEvent | None


def relevance(status: Mapping[str, Any], event: JobEvent) -> Relevance:
    published = status.get("published") or {}
    generation = published.get("generation")
    if generation is None or event.job.generation > generation:
        return Relevance.NOT_YET_PUBLISHED
    if event.job.generation < generation or status.get("phase") in TERMINAL_PHASES:
        return Relevance.STALE
    if event.attempt < int(status.get("attempts") or 1):
        return Relevance.STALE
    return Relevance.APPLIES


def supersedes(newer: JobEvent, older: JobEvent) -> bool:
    """`newer` carries all that `older` would still show: both are progress of the same attempt
    (the progress coalescer drops such an `older` the same way)."""
    return (
        newer.phase in RUNNING_PHASES
        and older.phase in RUNNING_PHASES
        and newer.job == older.job
        and newer.attempt == older.attempt
    )


def apply_event(
    status: Mapping[str, Any],
    event: JobEvent,
    *,
    master_playlist_url: str | None,
    now: datetime,
) -> Transition:
    """The status patch for an event that `relevance` said applies."""
    if event.phase in RUNNING_PHASES:
        return _running(status, event, now)
    if event.phase is Phase.succeeded:
        return _succeeded(status, event, master_playlist_url, now)
    if event.phase is Phase.failed:
        return _failed(status, event, now)
    return _requeued(status, event, now)


def _step(phase: Phase) -> str:
    return phase.value.capitalize()


def _running(status: Mapping[str, Any], event: JobEvent, now: datetime) -> Transition:
    generation = event.job.generation
    same_attempt = int(status.get("attempts") or 1) == event.attempt
    previous = int(status.get("progress") or 0) if same_attempt else 0
    progress = max(previous, min(99, int(event.progress_percent)))
    step = _step(event.phase)
    message = f"attempt {event.attempt}: {event.phase.value} on {event.worker}"
    conditions = list(status.get("conditions") or [])
    was_running = status.get("phase") == "Running" and is_true(conditions, "Running")
    running: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Running"), {})
    moved = not was_running or running.get("reason") != step or not same_attempt
    conditions = set_condition(
        conditions, "Queued", "False", "Started", message, generation=generation, now=now
    )
    conditions = set_condition(
        conditions, "Running", "True", step, message, generation=generation, now=now
    )
    patch: StatusPatch = {
        "phase": "Running",
        "progress": progress,
        "attempts": event.attempt,
        "worker": event.worker,
        "nextAttemptTime": None,
        "message": message,
        "conditions": conditions,
    }
    reason = "Started" if not was_running or not same_attempt else step
    return Transition(patch, KubeEvent("Normal", reason, message) if moved else None)


def _succeeded(
    status: Mapping[str, Any], event: JobEvent, master_playlist_url: str | None, now: datetime
) -> Transition:
    assert event.outputs is not None  # guaranteed by JobEvent's validator
    generation = event.job.generation
    outputs = event.outputs
    message = f"{len(outputs.renditions)} renditions at {outputs.master_uri}"
    conditions = list(status.get("conditions") or [])
    for type_ in ("Queued", "Running"):
        conditions = set_condition(
            conditions, type_, "False", "Completed", message, generation=generation, now=now
        )
    conditions = set_condition(
        conditions, "Succeeded", "True", "Completed", message, generation=generation, now=now
    )
    patch: StatusPatch = {
        "phase": "Succeeded",
        "progress": 100,
        "attempts": event.attempt,
        "worker": event.worker,
        "completionTime": timestamp(now),
        "nextAttemptTime": None,
        "message": message,
        "conditions": conditions,
        "outputs": {
            "masterPlaylist": outputs.master_uri,
            "masterPlaylistUrl": master_playlist_url,
            "renditions": [
                {
                    "name": rendition.name,
                    "resolution": f"{rendition.width}x{rendition.height}",
                    "bandwidth": rendition.bandwidth,
                }
                for rendition in outputs.renditions
            ],
        },
    }
    return Transition(patch, KubeEvent("Normal", "Succeeded", message))


def _failed(status: Mapping[str, Any], event: JobEvent, now: datetime) -> Transition:
    generation = event.job.generation
    reason = event.reason or "Failed"
    message = f"attempt {event.attempt} failed ({reason}): {event.message or 'no details'}"
    conditions = list(status.get("conditions") or [])
    for type_ in ("Queued", "Running"):
        conditions = set_condition(
            conditions, type_, "False", reason, message, generation=generation, now=now
        )
    conditions = set_condition(
        conditions, "Failed", "True", reason, message, generation=generation, now=now
    )
    patch: StatusPatch = {
        "phase": "Failed",
        "attempts": event.attempt,
        "worker": event.worker,
        "completionTime": timestamp(now),
        "nextAttemptTime": None,
        "message": message,
        "conditions": conditions,
    }
    return Transition(patch, KubeEvent("Warning", "Failed", message))


def _requeued(status: Mapping[str, Any], event: JobEvent, now: datetime) -> Transition:
    generation = event.job.generation
    reason = event.reason or "Requeued"
    next_attempt = event.next_attempt or event.attempt
    detail = f"({reason}): {event.message or 'no details'}"
    when = f" at {timestamp(event.retry_at)}" if event.retry_at else ""
    conditions = list(status.get("conditions") or [])
    if next_attempt > event.attempt:
        phase, kind = "Retrying", "AttemptFailed"
        message = f"attempt {event.attempt} failed {detail}; attempt {next_attempt}{when}"
    else:
        phase, kind = "Queued", "Requeued"
        message = f"attempt {event.attempt} stopped {detail}; back in the queue"
    conditions = set_condition(
        conditions, "Running", "False", reason, message, generation=generation, now=now
    )
    conditions = set_condition(
        conditions, "Queued", "True", kind, message, generation=generation, now=now
    )
    patch: StatusPatch = {
        "phase": phase,
        "progress": 0,
        "attempts": next_attempt,
        "nextAttemptTime": timestamp(event.retry_at) if event.retry_at else None,
        "message": message,
        "conditions": conditions,
    }
    return Transition(patch, KubeEvent("Warning", kind, message))
