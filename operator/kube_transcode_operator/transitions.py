"""A worker's JobEvent applied to a job's status: the new status, and the Event to post.

Pure. The worker decides retries (see kube_transcode_worker.retry): it reports each failed
attempt as `requeued` with the next attempt and when, and the last one as `failed`. The
operator mirrors those decisions into status and never publishes a retry itself.

A chunked job (kube_transcode.chunks): the `plan` event starts `status.chunks`; each part
(`chunk-0000`..., `audio`) then reports with its own attempt, so part events skip the
attempt check. Their counts are the stored objects' and only grow, so `done` and `redone`
take the maximum: a duplicate or late event changes nothing. A part's retry keeps the job
Running; a part that fails for good fails the job (and `failedPart` says which, so the
operator stops the others). Which parts run, and how far, only the caller knows (from the
events it has seen since it started): `running_parts`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from kube_transcode.chunks import PLAN_TASK
from kube_transcode.messages import ChunkReport, JobEvent, JobOutputs, Phase
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
    # A part's attempt is its own, not the job's.
    if event.part is None and event.attempt < int(status.get("attempts") or 1):
        return Relevance.STALE
    return Relevance.APPLIES


def is_progress(event: JobEvent) -> bool:
    """Plain progress, which a later one of the same attempt and part carries: not a plan, not
    a part just stored."""
    if event.phase not in RUNNING_PHASES:
        return False
    return event.chunk is None or (event.chunk.task != PLAN_TASK and not event.chunk.stored)


def supersedes(newer: JobEvent, older: JobEvent) -> bool:
    """`newer` carries all that `older` would still show: both are progress of the same attempt
    of the same part (the progress coalescer drops such an `older` the same way)."""
    return (
        newer.phase in RUNNING_PHASES
        and is_progress(older)
        and newer.job == older.job
        and newer.part == older.part
        and newer.attempt == older.attempt
    )


def apply_event(
    status: Mapping[str, Any],
    event: JobEvent,
    *,
    master_playlist_url: str | None,
    now: datetime,
    running_parts: Mapping[str, float] | None = None,
) -> Transition:
    """The status patch for an event that `relevance` said applies. `running_parts`: the parts
    of a chunked job known to be running, with their own progress (0..100)."""
    running = running_parts or {}
    if event.phase in RUNNING_PHASES:
        if event.part is not None:
            return _part_running(status, event, running, now)
        if event.chunk is not None:
            return _planned(status, event, now)
        return _running(status, event, now)
    if event.phase is Phase.succeeded:
        return _succeeded(status, event, master_playlist_url, now)
    if event.part is not None:
        if event.phase is Phase.failed:
            return _part_failed(status, event, now)
        return _part_requeued(status, event, running, now)
    if event.phase is Phase.failed:
        return _failed(status, event, now)
    return _requeued(status, event, now)


def chunks_of(
    status: Mapping[str, Any], report: ChunkReport, running: Mapping[str, float]
) -> dict[str, Any]:
    """status.chunks after a report: done and redone never go down."""
    before = status.get("chunks") or {}
    total = report.counts.total
    done = min(total, max(int(before.get("done") or 0), report.counts.done))
    redone = max(int(before.get("redone") or 0), report.counts.redone)
    return {
        "total": total,
        "done": done,
        "running": min(len(running), total - done),
        "redone": redone,
        "summary": f"{done}/{total}",
    }


def with_part_workers(patch: StatusPatch, workers: Collection[str]) -> StatusPatch:
    """status.chunks.workers: who encodes the job's parts now (a scale-in keeps them); none
    once the job has ended."""
    chunks = patch.get("chunks")
    if not isinstance(chunks, Mapping):
        return patch
    running = patch.get("phase", "Running") == "Running"
    return {**patch, "chunks": {**chunks, "workers": sorted(workers) if running else []}}


def chunk_progress(
    status: Mapping[str, Any], chunks: Mapping[str, Any], running: Mapping[str, float]
) -> int:
    """Parts done plus the running ones' shares, never lower than before, 100 only when the
    job succeeded."""
    share = sum(min(100.0, max(0.0, percent)) for percent in running.values())
    computed = int((int(chunks["done"]) * 100 + share) / int(chunks["total"]))
    return max(int(status.get("progress") or 0), min(99, computed))


def _chunk_summary(chunks: Mapping[str, Any]) -> str:
    return f"chunks {chunks['done']}/{chunks['total']} done, {chunks['running']} running"


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


def output_url(uri: str, master_uri: str, master_playlist_url: str | None) -> str | None:
    """An output's HTTP URL beside the master playlist's (same public base, same prefix)."""
    folder = master_uri.rsplit("/", 1)[0] + "/"
    if master_playlist_url is None or not uri.startswith(folder):
        return None
    return master_playlist_url.rsplit("/", 1)[0] + "/" + uri.removeprefix(folder)


def thumbnail_outputs(
    outputs: JobOutputs, master_playlist_url: str | None, before: Mapping[str, Any]
) -> dict[str, Any]:
    """status.outputs.poster and .storyboard (its WebVTT), for those the job made; None (which
    the merge patch removes) for an earlier generation's entry of one it did not make."""
    found: dict[str, Any] = {}
    for key, uri in (("poster", outputs.poster_uri), ("storyboard", outputs.storyboard_uri)):
        if uri is not None:
            url = output_url(uri, outputs.master_uri, master_playlist_url)
            found[key] = {"uri": uri, "url": url}
        elif before.get(key) is not None:
            found[key] = None
    return found


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
                    "codecs": rendition.codecs,
                }
                for rendition in outputs.renditions
            ],
            **thumbnail_outputs(outputs, master_playlist_url, status.get("outputs") or {}),
        },
    }
    if event.part is None:
        patch["attempts"] = event.attempt  # a part's attempt is not the job's
    if event.chunk is not None:
        final = chunks_of(status, event.chunk, {})
        total = final["total"]
        patch["chunks"] = {**final, "done": total, "running": 0, "summary": f"{total}/{total}"}
    return Transition(patch, KubeEvent("Normal", "Succeeded", message))


