"""The JobMessage for one generation of a TranscodeJob: validated, resolved, ready to publish."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kube_transcode.messages import JobMessage, JobRef, Priority, job_queue_name
from kube_transcode_operator.jobspec import TranscodeJobSpec
from kube_transcode_operator.ladders import ladder_request
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.validation import (
    check_output_allowed,
    check_source_allowed,
    chunking_options,
    output_location,
    video_and_hls_options,
)


@dataclass(frozen=True)
class Work:
    message: JobMessage
    queue: str


def build_work(
    spec: TranscodeJobSpec,
    ref: JobRef,
    settings: OperatorSettings,
    *,
    started: datetime,
    template: str | None = None,
) -> Work:
    """Raises JobRejectedError when the spec may not run in this namespace, or its merge with
    `template` (the TranscodeTemplate's name) made a combination the schema would refuse."""
    check_source_allowed(spec.source.url, settings)
    chunking = chunking_options(spec, template)
    video, hls = video_and_hls_options(spec, template)
    location = output_location(spec, ref.namespace, ref.name, settings)
    check_output_allowed(location, ref.namespace, settings)
    deadline = (
        started + timedelta(seconds=spec.active_deadline_seconds)
        if spec.active_deadline_seconds is not None
        else None
    )
    message = JobMessage(
        job=ref,
        attempt=1,
        max_attempts=spec.retry.attempts,
        backoff_seconds=spec.retry.backoff_seconds,
        max_backoff_seconds=spec.retry.max_backoff_seconds,
        priority=Priority(spec.priority),
        source=spec.source.url,
        ladder=ladder_request(spec.ladder),
        hls=hls,
        output=location,
        deadline=deadline,
        chunking=chunking,
        thumbnails=spec.thumbnails.options(),
        video=video,
    )
    return Work(message=message, queue=job_queue_name(spec.pool))
