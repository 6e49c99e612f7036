"""Telling the job's receivers how it ended, without waiting for them.

A timer looks at finished jobs whose Notified condition is not final for their generation
(level-based: after a restart too), starts the delivery, and writes the result on a later
tick. A job deleted before it finished is Cancelled: its finalizer waits for the delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kopf

from kube_transcode_operator import notifications
from kube_transcode_operator.notifications import DefaultReceiver, Delivery, Receiver
from kube_transcode_operator.queue_metrics import own_namespace
from kube_transcode_operator.runtime import MEMO_KEY, Runtime, runtime_of
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.status import KubeEvent

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
POLL_SECONDS = 1


def default_receiver(settings: OperatorSettings) -> DefaultReceiver | None:
    namespace = settings.notify_default_secret_namespace or own_namespace()
    if not settings.notify_default_webhook_url or not settings.notify_default_secret_name:
        return None
    if namespace is None:
        return None
    return DefaultReceiver(
        settings.notify_default_webhook_url,
        namespace,
        settings.notify_default_secret_name,
        settings.notify_default_secret_key,
    )


def receivers_of(body: Mapping[str, Any], runtime: Runtime) -> list[Receiver]:
    return notifications.receivers(
        body.get("spec") or {},
        str(body["metadata"]["namespace"]),
        default_receiver(runtime.settings),
    )


def is_due(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo) -> bool:
    """The timer's filter: finished, not told yet, and somebody to tell."""
    if MEMO_KEY not in memo or not notifications.is_due(status, int(meta["generation"])):
        return False
    webhook = (spec.get("notify") or {}).get("webhook")
    return bool(webhook) or default_receiver(runtime_of(memo).settings) is not None


def kube_event(deliveries: Sequence[Delivery]) -> KubeEvent:
    message = "; ".join(d.summary for d in deliveries)
    if all(d.delivered for d in deliveries):
        return KubeEvent("Normal", "Notified", message)
    return KubeEvent("Warning", "NotificationFailed", message)


async def tick(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger) -> None:
    runtime = runtime_of(memo)
    current, generation = dict(body.status), int(body.meta["generation"])
    receivers = receivers_of(body, runtime)
    if not receivers or not notifications.is_due(current, generation):
        return
    key, now = (str(body.meta.uid), generation), datetime.now(UTC)
    deliveries = runtime.notifier.result(key)
    if deliveries is None:
        outcome = notifications.outcome_of(current)
        if runtime.notifier.ensure(key, body, outcome, receivers):
            logger.info("notifying %d receivers that the job %s", len(receivers), outcome.value)
            patch.status["conditions"] = notifications.pending(
                current, generation=generation, now=now
            )
        return
    patch.status["conditions"] = notifications.notified(
        current, deliveries, generation=generation, now=now
    )
    event = kube_event(deliveries)
    logger.info(event.message)
    await runtime.events.emit(body, event)


async def before_deletion(body: kopf.Body, runtime: Runtime, logger: Logger) -> None:
    """The finalizer's part: deliver the outcome (Cancelled when unfinished) before the job
    goes; raises kopf.TemporaryError while the delivery is under way."""
    current, generation = dict(body.status), int(body.meta["generation"])
    receivers = receivers_of(body, runtime)
    if not receivers or notifications.is_notified(current, generation):
        return
    key = (str(body.meta.uid), generation)
    deliveries = runtime.notifier.result(key)
    if deliveries is None:
        outcome = notifications.outcome_of(current)
        if runtime.notifier.ensure(key, body, outcome, receivers):
            logger.info("notifying %d receivers that the job %s", len(receivers), outcome.value)
        raise kopf.TemporaryError("notifying the job's receivers", delay=POLL_SECONDS)
    event = kube_event(deliveries)
    logger.info(event.message)
    await runtime.events.emit(body, event)


def delivery_started(body: kopf.Body, runtime: Runtime) -> bool:
    """The finalizer's earlier steps are done once the delivery started (this process)."""
    return runtime.notifier.outcome((str(body.meta.uid), int(body.meta["generation"]))) is not None
