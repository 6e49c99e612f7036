"""Stopping a job's work: a marker for queued messages, a broadcast for running attempts."""

from __future__ import annotations

import asyncio
from datetime import datetime

import botocore.exceptions
import kopf

from kube_transcode.messages import JobCancel, JobRef
from kube_transcode_operator.amqp_link import BrokerUnavailableError
from kube_transcode_operator.runtime import Runtime

RETRY_SECONDS = 5


async def cancel_work(
    runtime: Runtime, job: JobRef, bucket: str, reason: str, message: str, now: datetime
) -> None:
    """Every attempt of `job` up to its generation stops or never starts. Safe to repeat.

    The marker goes first: a worker that misses the broadcast (not yet connected, or taking
    the message just now) still finds it before it starts.
    """
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
