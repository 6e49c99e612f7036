"""Which queue a pool's jobs go to, and the cancel message the operator broadcasts.

Queue arguments and the dead-letter topology come from kube_transcode.messages, the one
definition both operator and worker declare with (a mismatch is a channel error).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kube_transcode.messages import SCHEMA_VERSION, JobRef

JOB_QUEUE_PREFIX: Final = "transcode"
# Fanout: every worker binds its own exclusive queue and hears every cancel.
CONTROL_EXCHANGE: Final = "kube-transcode.control"
# The routing key pattern of every job's events on the events exchange (job.<ns>.<name>).
ALL_JOB_EVENTS: Final = "job.#"
# Objects under this key of a job's output bucket mark cancelled jobs: <prefix>/<uid>.
CANCELLED_MARKER_PREFIX: Final = ".kube-transcode/cancelled"


def job_queue_name(pool: str) -> str:
    """A WorkerPool's work queue; the pool's workers consume it as KT_QUEUE."""
    return f"{JOB_QUEUE_PREFIX}.{pool}"


def cancelled_marker_key(uid: str) -> str:
    return f"{CANCELLED_MARKER_PREFIX}/{uid}"


class JobCancel(BaseModel):
    """Stop every attempt of this job up to `job.generation`; do not start queued ones.

    Broadcast on CONTROL_EXCHANGE for running attempts, and written as the object
    `<bucket>/.kube-transcode/cancelled/<uid>` for attempts still waiting in the queue.
    To move into kube_transcode.messages once the worker speaks it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    job: JobRef
    reason: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    message: str = Field(max_length=1000)
    at: AwareDatetime

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def for_job(cls, job: JobRef, reason: str, message: str, at: datetime) -> JobCancel:
        return cls(job=job, reason=reason, message=message, at=at)
