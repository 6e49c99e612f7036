"""Timers that end jobs: past activeDeadlineSeconds they fail, past their TTL they go."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import kopf

from kube_transcode_operator import metrics, status
from kube_transcode_operator.cancelling import cancel_work
from kube_transcode_operator.runtime import runtime_of

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
