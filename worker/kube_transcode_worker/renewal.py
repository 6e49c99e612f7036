"""Keeping a long job's delivery young, so RabbitMQ's consumer_timeout never closes the channel.

RabbitMQ closes a channel whose oldest unacknowledged delivery is older than consumer_timeout
(30 min by default; per queue only from 3.12). The worker keeps its delivery young instead:
every KT_DELIVERY_RENEW_SECONDS (set it below the broker's timeout) it publishes a copy of
the message to its own durable hold queue `Q.hold.<pod>` (confirmed), takes that copy with
basic.get (a new delivery, unacked, timed from now) and acks the previous one. Exactly one
unacked copy exists at any instant. If the worker dies, the copy returns to the hold queue,
expires after KT_HOLD_TTL_SECONDS and dead-letters back to Q, where another worker gets it;
the hold queue deletes itself (x-expires) once unused. Acking early "into an in-progress
record" is avoided: the job is never acked before its outputs are stored.

This swap is the only ack or reject outside the settler: it settles copies, never a job.
"""

from __future__ import annotations

import logging
import uuid

from pika.adapters.blocking_connection import BlockingChannel

from kube_transcode.messages import back_to_queue_arguments, hold_queue_name
from kube_transcode_worker.delivery import HOLD_TOKEN_HEADER, Delivery, copied_properties
from kube_transcode_worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def renew_delivery(
    channel: BlockingChannel, delivery: Delivery, settings: WorkerSettings, job_uid: str
) -> Delivery:
    """A fresh copy of `delivery` taken from the hold queue, or `delivery` if the copy is lost."""
    hold = _declare_hold_queue(channel, settings)
    token = uuid.uuid4().hex
    props = copied_properties(
        delivery.properties, expiration=None, headers={HOLD_TOKEN_HEADER: token}
    )
    channel.basic_publish("", hold, delivery.body, props)
    while True:
        method, got, body = channel.basic_get(hold, auto_ack=False)
        if method is None:
            log.error("hold copy of job %s vanished; keeping the old delivery", job_uid)
            return delivery
        if (got.headers or {}).get(HOLD_TOKEN_HEADER) == token:
            break
        # A copy left by an earlier life of this pod name: back to the work queue.
        channel.basic_reject(method.delivery_tag, requeue=False)
    channel.basic_ack(delivery.tag)
    log.info("renewed the delivery of job %s", job_uid)
    return Delivery(method.delivery_tag, body, got, held=True)


def _declare_hold_queue(channel: BlockingChannel, settings: WorkerSettings) -> str:
    hold = hold_queue_name(settings.queue, settings.pod_name)
    ttl_ms = round(settings.hold_ttl_seconds * 1000)
    channel.queue_declare(
        hold,
        durable=True,
        arguments={
            **back_to_queue_arguments(settings.queue),
            "x-message-ttl": ttl_ms,
            # Outlives the longest gap between renewals, so the queue never vanishes
            # while it holds a copy; removed some time after its worker is gone.
            "x-expires": 3 * round(settings.delivery_renew_seconds * 1000) + 3 * ttl_ms,
        },
    )
    return hold