def _failed(status: Mapping[str, Any], event: JobEvent, now: datetime) -> Transition:
    reason = event.reason or "Failed"
    message = f"attempt {event.attempt} failed ({reason}): {event.message or 'no details'}"
    return _ended_failed(status, event, reason, message, {"attempts": event.attempt}, now)


def _ended_failed(
    status: Mapping[str, Any],
    event: JobEvent,
    reason: str,
    message: str,
    extra: StatusPatch,
    now: datetime,
) -> Transition:
    """The job Failed with `reason`: conditions, times and the Warning Event."""
    generation = event.job.generation
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
        "worker": event.worker,
        "completionTime": timestamp(now),
        "nextAttemptTime": None,
        "message": message,
        "conditions": conditions,
        **extra,
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


def _planned(status: Mapping[str, Any], event: JobEvent, now: datetime) -> Transition:
    """The job's worker cut it into parts: status.chunks begins (or, late, stays as it is)."""
    assert event.chunk is not None
    base = _running(status, event, now)
    chunks = chunks_of(status, event.chunk, {})
    message = f"attempt {event.attempt}: planned {chunks['total']} chunk tasks on {event.worker}"
    patch: StatusPatch = {
        **base.patch,
        "progress": chunk_progress(status, chunks, {}),
        "message": message,
        "chunks": {**chunks, "running": int((status.get("chunks") or {}).get("running") or 0)},
    }
    first = not status.get("chunks")
    return Transition(patch, KubeEvent("Normal", "Planned", message) if first else base.event)


def _part_running(
    status: Mapping[str, Any], event: JobEvent, running: Mapping[str, float], now: datetime
) -> Transition:
    assert event.chunk is not None
    generation = event.job.generation
    chunks = chunks_of(status, event.chunk, running)
    doing = "stored" if event.chunk.stored else event.phase.value
    message = (
        f"{_chunk_summary(chunks)}; {event.part} (attempt {event.attempt}) {doing} "
        f"on {event.worker}"
    )
    conditions = list(status.get("conditions") or [])
    was_running = status.get("phase") == "Running" and is_true(conditions, "Running")
    conditions = set_condition(
        conditions, "Queued", "False", "Started", message, generation=generation, now=now
    )
    conditions = set_condition(
        conditions, "Running", "True", "Transcoding", message, generation=generation, now=now
    )
    patch: StatusPatch = {
        "phase": "Running",
        "progress": chunk_progress(status, chunks, running),
        "worker": event.worker,
        "nextAttemptTime": None,
        "message": message,
        "conditions": conditions,
        "chunks": chunks,
    }
    # One Event when the job starts running, not one per part and step.
    return Transition(patch, None if was_running else KubeEvent("Normal", "Started", message))


def _part_requeued(
    status: Mapping[str, Any], event: JobEvent, running: Mapping[str, float], now: datetime
) -> Transition:
    """One part goes back to the queue; the job keeps running, its progress and attempts."""
    assert event.chunk is not None
    reason = event.reason or "Requeued"
    next_attempt = event.next_attempt or event.attempt
    detail = f"({reason}): {event.message or 'no details'}"
    when = f" at {timestamp(event.retry_at)}" if event.retry_at else ""
    if next_attempt > event.attempt:
        kind = "ChunkRetrying"
        message = (
            f"{event.part} attempt {event.attempt} failed {detail}; attempt {next_attempt}{when}"
        )
    else:
        kind = "ChunkRequeued"
        message = f"{event.part} attempt {event.attempt} stopped {detail}; back in the queue"
    chunks = chunks_of(status, event.chunk, running)
    patch: StatusPatch = {
        "progress": chunk_progress(status, chunks, running),
        "message": message,
        "chunks": chunks,
    }
    return Transition(patch, KubeEvent("Warning", kind, message))


def _part_failed(status: Mapping[str, Any], event: JobEvent, now: datetime) -> Transition:
    """One part failed for good: so does the job, and its other parts are to be stopped."""
    assert event.chunk is not None
    reason = event.reason or "Failed"
    message = (
        f"{event.part} failed on attempt {event.attempt} ({reason}): "
        f"{event.message or 'no details'}"
    )
    chunks = {**chunks_of(status, event.chunk, {}), "failedPart": event.part}
    return _ended_failed(status, event, reason, message, {"chunks": chunks}, now)


def parts_to_stop(status: Mapping[str, Any]) -> str | None:
    """The failed part of a job that failed with it, while its other parts are not stopped yet."""
    chunks = status.get("chunks") or {}
    if status.get("phase") != "Failed" or chunks.get("partsStopped"):
        return None
    part = chunks.get("failedPart")
    return str(part) if part else None
