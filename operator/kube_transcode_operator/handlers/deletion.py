"""The finalizer: stop the job's work, then remove its partial outputs and its work area (a
chunked job's staged source and chunk records) from S3."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import botocore.exceptions
import kopf

from kube_transcode.messages import work_area_prefix
from kube_transcode_operator import metrics, status
from kube_transcode_operator.cancelling import cancel_work
from kube_transcode_operator.conditions import parse_timestamp
from kube_transcode_operator.handlers import notify
from kube_transcode_operator.jobref import published_bucket, published_prefix
from kube_transcode_operator.runtime import Runtime, runtime_of

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
POLL_SECONDS = 2


async def finalize(body: kopf.Body, memo: kopf.Memo, logger: Logger) -> None:
    with metrics.counting_errors("delete"):
        runtime = runtime_of(memo)
        current = dict(body.status)
        published = current.get("published")
        if not published:
            await notify.before_deletion(body, runtime, logger)
            return  # nothing was ever queued, nothing written
        meta = body.meta
        now = datetime.now(UTC)
        bucket = published_bucket(current, runtime.settings)
        prefix = published_prefix(current, meta)
        phase = current.get("phase")
        if phase not in status.TERMINAL_PHASES and not notify.delivery_started(body, runtime):
            await cancel_work(runtime, body, "Deleted", "the job was deleted", now)
            deleting_since = parse_timestamp(meta.get("deletionTimestamp")) or now
            waited = (now - deleting_since).total_seconds()
            if phase == "Running" and waited < runtime.settings.cancel_grace_seconds:
                # A worker that has not stopped yet could upload after the cleanup below.
                raise kopf.TemporaryError(
                    f"waiting for worker {current.get('worker')} to stop", delay=POLL_SECONDS
                )
        await notify.before_deletion(body, runtime, logger)
        work_area = work_area_prefix(str(meta.uid))
        removed = await _remove(runtime, bucket, work_area, "the work area")
        if removed:
            logger.info("removed %d work area objects under s3://%s/%s", removed, bucket, work_area)
        if phase == "Succeeded":
            logger.info("keeping the outputs of the succeeded job at s3://%s/%s/", bucket, prefix)
            return
        removed = await _remove(runtime, bucket, prefix, "partial outputs")
        logger.info("removed %d partial output objects under s3://%s/%s/", removed, bucket, prefix)


async def _remove(runtime: Runtime, bucket: str, prefix: str, what: str) -> int:
    try:
        return await asyncio.to_thread(runtime.outputs.delete_prefix, bucket, prefix)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise kopf.TemporaryError(f"cannot remove {what}: {error}", delay=POLL_SECONDS) from error
