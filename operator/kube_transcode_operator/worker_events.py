"""Worker events to job status: look the job up, apply the event, patch, post an Event.

Runs on the event consumer's thread. `handle` returns what to do with the delivery; the
consumer alone acks, holds or dead-letters it. Progress is coalesced per part of a job (one
part's progress never stands in for another's), and the parts of chunked jobs seen running
are tracked here (running_parts.py) for their share of the job's progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import kubernetes

from kube_transcode.messages import InvalidMessageError, JobEvent, decode_event, job_ref_of
from kube_transcode_operator import metrics
from kube_transcode_operator.coalesce import ProgressCoalescer
from kube_transcode_operator.jobspec import TranscodeJobSpec
from kube_transcode_operator.jobstore import ConflictError, JobStore
from kube_transcode_operator.running_parts import RunningParts, job_key
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.status import KubeEvent, StatusPatch
from kube_transcode_operator.transitions import (
    Relevance,
    Transition,
    apply_event,
    is_progress,
    relevance,
    supersedes,
    with_part_workers,
)
from kube_transcode_operator.validation import output_location

log = logging.getLogger(__name__)
PostEvent = Callable[[dict[str, Any], KubeEvent], None]


class Outcome(Enum):
    ACK = "ack"
    # Not applicable yet (the operator's own write is in flight) or the API failed.
    RETRY_LATER = "retry-later"
    # Not a message this operator understands: dead-letter it, do not loop on it.
    REJECT = "reject"


class _EventChange:
    """The status change for one event, as JobStore.update_status asks for it; remembers what
    it found (it runs again after a conflict)."""

    def __init__(
        self,
        event: JobEvent,
        settings: OperatorSettings,
        running: Mapping[str, float],
        workers: Collection[str],
    ) -> None:
        self._event = event
        self._settings = settings
        self._running = running
        self._workers = workers
        self.relevance: Relevance | None = None  # None: the job was not found
        self.transition: Transition | None = None

    def __call__(self, body: dict[str, Any]) -> StatusPatch | None:
        status = body.get("status") or {}
        self.relevance = relevance(status, self._event)
        self.transition = None
        if self.relevance is not Relevance.APPLIES:
            return None
        ref = self._event.job
        spec = TranscodeJobSpec.from_body(body.get("spec") or {})
        location = output_location(spec, ref.namespace, ref.name, self._settings)
        self.transition = apply_event(
            status,
            self._event,
            master_playlist_url=location.http_url(self._settings.public_url_base),
            now=datetime.now(UTC),
            running_parts=self._running,
        )
        return with_part_workers(self.transition.patch, self._workers)


class WorkerEventHandler:
    def __init__(
        self,
        store: JobStore,
        settings: OperatorSettings,
        post_event: PostEvent,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._settings = settings
        self._post_event = post_event
        self._clock = clock
        self._coalescer: ProgressCoalescer[JobEvent] = ProgressCoalescer(
            settings.progress_interval_seconds
        )
        self._parts = RunningParts()

    def handle(self, body: bytes) -> Outcome:
        try:
            event = decode_event(body)
        except InvalidMessageError as error:
            log.warning("rejecting an event that is not a JobEvent: %s", error)
            return self._count(Outcome.REJECT)
        self._parts.observe(event)
        key = _key(event)
        if is_progress(event) and not self._coalescer.offer(key, event, self._clock()):
            return self._count(Outcome.ACK, "coalesced")
        return self._count(self._apply(event))

    def flush(self) -> None:
        """Apply held progress whose interval has passed (called while the queue is idle too)."""
        for _, event in self._coalescer.due(self._clock()):
            if self._apply(event) is Outcome.RETRY_LATER:
                log.debug("dropping held progress of %s; a newer event will carry it", _key(event))

    @staticmethod
    def line(body: bytes) -> str:
        """A job's events apply in order: they share its uid."""
        ref = job_ref_of(body)
        return ref.uid if ref is not None else ""

    def coalesces(self, newer: bytes, older: bytes) -> bool:
        """Progress of the same attempt of the same part: the newer one is applied in the older
        one's place."""
        try:
            carried = supersedes(decode_event(newer), decode_event(older))
        except InvalidMessageError:
            return False
        if carried:
            self._count(Outcome.ACK, "coalesced")
        return carried

    def _apply(self, event: JobEvent) -> Outcome:
        ref = event.job
        key = job_key(event)
        change = _EventChange(event, self._settings, self._parts.of(key), self._parts.workers(key))
        try:
            body = self._store.update_status(ref, change)
        except ConflictError:
            return Outcome.RETRY_LATER
        except (kubernetes.client.ApiException, OSError) as error:
            log.warning("cannot update %s/%s: %s", ref.namespace, ref.name, error)
            metrics.RECONCILE_ERRORS.labels("worker-event", type(error).__name__).inc()
            return Outcome.RETRY_LATER
        if change.relevance is Relevance.NOT_YET_PUBLISHED:
            return Outcome.RETRY_LATER
        gone = change.relevance is None  # nobody to tell
        if gone or (change.relevance is Relevance.STALE and event.part is not None):
            self._forget(event)  # gone, a newer generation, or ended: its parts run no more
        if body is None or change.transition is None:
            return Outcome.ACK
        self._coalescer.applied(_key(event), self._clock())
        if event.phase.terminal:
            self._forget(event)
        if change.transition.event is not None:
            self._post_event(body, change.transition.event)
        return Outcome.ACK

    def _forget(self, event: JobEvent) -> None:
        self._coalescer.forget_prefix(f"{job_key(event)}/")
        self._parts.forget(job_key(event))

    @staticmethod
    def _count(outcome: Outcome, label: str | None = None) -> Outcome:
        metrics.EVENTS_CONSUMED.labels(label or outcome.value).inc()
        return outcome


def _key(event: JobEvent) -> str:
    """What progress coalesces by: the job's generation and the part (none: the job's own)."""
    return f"{job_key(event)}/{event.part or ''}"
