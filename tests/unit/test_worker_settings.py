"""The worker's settings: KT_ environment variables, validated with errors that name them."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from kube_transcode_worker.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("KT_") or name in ("POD_NAME", "POD_IP"):
            monkeypatch.delenv(name)


def test_defaults_need_only_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_RABBITMQ_URL", "amqp://u:hunter2@rabbit:5672/%2F")
    settings = load_settings()
    assert settings.queue == "transcode"
    assert settings.metrics_bind_address == "0.0.0.0"  # noqa: S104
    assert settings.allowed_source_networks == ()
    assert settings.allow_http_sources is False
    assert "hunter2" not in repr(settings)


def test_environment_overrides_and_downward_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "KT_RABBITMQ_URL": "amqp://rabbit/",
        "KT_QUEUE": "transcode.gpu",
        "KT_S3_ENDPOINT_URL": "http://minio:9000",
        "KT_ALLOWED_SOURCE_NETWORKS": "10.20.0.0/16, fd00:1::/64",
        "KT_MAX_SOURCE_BYTES": "1000",
        "KT_FFMPEG_PRESET": "ultrafast",
        "KT_WORK_DIR": str(tmp_path),
        "POD_NAME": "worker-abc",
        "POD_IP": "10.1.2.3",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.allowed_source_networks == (
        ip_network("10.20.0.0/16"),
        ip_network("fd00:1::/64"),
    )
    assert (settings.pod_name, settings.metrics_bind_address) == ("worker-abc", "10.1.2.3")
    assert settings.worker_dir == tmp_path / "worker-abc"
    assert settings.probe_limits.max_duration_seconds == settings.max_duration_seconds


def test_bad_values_are_reported_by_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_FFMPEG_PRESET", "turbo")
    monkeypatch.setenv("KT_ALLOWED_SOURCE_NETWORKS", "10.0.0.0/33")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert "KT_RABBITMQ_URL: Field required" in text
    assert "KT_FFMPEG_PRESET" in text and "KT_ALLOWED_SOURCE_NETWORKS" in text
