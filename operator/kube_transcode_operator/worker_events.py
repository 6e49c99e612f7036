"""Worker events to job status: look the job up, apply the event, patch, post an Event.

Runs on the event consumer's thread. `handle` returns what to do with the delivery; the
consumer alone acks or requeues.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import kubernetes

from kube_transcode.messages import InvalidMessageError, JobEvent, decode_event
from kube_transcode_operator import metrics
from kube_transcode_operator.coalesce import ProgressCoalescer
from kube_transcode_operator.jobspec import TranscodeJobSpec
from kube_transcode_operator.jobstore import ConflictError, JobStore
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.status import KubeEvent
from kube_transcode_operator.transitions import (
    RUNNING_PHASES,
    Relevance,
    apply_event,
    relevance,
)
from kube_transcode_operator.validation import output_location

log = logging.getLogger(__name__)
CONFLICT_RETRIES = 5
PostEvent = Callable[[dict[str, Any], KubeEvent], None]


class Outcome(Enum):
    ACK = "ack"
    # Not applicable yet (the operator's own write is in flight) or the API failed.
    RETRY_LATER = "retry-later"
    # Not a message this operator understands: dead-letter it, do not loop on it.
    REJECT = "reject"


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

    def handle(self, body: bytes) -> Outcome:
        try:
            event = decode_event(body)
        except InvalidMessageError as error:
            log.warning("rejecting an event that is not a JobEvent: %s", error)
            return self._count(Outcome.REJECT)
        key = _key(event)
        if event.phase in RUNNING_PHASES and not self._coalescer.offer(key, event, self._clock()):
            return self._count(Outcome.ACK, "coalesced")
        return self._count(self._apply(event))

    def flush(self) -> None:
        """Apply held progress whose interval has passed (called while the queue is idle too)."""
        for _, event in self._coalescer.due(self._clock()):
            if self._apply(event) is Outcome.RETRY_LATER:
                log.debug("dropping held progress of %s; a newer event will carry it", _key(event))

    def _apply(self, event: JobEvent) -> Outcome:
        ref = event.job
        for _ in range(CONFLICT_RETRIES):
            try:
                body = self._store.get(ref.namespace, ref.name)
                if body is None or body["metadata"]["uid"] != ref.uid:
                    self._coalescer.forget(_key(event))
                    return Outcome.ACK  # the job is gone: nobody to tell
                status = body.get("status") or {}
                seen = relevance(status, event)
                if seen is Relevance.NOT_YET_PUBLISHED:
                    return Outcome.RETRY_LATER
                if seen is Relevance.STALE:
                    return Outcome.ACK
                spec = TranscodeJobSpec.from_body(body.get("spec") or {})
                location = output_location(spec, ref.namespace, ref.name, self._settings)
                transition = apply_event(
                    status,
                    event,
                    master_playlist_url=location.http_url(self._settings.public_url_base),
                    now=datetime.now(UTC),
                )
                self._store.patch_status(body, transition.patch)
            except ConflictError:
                continue
            except (kubernetes.client.ApiException, OSError) as error:
                log.warning("cannot update %s/%s: %s", ref.namespace, ref.name, error)
                metrics.RECONCILE_ERRORS.labels("worker-event", type(error).__name__).inc()
                return Outcome.RETRY_LATER
            self._coalescer.applied(_key(event), self._clock())
            if event.phase.terminal:
                self._coalescer.forget(_key(event))
            if transition.event is not None:
                self._post_event(body, transition.event)
            return Outcome.ACK
        return Outcome.RETRY_LATER

    @staticmethod
    def _count(outcome: Outcome, label: str | None = None) -> Outcome:
        metrics.EVENTS_CONSUMED.labels(label or outcome.value).inc()
        return outcome


def _key(event: JobEvent) -> str:
    return f"{event.job.uid}/{event.job.generation}"
