"""kopf's entry: decorators wired to one-line calls into handlers/.

Run with `kube-transcode-operator` (cli.py) or `kopf run -m kube_transcode_operator.main -A`.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kube_transcode.names import GROUP, JOB_PLURAL, POOL_PLURAL, VERSION
from kube_transcode_operator import credentials
from kube_transcode_operator.fallback import JobView
from kube_transcode_operator.handlers import deletion, jobs, lifecycle, notify, pools, startup

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
JOBS = (GROUP, VERSION, JOB_PLURAL)
POOLS = (GROUP, VERSION, POOL_PLURAL)
# Queue depth to Deployment patch within a tick plus a few API calls (well under 5 s).
AUTOSCALE_INTERVAL_SECONDS = 1.0
DEADLINE_INTERVAL_SECONDS = 5.0
TTL_INTERVAL_SECONDS = 10.0
STOP_PARTS_INTERVAL_SECONDS = 1.0
NOTIFY_INTERVAL_SECONDS = 1.0


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return credentials.kopf_connection() or kopf.login_via_client(**kwargs)


@kopf.on.startup()
async def on_startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Logger, **_: Any
) -> None:
    await startup.start(settings, memo, logger)


@kopf.on.cleanup()
async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    await startup.stop(memo)


@kopf.on.create(*JOBS)
async def on_create(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: Logger, **_: Any
) -> None:
    await jobs.reconcile(body, patch, memo, retry, logger)


@kopf.on.update(*JOBS, field="spec")
async def on_spec_change(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: Logger, **_: Any
) -> None:
    await jobs.reconcile(body, patch, memo, retry, logger)


@kopf.on.resume(*JOBS)
async def on_resume(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger: Logger, **_: Any
) -> None:
    await jobs.reconcile(body, patch, memo, retry, logger)


@kopf.on.delete(*JOBS)
async def on_delete(body: kopf.Body, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    await deletion.finalize(body, memo, logger)


@kopf.timer(
    *JOBS,
    interval=DEADLINE_INTERVAL_SECONDS,
    when=lambda spec, status, **_: lifecycle.has_deadline_running(spec, status),
)
async def deadline(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **_: Any
) -> None:
    await lifecycle.enforce_deadline(body, patch, memo, logger)


@kopf.timer(
    *JOBS,
    interval=STOP_PARTS_INTERVAL_SECONDS,
    when=lambda status, **_: lifecycle.has_parts_to_stop(status),
)
async def stop_parts(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **_: Any
) -> None:
    await lifecycle.stop_parts(body, patch, memo, logger)


@kopf.timer(
    *JOBS,
    interval=TTL_INTERVAL_SECONDS,
    when=lambda spec, status, **_: lifecycle.has_ttl_finished(spec, status),
)
async def ttl(body: kopf.Body, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    await lifecycle.expire(body, memo, logger)


@kopf.timer(
    *JOBS,
    interval=NOTIFY_INTERVAL_SECONDS,
    when=lambda spec, status, meta, memo, **_: notify.is_due(spec, status, meta, memo),
)
async def notify_receivers(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **_: Any
) -> None:
    await notify.tick(body, patch, memo, logger)


@kopf.on.event(*JOBS)
def phases(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    jobs.observe_phase(event.get("type"), body)


@kopf.index(*JOBS)
def pool_jobs(
    meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[str, JobView]:
    return pools.index_job(meta, spec, status)


@kopf.on.create(*POOLS)
@kopf.on.update(*POOLS, field="spec")
@kopf.on.resume(*POOLS)
async def pool_deployment(body: kopf.Body, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    await pools.reconcile(body, memo, logger)


@kopf.timer(*POOLS, interval=AUTOSCALE_INTERVAL_SECONDS)
async def autoscale(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **kwargs: Any
) -> None:
    await pools.autoscale_tick(body, patch, memo, kwargs["pool_jobs"], logger)
