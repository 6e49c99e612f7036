"""Operator start and stop: kopf's settings (here and nowhere else) and the shared runtime."""

from __future__ import annotations

import logging

import kopf
from pydantic import ValidationError

from kube_transcode.settings_errors import describe_settings_error
from kube_transcode_operator import metrics
from kube_transcode_operator.credentials import load_client_config
from kube_transcode_operator.jobspec import DEFAULT_POOL
from kube_transcode_operator.runtime import MEMO_KEY, Runtime, runtime_of
from kube_transcode_operator.settings import OperatorSettings

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
FINALIZER = "kubetranscode.io/cleanup"
# kopf's bookkeeping (handler progress, the last handled spec) lives in status.kopf, so a
# handler's outcome and kopf's record of it reach the API server as one status patch.
KOPF_STATUS_NAME = "kopf"
TIMER_EXIT_WAIT_SECONDS = 0.1
TIMER_EXIT_POLL_SECONDS = 1.0


def load_settings() -> OperatorSettings:
    """The settings, or an error that names every bad KT_* variable."""
    try:
        return OperatorSettings()  # type: ignore[call-arg]  # filled from the environment
    except ValidationError as error:
        problems = describe_settings_error(error)
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
    runtime = Runtime.build(settings)
    memo[MEMO_KEY] = runtime
    metrics.JOBS.know_pool(DEFAULT_POOL)
    metrics.serve(settings.bind_address, settings.metrics_port)
    runtime.start()
    logger.info("consuming worker events from %s", settings.events_queue)


async def stop(memo: kopf.Memo) -> None:
    """The one cleanup: everything `start` built."""
    if MEMO_KEY in memo:
        await runtime_of(memo).close()
