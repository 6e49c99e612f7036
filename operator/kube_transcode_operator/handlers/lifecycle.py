"""Timers that end jobs: past activeDeadlineSeconds they fail, past their TTL they go; and the
one that stops the other parts of a chunked job that failed with one of them."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import kopf

from kube_transcode_operator import metrics, status
from kube_transcode_operator.cancelling import cancel_work
from kube_transcode_operator.runtime import runtime_of
from kube_transcode_operator.status import KubeEvent
from kube_transcode_operator.transitions import parts_to_stop

# The reason of the JobCancel that stops a failed chunked job's other parts.
CHUNK_FAILED_REASON = "ChunkFailed"

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def has_deadline_running(spec: kopf.Spec, status_: kopf.Status) -> bool:
    """The deadline timer runs only for unfinished jobs that have a deadline."""
    return (
        spec.get("activeDeadlineSeconds") is not None
        and status_.get("startTime") is not None
        and status_.get("phase") not in status.TERMINAL_PHASES
    )


def has_ttl_finished(spec: kopf.Spec, status_: kopf.Status) -> bool:
    return (
        spec.get("ttlSecondsAfterFinished") is not None
        and status_.get("phase") in status.TERMINAL_PHASES
    )


async def enforce_deadline(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger
) -> None:
    with metrics.counting_errors("deadline"):
        now = datetime.now(UTC)
        current = dict(body.status)
        seconds = body.spec.get("activeDeadlineSeconds")
        if seconds is None or not status.deadline_passed(current, int(seconds), now):
            return
        runtime = runtime_of(memo)
        await cancel_work(runtime, body, "DeadlineExceeded", "deadline exceeded", now)
        update, event = status.deadline_exceeded(
            current, deadline_seconds=int(seconds), generation=int(body.meta["generation"]), now=now
        )
        patch.status.update(update)
        logger.warning(event.message)
        await runtime.events.emit(body, event)


def has_parts_to_stop(status_: kopf.Status) -> bool:
    return parts_to_stop(status_) is not None


async def stop_parts(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger) -> None:
    """A part failed for good and with it the job: its other parts stop or never start (level
    based, so an operator restart in between still stops them)."""
    with metrics.counting_errors("stop-parts"):
        current = dict(body.status)
        part = parts_to_stop(current)
        if part is None:
            return
        runtime = runtime_of(memo)
        failed = (current.get("published") or {}).get("generation")
        message = f"{part} failed for good"
        await cancel_work(
            runtime, body, CHUNK_FAILED_REASON, message, datetime.now(UTC),
            generation=int(failed) if failed is not None else None,
        )  # fmt: skip
        patch.status["chunks"] = {"partsStopped": True}
        event = KubeEvent("Normal", "ChunksStopped", f"stopping the job's other parts: {message}")
        logger.info(event.message)
        await runtime.events.emit(body, event)


async def expire(body: kopf.Body, memo: kopf.Memo, logger: Logger) -> None:
    with metrics.counting_errors("ttl"):
        ttl = body.spec.get("ttlSecondsAfterFinished")
        if not status.ttl_expired(dict(body.status), ttl, datetime.now(UTC)):
            return
        meta = body.meta
        logger.info("deleting the job %ss after it finished", ttl)
        await asyncio.to_thread(
            runtime_of(memo).jobs.delete, str(meta.namespace), str(meta.name), str(meta.uid)
        )
