"""The worker's RabbitMQ side: one delivery at a time, settled once, after its outputs exist.

Threads. The main thread owns the pika BlockingConnection and does every channel call: it
turns `process_data_events(time_limit=...)` (heartbeats keep flowing during long encodes) and
runs the callbacks the job thread schedules with `add_callback_threadsafe`. The job thread
runs job.run_job and never touches the channel.

Channels. The work channel consumes the work queue (prefetch 1, manual ack) and publishes
events, retries and dead letters. A second channel consumes this worker's exclusive,
auto-delete queue on the control exchange (auto-ack: a cancel is advice, not work), so
cancels arrive while a job runs without touching the work channel's prefetch. It is bound
before the work queue is consumed: a cancel sent once this worker holds a job finds it.

Settling. retry.decide() is the single decision; `_settle` carries it out, always reporting
before letting go of the delivery:
- Ack:        `succeeded` event (confirmed), then ack.
- Retry:      the body with attempt + 1 goes to the delay queue `Q.retry.<attempt>` with a
              per-message expiration (full-jitter backoff; the job's own base and cap,
              within KT_RETRY_MAX_SECONDS); on expiry it dead-letters back to Q. Then a
              `requeued` event, then ack. Delay queues per attempt keep waits of similar
              length together: a message waits at most KT_RETRY_MAX_SECONDS.
- DeadLetter: the body goes to the exchange `Q.dead` with x-kt-reason / x-kt-message
              headers, then a `failed` event, then ack.
- Discard:    (the operator cancelled the job: a JobCancel covering the running job, or its
              cancel marker found by the job) the encode is stopped, nothing more is
              uploaded; a `failed` event with reason Cancelled, then ack.
- Requeue:    (SIGTERM) `requeued` event, then the delivery goes back unchanged, attempt
              and all: basic_nack(requeue=True), or for a held copy basic_reject, which
              dead-letters it from the hold queue back to Q.
A crash between the publish and the ack redelivers the job: outputs are idempotent.

Long jobs and consumer_timeout. RabbitMQ closes a channel whose oldest unacknowledged delivery
is older than consumer_timeout (30 min by default; per queue only from 3.12). The worker
keeps its delivery young instead: every KT_DELIVERY_RENEW_SECONDS (set it below the
broker's timeout) it publishes a copy of the message to its own durable hold queue
`Q.hold.<pod>` (confirmed), takes that copy with basic.get (a new delivery, unacked, timed
from now) and acks the previous one. Exactly one unacked copy exists at any instant. If the
worker dies, the copy returns to the hold queue, expires after KT_HOLD_TTL_SECONDS and
dead-letters back to Q, where another worker gets it; the hold queue deletes itself
(x-expires) once unused. Acking early "into an in-progress record" is avoided: the job is
never acked before its outputs are stored.

Broker lost. The job is cancelled (its delivery is requeued by the broker and will be
redone, idempotently); the worker reconnects with backoff and serves again.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Final

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from kube_transcode.messages import (
    ATTEMPT_HEADER,
    CONTENT_TYPE,
    CONTROL_EXCHANGE,
    MAX_HEADER_MESSAGE_CHARS,
    MESSAGE_HEADER,
    REASON_HEADER,
    WORKER_HEADER,
    InvalidMessageError,
    JobCancel,
    JobEvent,
    JobMessage,
    JobOutputs,
    Phase,
    back_to_queue_arguments,
    dead_letter_name,
    declare_topology,
    decode_cancel,
    decode_job,
    encode,
    event_routing_key,
    hold_queue_name,
    job_ref_of,
    now_utc,
    retry_queue_name,
)
from kube_transcode_worker.errors import (
    CancelRequestedError,
    JobError,
    PermanentJobError,
    TransientJobError,
)
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.health import HealthState
from kube_transcode_worker.job import JobTools, run_job
from kube_transcode_worker.retry import (
    INTERNAL_ERROR,
    INVALID_MESSAGE,
    Ack,
    Cancelled,
    DeadLetter,
    Discard,
    Failed,
    Interrupted,
    Outcome,
    Requeue,
    Retry,
    RetryPolicy,
    Settlement,
    Succeeded,
    decide,
)
from kube_transcode_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

TURN_SECONDS: Final = 0.2
HOLD_TOKEN_HEADER: Final = "x-kt-hold-token"  # noqa: S105 - a header name
RECONNECT_MAX_SECONDS: Final = 30.0
ABANDON_WAIT_SECONDS: Final = 30.0
PERSISTENT: Final = pika.DeliveryMode.Persistent


class CancelReason:
    SHUTDOWN = "shutdown"
    DEADLINE = "deadline"
    CONNECTION_LOST = "connection lost"
    CANCELLED = "cancelled by the operator"


@dataclass
class Delivery:
    tag: int
    body: bytes
    properties: pika.BasicProperties
    held: bool = False  # a copy taken from this worker's hold queue


@dataclass
class InFlight:
    message: JobMessage
    delivery: Delivery
    reporter: AttemptReporter
    renew_at: float
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str | None = None
    cancel_request: JobCancel | None = None  # with CancelReason.CANCELLED
    outcome: Outcome | None = None
    outputs: JobOutputs | None = None
    thread: threading.Thread | None = None

    def stop(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.cancel.set()


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


def _properties(base: pika.BasicProperties, **changes: Any) -> pika.BasicProperties:
    """A copy of a message's properties, persistent, with headers merged in (no hold token)."""
    headers = {k: v for k, v in (base.headers or {}).items() if k != HOLD_TOKEN_HEADER}
    headers.update(changes.pop("headers", {}))
    fields = {
        "content_type": base.content_type or CONTENT_TYPE,
        "priority": base.priority,
        "message_id": base.message_id,
        "correlation_id": base.correlation_id,
        "timestamp": base.timestamp,
        "type": base.type,
        "app_id": base.app_id,
        "delivery_mode": PERSISTENT,
        "headers": headers,
    }
    fields.update(changes)
    return pika.BasicProperties(**fields)


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
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets a flag the connection loop acts on."""
        self._stop.set()

    def run(self) -> None:
        """Serve until request_stop(); reconnects on any broker trouble."""
        self._clear_scratch()
        delay = 1.0
        while not self._stop.is_set():
            try:
                self._serve()
                return
            except Exception as exc:  # the boundary: log, let go of the job, serve again
                log.warning("broker connection lost: %r", exc, exc_info=log.isEnabledFor(10))
            finally:
                self._disconnected()
            self._abandon_inflight()
            wait = random.uniform(delay / 2, delay)  # noqa: S311 - jitter
            log.info("reconnecting in %.1f s", wait)
            self._stop.wait(wait)
            delay = min(RECONNECT_MAX_SECONDS, delay * 2)

    def _clear_scratch(self) -> None:
        """A previous run of this pod killed mid-job leaves its scratch files behind."""
        shutil.rmtree(self.settings.worker_dir, ignore_errors=True)
        self.settings.worker_dir.mkdir(parents=True, exist_ok=True)

    def _serve(self) -> None:
        s = self.settings
        params = pika.URLParameters(s.rabbitmq_url.get_secret_value())
        params.heartbeat = s.heartbeat_seconds
        params.blocked_connection_timeout = max(60, 2 * s.heartbeat_seconds)
        params.client_properties = {"connection_name": f"kube-transcode-worker {s.pod_name}"}
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.confirm_delivery()
        declare_topology(channel, s.queue, s.events_exchange)
        control = connection.channel()
        self._listen_for_cancels(control)
        channel.basic_qos(prefetch_count=1)
        consumer_tag: str | None = channel.basic_consume(s.queue, self._on_delivery)
        self._connection, self._channel = connection, channel
        self.health.set_connected(True)
        self.metrics.broker_connected.set(1)
        log.info("consuming %s as %s", s.queue, s.pod_name)
        stop_started: float | None = None
        while True:
            connection.process_data_events(time_limit=TURN_SECONDS)
            self.health.turned()
            # pika closes a channel silently when the broker does (consumer_timeout, a deleted
            # queue); only a later call would notice. Notice now, so the worker reconnects.
            if not channel.is_open or not control.is_open:
                raise pika.exceptions.ChannelWrongStateError("channel closed by the broker")
            if consumer_tag is not None and consumer_tag not in channel.consumer_tags:
                raise pika.exceptions.ChannelWrongStateError("the broker cancelled our consumer")
            self._tend_inflight()
            if not self._stop.is_set():
                continue
            if consumer_tag is not None:
                stop_started = time.monotonic()
                self.health.set_stopping()
                channel.basic_cancel(consumer_tag)
                consumer_tag = None
                if self._inflight is not None:
                    log.info("stopping: cancelling the running job")
                    self._inflight.stop(CancelReason.SHUTDOWN)
            if self._inflight is None:
                break
            assert stop_started is not None
            if time.monotonic() - stop_started > s.shutdown_grace_seconds:
                log.warning(
                    "job did not stop within %.0f s; requeueing it", s.shutdown_grace_seconds
                )
                inflight = self._inflight
                self._settle(inflight, Requeue())
                self._inflight = None
                break
        connection.close()

    def _listen_for_cancels(self, control: BlockingChannel) -> None:
        """This worker's own queue on the control exchange; it goes with the connection."""
        declared = control.queue_declare("", exclusive=True, auto_delete=True)
        control.queue_bind(declared.method.queue, CONTROL_EXCHANGE)
        control.basic_consume(declared.method.queue, self._on_control, auto_ack=True)

    def _disconnected(self) -> None:
        self.health.set_connected(False)
        self.metrics.broker_connected.set(0)
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # already broken; nothing to tell it
                log.debug("closing a broken connection failed", exc_info=True)

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

    # ------------------------------------------------------------- deliveries

    def _on_delivery(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        delivery = Delivery(method.delivery_tag, body, properties)
        if self._stop.is_set():
            channel.basic_nack(delivery.tag, requeue=True)
            return
        try:
            message = decode_job(body)
        except InvalidMessageError as exc:
            self._settle_invalid(delivery, str(exc))
            return
        except Exception as exc:  # a decoder bug must not turn a message into a poison loop
            log.exception("cannot decode a delivery")
            self._settle_invalid(delivery, f"cannot decode: {exc!r}")
            return
        reporter = AttemptReporter(
            message,
            self.settings.pod_name,
            partial(self._send_soon, self._connection),
            min_interval_seconds=self.settings.progress_interval_seconds,
        )
        inflight = InFlight(
            message, delivery, reporter, time.monotonic() + self.settings.delivery_renew_seconds
        )
        log.info(
            "job %s/%s uid=%s attempt %d from %s",
            message.job.namespace,
            message.job.name,
            message.job.uid,
            message.attempt,
            message.source,
        )
        if message.deadline is not None and message.deadline <= now_utc():
            inflight.outcome = Failed(PermanentJobError("DeadlineExceeded", "deadline passed"))
            self._settle(inflight, self._decide(inflight))
            return
        self._inflight = inflight
        self.metrics.busy.set(1)
        inflight.thread = threading.Thread(
            target=self._run, args=(inflight, self._connection), name="job", daemon=True
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

    def _run(self, inflight: InFlight, connection: BlockingConnection | None) -> None:
        """The job thread: run the job, record its outcome, hand over to the connection."""
        inflight.outcome = _explained_by_stop(inflight, self._attempt(inflight))
        self._call_soon(connection, partial(self._finished, inflight))

    def _attempt(self, inflight: InFlight) -> Outcome:
        try:
            inflight.outputs = run_job(
                inflight.message, self.tools, inflight.reporter, inflight.cancel
            )
        except CancelRequestedError as exc:
            return Cancelled(exc.message)
        except JobError as exc:
            return Failed(exc)
        except Exception as exc:  # a bug or an unforeseen failure: retried, then dead-lettered
            log.exception("job failed unexpectedly")
            return Failed(TransientJobError(INTERNAL_ERROR, repr(exc)))
        return Succeeded()

    def _finished(self, inflight: InFlight) -> None:
        if inflight is not self._inflight:  # from a connection that is gone: already redelivered
            return
        self._settle(inflight, self._decide(inflight))
        self._inflight = None
        self.metrics.busy.set(0)

    def _decide(self, inflight: InFlight) -> Settlement:
        """retry.decide with the job's own attempts and backoff, within the worker's bounds."""
        message, outcome = inflight.message, inflight.outcome
        assert outcome is not None
        policy = self.policy.with_backoff(message.backoff_seconds, message.max_backoff_seconds)
        return decide(outcome, message.attempt, policy, message.max_attempts)

    def _tend_inflight(self) -> None:
        inflight = self._inflight
        if inflight is None or inflight.outcome is not None:
            return
        deadline = inflight.message.deadline
        if deadline is not None and deadline <= now_utc():
            inflight.stop(CancelReason.DEADLINE)
        if time.monotonic() >= inflight.renew_at:
            self._renew(inflight)

    # ---------------------------------------------------------------- settling

    def _settle(self, inflight: InFlight, settlement: Settlement) -> None:
        channel = self._require_channel()
        message, delivery, reporter = inflight.message, inflight.delivery, inflight.reporter
        match settlement:
            case Ack():
                assert inflight.outputs is not None
                self._publish_event(
                    reporter.event(Phase.succeeded, progress_percent=100, outputs=inflight.outputs)
                )
                channel.basic_ack(delivery.tag)
                self.metrics.jobs.labels("succeeded").inc()
                log.info("job %s succeeded: %s", message.job.uid, inflight.outputs.master_uri)
            case Requeue(reason=reason):
                self._publish_event(
                    reporter.event(
                        Phase.requeued,
                        reason=reason,
                        message="the worker stopped; the job goes back to the queue",
                        next_attempt=message.attempt,
                    )
                )
                if delivery.held:
                    channel.basic_reject(delivery.tag, requeue=False)  # dead-letters to Q
                else:
                    channel.basic_nack(delivery.tag, requeue=True)
                self.metrics.jobs.labels("requeued").inc()
                log.info("job %s requeued (attempt %d)", message.job.uid, message.attempt)
            case Retry(next_attempt=attempt, delay_seconds=delay, reason=reason, message=text):
                self._publish_retry(message.next_attempt(), delivery, delay)
                self._publish_event(
                    reporter.event(
                        Phase.requeued,
                        reason=reason,
                        message=text,
                        next_attempt=attempt,
                        retry_at=now_utc() + timedelta(seconds=delay),
                    )
                )
                channel.basic_ack(delivery.tag)
                self.metrics.jobs.labels("retried").inc()
                self.metrics.retries.inc()
                log.warning(
                    "job %s: %s: %s; attempt %d in %.1f s",
                    message.job.uid,
                    reason,
                    text,
                    attempt,
                    delay,
                )
            case DeadLetter(reason=reason, message=text):
                self._dead_letter(delivery, reason, text, message.attempt)
                self._publish_event(
                    reporter.event(Phase.failed, reason=reason, message=text[:4000])
                )
                channel.basic_ack(delivery.tag)
                self.metrics.jobs.labels("failed").inc()
                log.warning("job %s failed: %s: %s", message.job.uid, reason, text)
            case Discard(reason=reason, message=text):
                self._publish_event(
                    reporter.event(Phase.failed, reason=reason, message=text[:4000])
                )
                channel.basic_ack(delivery.tag)
                self.metrics.jobs.labels("cancelled").inc()
                log.info("job %s dropped: %s", message.job.uid, text)

    def _settle_invalid(self, delivery: Delivery, problem: str) -> None:
        self._dead_letter(delivery, INVALID_MESSAGE, problem, attempt=None)
        job = job_ref_of(delivery.body)
        if job is not None:  # tell the operator, when it can know which job this was
            now = now_utc()
            self._publish_event(
                JobEvent(
                    job=job,
                    attempt=1,
                    worker=self.settings.pod_name,
                    phase=Phase.failed,
                    reason=INVALID_MESSAGE,
                    message=problem[:4000],
                    started_at=now,
                    at=now,
                )
            )
        self._require_channel().basic_ack(delivery.tag)
        self.metrics.jobs.labels("invalid").inc()
        log.warning("dead-lettered an invalid message: %s", problem)

    def _dead_letter(self, delivery: Delivery, reason: str, text: str, attempt: int | None) -> None:
        headers: dict[str, Any] = {
            REASON_HEADER: reason,
            MESSAGE_HEADER: text[:MAX_HEADER_MESSAGE_CHARS],
            WORKER_HEADER: self.settings.pod_name,
        }
        if attempt is not None:
            headers[ATTEMPT_HEADER] = attempt
        props = _properties(delivery.properties, headers=headers)
        queue = self.settings.queue
        self._require_channel().basic_publish(dead_letter_name(queue), queue, delivery.body, props)
        self.metrics.dead_lettered.labels(reason).inc()

    def _publish_retry(self, message: JobMessage, delivery: Delivery, delay: float) -> None:
        channel = self._require_channel()
        queue = retry_queue_name(self.settings.queue, message.attempt - 1)
        channel.queue_declare(
            queue, durable=True, arguments=back_to_queue_arguments(self.settings.queue)
        )
        props = _properties(delivery.properties, expiration=str(max(0, round(delay * 1000))))
        channel.basic_publish("", queue, encode(message), props)

    # ------------------------------------------------------------------ events

    def _publish_event(self, event: JobEvent) -> None:
        """Confirmed publish from the connection thread; raises if the broker refuses."""
        self._require_channel().basic_publish(
            self.settings.events_exchange,
            event_routing_key(event.job),
            encode(event),
            pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=PERSISTENT),
        )

    def _publish_event_quietly(self, event: JobEvent) -> None:
        if self._channel is None or not self._channel.is_open:
            return
        try:
            self._publish_event(event)
        except pika.exceptions.NackError:
            log.warning("broker refused a %s event", event.phase)

    def _send_soon(self, connection: BlockingConnection | None, event: JobEvent) -> None:
        """From the job thread: queue the event for the connection thread, never wait."""
        self._call_soon(connection, partial(self._publish_event_quietly, event))

    @staticmethod
    def _call_soon(connection: BlockingConnection | None, callback: Any) -> None:
        if connection is None:
            return
        try:
            connection.add_callback_threadsafe(callback)
        except Exception:  # connection closed: the delivery is gone too, nothing to report
            log.info("connection closed; dropped a callback from the job thread")

    def _require_channel(self) -> BlockingChannel:
        if self._channel is None:
            raise pika.exceptions.ChannelWrongStateError("no open channel")
        return self._channel

    # ----------------------------------------------------------------- renewal

    def _renew(self, inflight: InFlight) -> None:
        """Swap the delivery for a fresh copy held in this worker's hold queue."""
        s = self.settings
        channel = self._require_channel()
        hold = hold_queue_name(s.queue, s.pod_name)
        ttl_ms = round(s.hold_ttl_seconds * 1000)
        channel.queue_declare(
            hold,
            durable=True,
            arguments={
                **back_to_queue_arguments(s.queue),
                "x-message-ttl": ttl_ms,
                # Outlives the longest gap between renewals, so the queue never vanishes
                # while it holds a copy; removed some time after its worker is gone.
                "x-expires": 3 * round(s.delivery_renew_seconds * 1000) + 3 * ttl_ms,
            },
        )
        token = uuid.uuid4().hex
        old = inflight.delivery
        props = _properties(old.properties, expiration=None, headers={HOLD_TOKEN_HEADER: token})
        channel.basic_publish("", hold, old.body, props)
        while True:
            method, got, body = channel.basic_get(hold, auto_ack=False)
            if method is None:
                log.error(
                    "hold copy of job %s vanished; keeping the old delivery",
                    inflight.message.job.uid,
                )
                inflight.renew_at = time.monotonic() + s.delivery_renew_seconds
                return
            if (got.headers or {}).get(HOLD_TOKEN_HEADER) == token:
                break
            # A copy left by an earlier life of this pod name: back to the work queue.
            channel.basic_reject(method.delivery_tag, requeue=False)
        channel.basic_ack(old.tag)
        inflight.delivery = Delivery(method.delivery_tag, body, got, held=True)
        inflight.renew_at = time.monotonic() + s.delivery_renew_seconds
        log.info("renewed the delivery of job %s", inflight.message.job.uid)
