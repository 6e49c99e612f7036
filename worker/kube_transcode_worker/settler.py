"""The one place a delivery is settled: an Outcome in, retry.decide, then its Settlement done.

Every settlement reports before it lets go of the delivery:
- Ack:        a plan's parts published to the work queue at the job's priority (confirmed),
              then the `succeeded` event (or, for a plan or a part stored, a progress event
              with its chunk report), then ack.
- Retry:      the body with attempt + 1 goes to the delay queue `Q.retry.<attempt>` with a
              per-message expiration (full-jitter backoff; the job's own base and cap,
              within KT_RETRY_MAX_SECONDS); on expiry it dead-letters back to Q. Then a
              `requeued` event, then ack. Delay queues per attempt keep waits of similar
              length together: a message waits at most KT_RETRY_MAX_SECONDS.
- DeadLetter: the body goes to the exchange `Q.dead` with x-kt-reason / x-kt-message
              headers (and x-kt-attempt when the body was a readable job), then a `failed`
              event, then ack. An unreadable body (InvalidMessage) gets its `failed` event
              only when its job can still be told from the body.
- Discard:    (the operator cancelled the job: a JobCancel covering the running job, or its
              cancel marker found by the job) the encode is stopped, nothing more is
              uploaded; a `failed` event with reason Cancelled, then ack.
- Requeue:    (SIGTERM) `requeued` event, then the delivery goes back unchanged, attempt
              and all: basic_nack(requeue=True), or for a held copy basic_reject, which
              dead-letters it from the hold queue back to Q. A delivery that arrived while
              the worker was stopping never started: it goes back without an event.
A crash between the publish and the ack redelivers the job: outputs are idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, assert_never

import pika

from kube_transcode.messages import (
    ATTEMPT_HEADER,
    CONTENT_TYPE,
    MAX_HEADER_MESSAGE_CHARS,
    MESSAGE_HEADER,
    REASON_HEADER,
    WORKER_HEADER,
    JobEvent,
    JobMessage,
    Phase,
    back_to_queue_arguments,
    dead_letter_name,
    encode,
    job_ref_of,
    now_utc,
    retry_queue_name,
)
from kube_transcode_worker.chunked import TaskResult
from kube_transcode_worker.delivery import PERSISTENT, Delivery, copied_properties
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.retry import (
    Ack,
    DeadLetter,
    Discard,
    Outcome,
    Requeue,
    Retry,
    RetryPolicy,
    Settlement,
    decide,
)
from kube_transcode_worker.session import Session
from kube_transcode_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

EVENT_MESSAGE_CHARS: Final = 4000


@dataclass(frozen=True)
class Attempt:
    """A delivery read as a job: what the settlement reports on."""

    message: JobMessage
    reporter: AttemptReporter
    result: TaskResult | None = None


class Settler:
    """Settles the deliveries of one session, on its connection thread."""

    def __init__(
        self,
        session: Session,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        policy: RetryPolicy,
    ) -> None:
        self.session = session
        self._channel = session.channel
        self._settings = settings
        self._metrics = metrics
        self._policy = policy

    def settle(self, outcome: Outcome, delivery: Delivery, attempt: Attempt | None) -> None:
        """`attempt` is None for a body never read as a job (Invalid, NotStarted)."""
        self._carry_out(self._decide(outcome, attempt), delivery, attempt)

    def _decide(self, outcome: Outcome, attempt: Attempt | None) -> Settlement:
        """retry.decide with the job's own attempts and backoff, within the worker's bounds."""
        if attempt is None:
            return decide(outcome, 1, self._policy)
        message = attempt.message
        policy = self._policy.with_backoff(message.backoff_seconds, message.max_backoff_seconds)
        return decide(outcome, message.attempt, policy, message.max_attempts)

    def _carry_out(
        self, settlement: Settlement, delivery: Delivery, attempt: Attempt | None
    ) -> None:
        if isinstance(settlement, Requeue):
            self._requeue(delivery, settlement.reason, attempt)
        elif isinstance(settlement, DeadLetter):
            self._dead_letter(delivery, settlement.reason, settlement.message, attempt)
        elif attempt is None:  # decide gives only those two for a body never read as a job
            raise ValueError(f"{settlement} needs a delivery read as a job")
        elif isinstance(settlement, Ack):
            self._succeed(delivery, attempt)
        elif isinstance(settlement, Retry):
            self._retry(delivery, settlement, attempt)
        elif isinstance(settlement, Discard):
            self._discard(delivery, settlement.reason, settlement.message, attempt)
        else:
            assert_never(settlement)

    def _succeed(self, delivery: Delivery, attempt: Attempt) -> None:
        result = attempt.result
        assert result is not None
        for task in result.tasks:
            self._publish_task(task)
        reporter = attempt.reporter
        if result.outputs is None:  # a plan, or a part stored: the job goes on
            self.session.publish_event(reporter.event(Phase.transcoding, chunk=result.chunk))
            self._channel.basic_ack(delivery.tag)
            self._metrics.jobs.labels("part-done").inc()
            log.info("job %s: %s done", attempt.message.job.uid, attempt.message.task_name)
            return
        self.session.publish_event(
            reporter.event(
                Phase.succeeded, progress_percent=100, outputs=result.outputs, chunk=result.chunk
            )
        )
        self._channel.basic_ack(delivery.tag)
        self._metrics.jobs.labels("succeeded").inc()
        log.info("job %s succeeded: %s", attempt.message.job.uid, result.outputs.master_uri)

    def _publish_task(self, task: JobMessage) -> None:
        """A part of a planned job, into our own work queue at the job's priority."""
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE, delivery_mode=PERSISTENT, priority=task.priority.amqp
        )
        self._channel.basic_publish("", self._settings.queue, encode(task), properties)

    def _requeue(self, delivery: Delivery, reason: str, attempt: Attempt | None) -> None:
        if attempt is not None:
            message = attempt.message
            self.session.publish_event(
                attempt.reporter.event(
                    Phase.requeued,
                    reason=reason,
                    message="the worker stopped; the job goes back to the queue",
                    next_attempt=message.attempt,
                )
            )
        if delivery.held:
            self._channel.basic_reject(delivery.tag, requeue=False)  # dead-letters to Q
        else:
            self._channel.basic_nack(delivery.tag, requeue=True)
        if attempt is not None:  # one that never started is not a job this worker ended
            self._metrics.jobs.labels("requeued").inc()
            log.info("job %s requeued (attempt %d)", message.job.uid, message.attempt)

    def _retry(self, delivery: Delivery, retry: Retry, attempt: Attempt) -> None:
        message = attempt.message
        self._publish_retry(message.next_attempt(), delivery, retry.delay_seconds)
        self.session.publish_event(
            attempt.reporter.event(
                Phase.requeued,
                reason=retry.reason,
                message=retry.message,
                next_attempt=retry.next_attempt,
                retry_at=now_utc() + timedelta(seconds=retry.delay_seconds),
            )
        )
        self._channel.basic_ack(delivery.tag)
        self._metrics.jobs.labels("retried").inc()
        self._metrics.retries.inc()
        log.warning(
            "job %s: %s: %s; attempt %d in %.1f s",
            message.job.uid,
            retry.reason,
            retry.message,
            retry.next_attempt,
            retry.delay_seconds,
        )

    def _dead_letter(
        self, delivery: Delivery, reason: str, text: str, attempt: Attempt | None
    ) -> None:
        self._publish_dead_letter(
            delivery, reason, text, None if attempt is None else attempt.message.attempt
        )
        event = self._failed_event(delivery, reason, text, attempt)
        if event is not None:
            self.session.publish_event(event)
        self._channel.basic_ack(delivery.tag)
        if attempt is None:
            self._metrics.jobs.labels("invalid").inc()
            log.warning("dead-lettered an invalid message: %s", text)
        else:
            self._metrics.jobs.labels("failed").inc()
            log.warning("job %s failed: %s: %s", attempt.message.job.uid, reason, text)

    def _failed_event(
        self, delivery: Delivery, reason: str, text: str, attempt: Attempt | None
    ) -> JobEvent | None:
        if attempt is not None:
            return attempt.reporter.event(
                Phase.failed, reason=reason, message=text[:EVENT_MESSAGE_CHARS]
            )
        job = job_ref_of(delivery.body)
        if job is None:  # the operator cannot know which job this was
            return None
        now = now_utc()
        return JobEvent(
            job=job,
            attempt=1,
            worker=self._settings.pod_name,
            phase=Phase.failed,
            reason=reason,
            message=text[:EVENT_MESSAGE_CHARS],
            started_at=now,
            at=now,
        )

    def _discard(self, delivery: Delivery, reason: str, text: str, attempt: Attempt) -> None:
        self.session.publish_event(
            attempt.reporter.event(Phase.failed, reason=reason, message=text[:EVENT_MESSAGE_CHARS])
        )
        self._channel.basic_ack(delivery.tag)
        self._metrics.jobs.labels("cancelled").inc()
        log.info("job %s dropped: %s", attempt.message.job.uid, text)

    def _publish_dead_letter(
        self, delivery: Delivery, reason: str, text: str, attempt: int | None
    ) -> None:
        headers: dict[str, Any] = {
            REASON_HEADER: reason,
            MESSAGE_HEADER: text[:MAX_HEADER_MESSAGE_CHARS],
            WORKER_HEADER: self._settings.pod_name,
        }
        if attempt is not None:
            headers[ATTEMPT_HEADER] = attempt
        props = copied_properties(delivery.properties, headers=headers)
        queue = self._settings.queue
        self._channel.basic_publish(dead_letter_name(queue), queue, delivery.body, props)
        self._metrics.dead_lettered.labels(reason).inc()

    def _publish_retry(self, message: JobMessage, delivery: Delivery, delay: float) -> None:
        queue = retry_queue_name(self._settings.queue, message.attempt - 1)
        self._channel.queue_declare(
            queue, durable=True, arguments=back_to_queue_arguments(self._settings.queue)
        )
        props = copied_properties(delivery.properties, expiration=str(max(0, round(delay * 1000))))
        self._channel.basic_publish("", queue, encode(message), props)
