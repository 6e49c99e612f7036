"""Publishing a TranscodeJob's work: once per generation, also across operator restarts."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from kube_transcode.messages import JobRef
from kube_transcode_operator import metrics, status
from kube_transcode_operator.amqp_link import BrokerUnavailableError
from kube_transcode_operator.cancelling import cancel_work
from kube_transcode_operator.jobmessage import build_work
from kube_transcode_operator.jobspec import TranscodeJobSpec
from kube_transcode_operator.runtime import Runtime, runtime_of
from kube_transcode_operator.validation import JobRejectedError

MAX_RETRY_DELAY_SECONDS = 60


async def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> None:
    """Publish this generation's message unless status says it is already in the queue."""
    with metrics.counting_errors("publish"):
        await _reconcile(body, patch, runtime_of(memo), retry, logger)


async def _reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    runtime: Runtime,
    retry: int,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> None:
    meta, current = body.meta, dict(body.status)
    uid, generation = str(meta.uid), int(meta["generation"])
    if status.is_published(current, uid, generation) or status.is_settled(current, generation):
        logger.debug("generation %s is already published or settled", generation)
        return
    now = datetime.now(UTC)
    ref = JobRef(uid=uid, namespace=str(meta.namespace), name=str(meta.name), generation=generation)
    await _cancel_previous_generation(current, ref, runtime, now)
    try:
        work = build_work(TranscodeJobSpec.from_body(body.spec), ref, runtime.settings, started=now)
    except JobRejectedError as rejection:
        update, event = status.rejected(
            current, reason=rejection.reason, message=rejection.message,
            generation=generation, now=now,
        )  # fmt: skip
        patch.status.update(update)
        await runtime.events.emit(body, event)
        raise kopf.PermanentError(rejection.message) from rejection
    try:
        seconds = await runtime.publisher.publish_job(work.message, work.queue)
    except BrokerUnavailableError as error:
        patch.status.update(
            status.broker_unavailable(current, error=str(error), generation=generation, now=now)
        )
        delay = min(2 ** min(retry, 6), MAX_RETRY_DELAY_SECONDS)
        raise kopf.TemporaryError(f"RabbitMQ unavailable: {error}", delay=delay) from error
    update, event = status.queued(
        current,
        uid=uid,
        generation=generation,
        queue=work.queue,
        priority=work.message.priority.value,
        bucket=work.message.output.bucket,
        prefix=work.message.output.prefix,
        now=now,
    )
    patch.status.update(update)
    metrics.JOBS_PUBLISHED.labels(_pool(body), work.message.priority.value).inc()
    logger.info("published generation %s to %s in %.3fs", generation, work.queue, seconds)
    await runtime.events.emit(body, event)


async def _cancel_previous_generation(
    current: Mapping[str, Any], ref: JobRef, runtime: Runtime, now: datetime
) -> None:
    """A changed spec supersedes the run of the previous one: stop it if it may still go."""
    published = current.get("published") or {}
    previous = published.get("generation")
    if previous is None or current.get("phase") in status.TERMINAL_PHASES:
        return
    old = ref.model_copy(update={"generation": int(previous)})
    bucket = published.get("bucket") or runtime.settings.default_bucket
    await cancel_work(runtime, old, bucket, "SpecChanged", "superseded by a newer spec", now)


def observe_phase(event_type: str | None, body: kopf.Body) -> None:
    """Keep the jobs-by-phase gauge, and the timings taken from phase changes, in step with
    the watch stream."""
    uid = str(body.meta.uid)
    if event_type == "DELETED":
        metrics.JOBS.forget(uid)
    else:
        priority = str(body.spec.get("priority") or "normal")
        metrics.JOBS.observe(uid, body.status, pool=_pool(body), priority=priority, now=time.time())


def _pool(body: kopf.Body) -> str:
    return str(body.spec.get("pool") or "default")
