"""The worker's loop: one delivery at a time, run on a job thread, settled once its outputs exist.

Threads. The main thread turns the broker session (session.py) and does every channel call,
including the callbacks the job thread schedules with `Session.call_soon`. The job thread
runs the job (inflight.py) and never touches the channel.

Every way a delivery ends is an Outcome (retry.py) handed to the settler (settler.py), the
only place a delivery is acked, nacked or rejected; the one other channel ack/reject is the
hold copy swap that keeps a long job's delivery young (renewal.py).

Stopping (SIGTERM). The worker stops consuming and stops the running job; the job's
`requeued` event goes out and its delivery returns to the queue, attempt unchanged. A job
that does not stop within KT_SHUTDOWN_GRACE_SECONDS is requeued anyway; a delivery that
arrives meanwhile goes back unread.

Broker lost. The job is cancelled (its delivery is requeued by the broker and will be
redone, idempotently); the worker reconnects with backoff and serves again.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from functools import partial
from typing import Final

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from kube_transcode.messages import InvalidMessageError, decode_cancel, decode_job, now_utc
from kube_transcode_worker.delivery import Delivery
from kube_transcode_worker.errors import PermanentJobError
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.health import HealthState
from kube_transcode_worker.inflight import CancelReason, InFlight, run_attempt
from kube_transcode_worker.renewal import renew_delivery
from kube_transcode_worker.retry import (
    Failed,
    Interrupted,
    Invalid,
    NotStarted,
    Outcome,
    RetryPolicy,
)
from kube_transcode_worker.session import Session, keep_serving
from kube_transcode_worker.settings import WorkerSettings
from kube_transcode_worker.settler import Attempt, Settler
from kube_transcode_worker.tools import JobTools

log = logging.getLogger(__name__)

ABANDON_WAIT_SECONDS: Final = 30.0


class Consumer:
    def __init__(self, settings: WorkerSettings, tools: JobTools, health: HealthState) -> None:
        self.settings = settings
        self.tools = tools
        self.metrics = tools.metrics
        self.health = health
        self.policy = RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_seconds=settings.retry_base_seconds,
            max_seconds=max(settings.retry_max_seconds, settings.retry_base_seconds),
        )
        self._stop = threading.Event()
        self._inflight: InFlight | None = None
        self._settler: Settler | None = None  # with the session it settles on

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets a flag the connection loop acts on."""
        self._stop.set()

    def run(self) -> None:
        """Serve until request_stop(); reconnects on any broker trouble."""
        # A previous run of this pod killed mid-job leaves its scratch files behind.
        shutil.rmtree(self.settings.worker_dir, ignore_errors=True)
        self.settings.worker_dir.mkdir(parents=True, exist_ok=True)
        keep_serving(self._serve, self._stop, after_loss=self._abandon_inflight)

    def _serve(self) -> None:
        session = Session.open(
            self.settings, self.health, self.metrics, self._on_delivery, self._on_control
        )
        self._settler = Settler(session, self.settings, self.metrics, self.policy)
        try:
            self._consume(session)
        finally:
            self._settler = None
            session.close()

    def _consume(self, session: Session) -> None:
        stop_started: float | None = None
        while True:
            session.turn()
            self._tend_inflight(session)
            if not self._stop.is_set():
                continue
            if stop_started is None:
                stop_started = time.monotonic()
                self.health.set_stopping()
                session.stop_consuming()
                if self._inflight is not None:
                    log.info("stopping: cancelling the running job")
                    self._inflight.stop(CancelReason.SHUTDOWN)
            if self._inflight is None:
                return
            if time.monotonic() - stop_started > self.settings.shutdown_grace_seconds:
                grace = self.settings.shutdown_grace_seconds
                log.warning("job did not stop within %.0f s; requeueing it", grace)
                self._settle(self._inflight, Interrupted())
                return

    def _abandon_inflight(self) -> None:
        """The delivery went with the connection: stop the job; the broker redelivers it."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        inflight.stop(CancelReason.CONNECTION_LOST)
        if inflight.thread is not None:
            inflight.thread.join(ABANDON_WAIT_SECONDS)
        self.metrics.jobs.labels("abandoned").inc()
        self.metrics.busy.set(0)
        log.warning("abandoned job %s: it will be redelivered", inflight.message.job.uid)

    def _on_delivery(
        self,
        _channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        delivery = Delivery(method.delivery_tag, body, properties)
        if self._stop.is_set():
            self._settle_unread(delivery, NotStarted())
            return
        try:
            message = decode_job(body)
        except InvalidMessageError as exc:
            self._settle_unread(delivery, Invalid(str(exc)))
            return
        except Exception as exc:  # a decoder bug must not turn a message into a poison loop
            log.exception("cannot decode a delivery")
            self._settle_unread(delivery, Invalid(f"cannot decode: {exc!r}"))
            return
        session = self._require_settler().session
        reporter = AttemptReporter(
            message,
            self.settings.pod_name,
            session.send_event_soon,
            min_interval_seconds=self.settings.progress_interval_seconds,
        )
        renew_at = time.monotonic() + self.settings.delivery_renew_seconds
        inflight = InFlight(message, delivery, reporter, session, renew_at)
        log.info(
            "job %s/%s uid=%s attempt %d from %s",
            message.job.namespace,
            message.job.name,
            message.job.uid,
            message.attempt,
            message.source,
        )
        if message.deadline is not None and message.deadline <= now_utc():
            self._settle(inflight, Failed(PermanentJobError("DeadlineExceeded", "deadline passed")))
            return
        self._inflight = inflight
        self.metrics.busy.set(1)
        inflight.thread = threading.Thread(
            target=self._run, args=(inflight,), name="job", daemon=True
        )
        inflight.thread.start()

    def _on_control(
        self,
        _channel: BlockingChannel,
        _method: pika.spec.Basic.Deliver,
        _properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        """A JobCancel: stop the running job when it covers it; others are not ours."""
        try:
            cancel = decode_cancel(body)
        except InvalidMessageError as exc:
            log.warning("ignoring a control message: %s", exc)
            return
        inflight = self._inflight
        if inflight is None or inflight.outcome is not None:
            return
        if not cancel.covers(inflight.message.job):
            return
        log.info("job %s: %s; stopping it", cancel.job.uid, cancel.describe())
        inflight.cancel_request = cancel
        inflight.stop(CancelReason.CANCELLED)

    def _run(self, inflight: InFlight) -> None:
        """The job thread: run the job, record its outcome, hand over to the connection."""
        inflight.outcome = run_attempt(inflight, self.tools)
        inflight.session.call_soon(partial(self._finished, inflight))

    def _finished(self, inflight: InFlight) -> None:
        if inflight is not self._inflight:  # from a connection that is gone: already redelivered
            return
        assert inflight.outcome is not None
        self._settle(inflight, inflight.outcome)

    def _tend_inflight(self, session: Session) -> None:
        inflight = self._inflight
        if inflight is None or inflight.outcome is not None:
            return
        deadline = inflight.message.deadline
        if deadline is not None and deadline <= now_utc():
            inflight.stop(CancelReason.DEADLINE)
        if time.monotonic() >= inflight.renew_at:
            job_uid = inflight.message.job.uid
            inflight.delivery = renew_delivery(
                session.channel, inflight.delivery, self.settings, job_uid
            )
            inflight.renew_at = time.monotonic() + self.settings.delivery_renew_seconds

    def _settle(self, inflight: InFlight, outcome: Outcome) -> None:
        """The end of a job read from a delivery; it is no longer in flight."""
        inflight.outcome = outcome
        attempt = Attempt(inflight.message, inflight.reporter, inflight.result)
        self._require_settler().settle(outcome, inflight.delivery, attempt)
        if inflight is self._inflight:
            self._inflight = None
            self.metrics.busy.set(0)

    def _settle_unread(self, delivery: Delivery, outcome: NotStarted | Invalid) -> None:
        self._require_settler().settle(outcome, delivery, None)

    def _require_settler(self) -> Settler:
        if self._settler is None:
            raise pika.exceptions.ChannelWrongStateError("no open channel")
        return self._settler
