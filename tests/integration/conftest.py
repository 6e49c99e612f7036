"""Integration fixtures on top of tests/conftest.py: worker processes with the test's own
broker connection (tests.harness.worker, tests.harness.broker), media, the CRD installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from kube_transcode_devstack.services import MinIO
from kube_transcode_devstack.stack import Stack
from tests.harness.broker import Broker, Vhost
from tests.harness.kube import install_crd
from tests.harness.media import make_source
from tests.harness.worker import Workers


@pytest.fixture
def workers(vhost: Vhost, minio: MinIO, tmp_path: Path) -> Iterator[Workers]:
    """Start worker processes with workers.start(); all of them are killed afterwards."""
    pool = Workers(vhost, minio, tmp_path / "workers")
    pool.work_dir.mkdir()
    yield pool
    pool.stop_all()


@pytest.fixture
def broker(vhost: Vhost) -> Iterator[Broker]:
    b = Broker(vhost)
    yield b
    b.close()


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of 320x180 with a tone: a ladder in seconds."""
    folder = tmp_path_factory.mktemp("media")
    return make_source(folder / "small.mp4", width=320, height=180, seconds=3)


@pytest.fixture(scope="module")
def crd(kube: Stack) -> None:
    """The TranscodeJob and TranscodeTemplate CRDs installed (once per module)."""
    install_crd(kube.layout.kubeconfig)
    install_crd(kube.layout.kubeconfig, "transcodetemplates.yaml")


@pytest.fixture
def operator_env(
    monkeypatch: pytest.MonkeyPatch,
    kube: Stack,
    vhost: Vhost,
    minio: MinIO,
    bucket: str,
    installed_operator_paused: None,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.layout.kubeconfig))
    # kopf logs in through the client library, which read KUBECONFIG when it was imported.
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kube.layout.kubeconfig)
    )
    monkeypatch.setenv("KT_RABBITMQ_URL", vhost.url)
    monkeypatch.setenv("KT_S3_ENDPOINT_URL", minio.endpoint)
    monkeypatch.setenv("KT_S3_ACCESS_KEY_ID", minio.creds.s3_access_key)
    monkeypatch.setenv("KT_S3_SECRET_ACCESS_KEY", minio.creds.s3_secret_key)
    monkeypatch.setenv("KT_DEFAULT_BUCKET", bucket)
    monkeypatch.setenv("KT_METRICS_PORT", "0")
    monkeypatch.setenv("KT_CANCEL_GRACE_SECONDS", "5")
