"""Publishing a TranscodeJob's work: once per generation, also across operator restarts."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import kopf

from kube_transcode_operator import metrics, status, templates
from kube_transcode_operator.amqp_link import BrokerUnavailableError
from kube_transcode_operator.cancelling import cancel_work
from kube_transcode_operator.jobmessage import Work, build_work
from kube_transcode_operator.jobref import job_ref
from kube_transcode_operator.runtime import Runtime, runtime_of
from kube_transcode_operator.validation import JobRejectedError

MAX_RETRY_DELAY_SECONDS = 60
# A missing template is looked up again soon: creating it is the usual fix.
MAX_TEMPLATE_RETRY_SECONDS = 30


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
    current, uid, generation = dict(body.status), str(body.meta.uid), int(body.meta["generation"])
    if status.is_published(current, uid, generation) or status.is_settled(current, generation):
        logger.debug("generation %s is already published or settled", generation)
        return
    now = datetime.now(UTC)
    await _cancel_previous_generation(body, runtime, now)
    work = await _work(body, patch, runtime, retry, now)
    try:
        seconds = await runtime.publisher.publish_job(work.message, work.queue)
    except BrokerUnavailableError as error:
        patch.status.update(
            status.broker_unavailable(current, error=str(error), generation=generation, now=now)
        )
        delay = min(2 ** min(retry, 6), MAX_RETRY_DELAY_SECONDS)
        raise kopf.TemporaryError(f"RabbitMQ unavailable: {error}", delay=delay) from error
    update, event = status.queued(
        current, uid=uid, generation=generation, queue=work.queue,
        priority=work.message.priority.value, bucket=work.message.output.bucket,
        prefix=work.message.output.prefix, now=now,
    )  # fmt: skip
    patch.status.update(update)
    metrics.JOBS_PUBLISHED.labels(_pool(body), work.message.priority.value).inc()
    logger.info("published generation %s to %s in %.3fs", generation, work.queue, seconds)
    await runtime.events.emit(body, event)


async def _work(
    body: kopf.Body, patch: kopf.Patch, runtime: Runtime, retry: int, now: datetime
) -> Work:
    """This generation's message and queue; a spec the operator refuses fails the job for good."""
    merged = await _merged_spec(body, patch, runtime, retry, now)
    try:
        template = body.spec.get("template")
        spec = templates.job_spec(merged, template)
        ref = job_ref(body.meta)
        return build_work(spec, ref, runtime.settings, started=now, template=template)
    except JobRejectedError as rejection:
        update, event = status.rejected(
            dict(body.status), reason=rejection.reason, message=rejection.message,
            generation=int(body.meta["generation"]), now=now,
        )  # fmt: skip
        patch.status.update(update)
        await runtime.events.emit(body, event)
        raise kopf.PermanentError(rejection.message) from rejection


async def _merged_spec(
    body: kopf.Body, patch: kopf.Patch, runtime: Runtime, retry: int, now: datetime
) -> dict[str, Any]:
    """The spec over its template: as recorded for this generation, else as the template is now
    (and then recorded). A missing template keeps the job Pending and is looked up again."""
    name, generation = body.spec.get("template"), int(body.meta["generation"])
    old = body.status.get("template")
    if not name:
        if old is not None:
            patch.status["template"] = None
        return dict(body.spec)
    found = templates.recorded(body.status, name, generation)
    if found is None:
        template = await runtime.templates.get(body.meta.namespace or "", name)
        if template is None:
            update, event = status.template_missing(
                dict(body.status), template=name, namespace=body.meta.namespace or "",
                generation=generation, now=now,
            )  # fmt: skip
            patch.status.update(update)
            if event is not None:
                await runtime.events.emit(body, event)
            delay = min(2 ** min(retry, 5), MAX_TEMPLATE_RETRY_SECONDS)
            raise kopf.TemporaryError(update["message"], delay=delay)
        found = templates.record(template, dict(body.spec), generation)
        patch.status["template"] = templates.status_patch(old, found)
    return templates.merge(found.inherited, body.spec)


async def _cancel_previous_generation(body: kopf.Body, runtime: Runtime, now: datetime) -> None:
    """A changed spec supersedes the run of the previous one: stop it if it may still go."""
    previous = (body.status.get("published") or {}).get("generation")
    if previous is None or body.status.get("phase") in status.TERMINAL_PHASES:
        return
    await cancel_work(
        runtime, body, "SpecChanged", "superseded by a newer spec", now, generation=int(previous)
    )


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
