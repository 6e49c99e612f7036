"""Stopping a job's work: a marker for queued messages, a broadcast for running attempts."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import botocore.exceptions
import kopf

from kube_transcode.messages import JobCancel
from kube_transcode_operator.amqp_link import BrokerUnavailableError
from kube_transcode_operator.jobref import job_ref, published_bucket
from kube_transcode_operator.runtime import Runtime

RETRY_SECONDS = 5


async def cancel_work(
    runtime: Runtime,
    body: Mapping[str, Any],
    reason: str,
    message: str,
    now: datetime,
    *,
    generation: int | None = None,
) -> None:
    """Every attempt of the job up to `generation` (its current one by default) stops or never
    starts. Safe to repeat.

    The marker goes first: a worker that misses the broadcast (not yet connected, or taking
    the message just now) still finds it before it starts.
    """
    job = job_ref(body["metadata"], generation)
    bucket = published_bucket(body.get("status") or {}, runtime.settings)
    cancel = JobCancel(job=job, reason=reason, message=message, at=now)
    try:
        await asyncio.to_thread(runtime.outputs.mark_cancelled, bucket, cancel)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise kopf.TemporaryError(
            f"cannot mark the job cancelled in S3: {error}", delay=RETRY_SECONDS
        ) from error
    try:
        await runtime.publisher.publish_cancel(cancel)
    except BrokerUnavailableError as error:
        raise kopf.TemporaryError(f"RabbitMQ unavailable: {error}", delay=RETRY_SECONDS) from error
