"""Operator start and stop: kopf's settings (here and nowhere else) and the shared runtime."""

from __future__ import annotations

import logging

import kopf
from pydantic import ValidationError

from kube_transcode_operator import metrics
from kube_transcode_operator.cleanup import OutputStore
from kube_transcode_operator.credentials import load_client_config
from kube_transcode_operator.event_consumer import EventConsumer
from kube_transcode_operator.jobspec import DEFAULT_POOL
from kube_transcode_operator.jobstore import JobStore
from kube_transcode_operator.kube_events import EventPoster
from kube_transcode_operator.publisher import Publisher
from kube_transcode_operator.queue_metrics import QueueMetrics, own_namespace
from kube_transcode_operator.runtime import MEMO_KEY, Runtime, runtime_of
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.worker_events import WorkerEventHandler

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
FINALIZER = "kubetranscode.io/cleanup"
# kopf's bookkeeping (handler progress, the last handled spec) lives in status.kopf, so a
# handler's outcome and kopf's record of it reach the API server as one status patch.
KOPF_STATUS_NAME = "kopf"
TIMER_EXIT_WAIT_SECONDS = 0.1
TIMER_EXIT_POLL_SECONDS = 1.0
QUEUE_METRICS_KEY = "queue_metrics"


def load_settings() -> OperatorSettings:
    """The settings, or an error that names every bad KT_* variable."""
    try:
        return OperatorSettings()  # type: ignore[call-arg]  # filled from the environment
    except ValidationError as error:
        problems = "\n".join(
            f"  KT_{str(e['loc'][0]).upper() if e['loc'] else '?'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise kopf.PermanentError(f"invalid operator configuration:\n{problems}") from None


def configure(kopf_settings: kopf.OperatorSettings) -> None:
    kopf_settings.persistence.finalizer = FINALIZER
    kopf_settings.persistence.progress_storage = kopf.StatusProgressStorage(name=KOPF_STATUS_NAME)
    kopf_settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name=KOPF_STATUS_NAME)
    # Only the Events the handlers post on purpose, not every log line.
    kopf_settings.posting.loggers = False
    # A job's finalizer waits for its timers to exit. The TTL timer deletes its own job, so it
    # is often still returning when the deletion arrives; kopf's default is to look again
    # 60 s later. Wait briefly for it instead, and look again each second.
    kopf_settings.background.instant_exit_timeout = TIMER_EXIT_WAIT_SECONDS
    kopf_settings.background.cancellation_polling = TIMER_EXIT_POLL_SECONDS
    kopf_settings.watching.server_timeout = 300
    kopf_settings.networking.request_timeout = 60


async def start(kopf_settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Logger) -> None:
    configure(kopf_settings)
    settings = load_settings()
    load_client_config()
    jobs = JobStore()
    events = EventPoster()
    handler = WorkerEventHandler(jobs, settings, events.post)
    runtime = Runtime(
        settings=settings,
        publisher=Publisher(
            settings.rabbitmq_url.get_secret_value(),
            timeout_seconds=settings.publish_timeout_seconds,
        ),
        outputs=OutputStore(settings),
        jobs=jobs,
        consumer=EventConsumer(
            settings.rabbitmq_url.get_secret_value(),
            settings.events_queue,
            handler.handle,
            handler.flush,
        ),
        events=events,
    )
    memo[MEMO_KEY] = runtime
    metrics.JOBS.know_pool(DEFAULT_POOL)
    metrics.serve(settings.bind_address, settings.metrics_port)
    queue_metrics = QueueMetrics(
        settings.rabbitmq_url.get_secret_value(), settings.queue_metrics_seconds, own_namespace()
    )
    memo[QUEUE_METRICS_KEY] = queue_metrics
    queue_metrics.start()
    runtime.consumer.start()
    logger.info("consuming worker events from %s", settings.events_queue)


async def stop(memo: kopf.Memo) -> None:
    if MEMO_KEY not in memo:
        return
    if QUEUE_METRICS_KEY in memo:
        memo[QUEUE_METRICS_KEY].stop()
    runtime = runtime_of(memo)
    runtime.consumer.stop()
    await runtime.publisher.close()
