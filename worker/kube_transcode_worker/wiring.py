"""The pipeline's I/O parts built from settings, once, for the worker and the CLI alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from pydantic import SecretStr

from kube_transcode_worker.fetch import Fetcher, HttpFetcher, S3Fetcher
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.settings import StorageSettings, WorkerSettings
from kube_transcode_worker.store import LadderStore
from kube_transcode_worker.tools import JobTools


def s3_client(settings: StorageSettings) -> Any:
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


def has_s3_credentials(settings: StorageSettings) -> bool:
    """Keys in the settings, or anywhere boto3 looks (profile, instance role, web identity)."""
    if settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None:
        return True
    return boto3.Session().get_credentials() is not None


def build_fetcher(settings: StorageSettings, client: Any) -> Fetcher:
    """Every source scheme a job may name, with the configured guards."""
    http = HttpFetcher(
        allowed_networks=settings.allowed_source_networks,
        allow_http=settings.allow_http_sources,
        max_bytes=settings.max_source_bytes,
        connect_timeout=settings.fetch_connect_timeout_seconds,
        read_timeout=settings.fetch_read_timeout_seconds,
        max_redirects=settings.fetch_max_redirects,
    )
    return Fetcher(http, S3Fetcher(client, max_bytes=settings.max_source_bytes))


def build_store(
    settings: StorageSettings, client: Any, on_bytes: Callable[[int], None] | None = None
) -> LadderStore:
    return LadderStore(
        client,
        concurrency=settings.upload_concurrency,
        attempts=settings.upload_attempts,
        on_bytes=on_bytes,
    )


def build_tools(settings: WorkerSettings, metrics: WorkerMetrics) -> JobTools:
    """What the queue worker's jobs use: one S3 client for fetching and storing."""
    client = s3_client(settings)
    store = build_store(settings, client, on_bytes=metrics.uploaded_bytes.inc)
    return JobTools(settings, build_fetcher(settings, client), store, metrics)


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
