"""`kube-transcode-worker`: read settings, serve probes and metrics, consume until SIGTERM.

Exit status: 0 after a clean stop (SIGTERM or SIGINT: the running job is requeued), 2 when the
configuration is invalid.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any

import boto3
from botocore.config import Config

from kube_transcode_worker.consumer import Consumer
from kube_transcode_worker.fetch import Fetcher, HttpFetcher, S3Fetcher
from kube_transcode_worker.health import HealthState, serve
from kube_transcode_worker.job import JobTools
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.settings import SettingsError, WorkerSettings, load_settings
from kube_transcode_worker.store import LadderStore

log = logging.getLogger("kube_transcode_worker")


def s3_client(settings: WorkerSettings) -> Any:
    """One client for sources and outputs; retries are the store's own (see store.py)."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=_secret(settings.s3_access_key_id),
        aws_secret_access_key=_secret(settings.s3_secret_access_key),
        region_name=settings.s3_region,
        config=Config(
            retries={"total_max_attempts": 1},
            connect_timeout=settings.fetch_connect_timeout_seconds,
            read_timeout=settings.fetch_read_timeout_seconds,
            max_pool_connections=settings.upload_concurrency + 2,
        ),
    )


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def build_tools(settings: WorkerSettings, metrics: WorkerMetrics) -> JobTools:
    client = s3_client(settings)
    http = HttpFetcher(
        allowed_networks=settings.allowed_source_networks,
        allow_http=settings.allow_http_sources,
        max_bytes=settings.max_source_bytes,
        connect_timeout=settings.fetch_connect_timeout_seconds,
        read_timeout=settings.fetch_read_timeout_seconds,
        max_redirects=settings.fetch_max_redirects,
    )
    store = LadderStore(
        client,
        concurrency=settings.upload_concurrency,
        attempts=settings.upload_attempts,
        on_bytes=metrics.uploaded_bytes.inc,
    )
    return JobTools(
        settings,
        Fetcher(http, S3Fetcher(client, max_bytes=settings.max_source_bytes)),
        store,
        metrics,
    )


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"kube-transcode-worker: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
    metrics = WorkerMetrics()
    health = HealthState(stall_seconds=max(60.0, 3.0 * settings.heartbeat_seconds))
    server = serve(health, metrics.registry, settings.metrics_bind_address, settings.metrics_port)
    consumer = Consumer(settings, build_tools(settings, metrics), health)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        consumer.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        consumer.run()
    finally:
        server.shutdown()
    log.info("stopped")


if __name__ == "__main__":
    main()
