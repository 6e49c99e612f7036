"""The job in flight: its delivery, its stop switch, and the Outcome its job thread ends with.

The job thread runs `run_attempt` and never touches the channel; a stop this worker asked for
(shutdown, deadline, the operator's cancel) turns the failure it causes into that stop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from kube_transcode.messages import JobCancel, JobMessage
from kube_transcode_worker.chunked import TaskResult
from kube_transcode_worker.delivery import Delivery
from kube_transcode_worker.errors import (
    CancelRequestedError,
    JobError,
    PermanentJobError,
    TransientJobError,
)
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.job import run_job
from kube_transcode_worker.retry import (
    INTERNAL_ERROR,
    Cancelled,
    Failed,
    Interrupted,
    Outcome,
    Succeeded,
)
from kube_transcode_worker.session import Session
from kube_transcode_worker.tools import JobTools

log = logging.getLogger(__name__)


class CancelReason:
    SHUTDOWN = "shutdown"
    DEADLINE = "deadline"
    CONNECTION_LOST = "connection lost"
    CANCELLED = "cancelled by the operator"


@dataclass
class InFlight:
    message: JobMessage
    delivery: Delivery
    reporter: AttemptReporter
    session: Session  # the connection the delivery came on, and goes back with
    renew_at: float
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str | None = None
    cancel_request: JobCancel | None = None  # with CancelReason.CANCELLED
    outcome: Outcome | None = None
    result: TaskResult | None = None
    thread: threading.Thread | None = None

    def stop(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.cancel.set()


def run_attempt(inflight: InFlight, tools: JobTools) -> Outcome:
    """On the job thread: run the job; record its result; return how it ended."""
    return _explained_by_stop(inflight, _attempt(inflight, tools))


def _attempt(inflight: InFlight, tools: JobTools) -> Outcome:
    try:
        inflight.result = run_job(inflight.message, tools, inflight.reporter, inflight.cancel)
    except CancelRequestedError as exc:
        return Cancelled(exc.message)
    except JobError as exc:
        return Failed(exc)
    except Exception as exc:  # a bug or an unforeseen failure: retried, then dead-lettered
        log.exception("job failed unexpectedly")
        return Failed(TransientJobError(INTERNAL_ERROR, repr(exc)))
    return Succeeded()


def _explained_by_stop(inflight: InFlight, outcome: Outcome) -> Outcome:
    """A failure caused by a stop this worker asked for is reported as that stop."""
    if isinstance(outcome, Succeeded | Cancelled):
        return outcome  # finished before the stop took effect, or dropped already
    match inflight.cancel_reason:
        case CancelReason.SHUTDOWN:
            return Interrupted()
        case CancelReason.DEADLINE:
            return Failed(PermanentJobError("DeadlineExceeded", "the job's deadline passed"))
        case CancelReason.CANCELLED:
            assert inflight.cancel_request is not None
            return Cancelled(inflight.cancel_request.describe())
    return outcome
