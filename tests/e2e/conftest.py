"""End-to-end fixtures: the chart installed with the real helm, sources in MinIO, jobs per test.

The release is (re)installed once per session with `helm upgrade --install`, which also puts
back what a test or a person changed by hand. It serves the default pool with the chart's fixed
worker Deployment of one Pod (`WORKERS`, explicitly: the chart's default is an autoscaled
WorkerPool), so jobs run one at a time. Integration modules pause the installed operator
(`installed_operator_paused`); whatever ran before, the operator and the one worker are left
with one Ready Pod each, before the e2e tests and after them.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube_transcode_devstack import release as chart
from kube_transcode_devstack.services import MinIO, RabbitMQ
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.e2e.helpers import (
    OPERATOR,
    PRESET,
    WORKER,
    WORKERS,
    Jobs,
    Source,
    Sources,
    ensure_ready,
    install_one_fixed_worker,
    release_kubectl,
)
from tests.harness.kube import Kubectl
from tests.harness.media import make_source
from tests.harness.storage import delete_objects


@pytest.fixture(scope="session")
def release(kube: Stack, rabbitmq: RabbitMQ, minio: MinIO) -> Iterator[Stack]:
    chart.ensure_buckets(kube)
    install_one_fixed_worker(kube)
    yield kube
    if kube.rabbitmq.proc.running():
        ensure_ready(kube, OPERATOR, 1)
        ensure_ready(kube, WORKER, WORKERS)


@pytest.fixture(scope="session")
def sources(release: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    s3: Any = chart.s3_client(release)
    folder = tmp_path_factory.mktemp("sources")
    prefix = f"e2e-{secrets.token_hex(4)}"

    def upload(path: Path) -> Source:
        key = f"{prefix}/{path.name}"
        s3.upload_file(str(path), chart.SOURCES_BUCKET, key)
        return Source(f"s3://{chart.SOURCES_BUCKET}/{key}", path)

    def video(name: str, seconds: int) -> Source:
        path = folder / name
        return upload(
            make_source(path, width=640, height=360, seconds=seconds, preset=PRESET, qp=None)
        )

    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(random.Random(7).randbytes(256 * 1024))
    yield Sources(
        tiny=video("tiny.mp4", 2),
        medium=video("medium.mp4", 12),
        long=video("long.mp4", 60),
        corrupt=upload(corrupt),
        missing=f"s3://{chart.SOURCES_BUCKET}/{prefix}/no-such-video.mp4",
    )
    delete_objects(s3, chart.SOURCES_BUCKET, f"{prefix}/")


@pytest.fixture
def output_s3(release: Stack) -> Any:
    return chart.s3_client(release)


def wait_release_serving(stack: Stack, timeout: float = 180) -> None:
    """The installed operator and worker Ready. Another pytest session's integration module
    may have paused the operator (installed_operator_paused), a spot interruption may be
    moving the worker: wait for them rather than start a second operator beside that one."""
    k = release_kubectl(stack)

    def ready(deployment: str) -> bool:
        """All the Pods the Deployment asks for (a module may have scaled the workers)."""
        out = k(
            "get", deployment, "-o", "jsonpath={.spec.replicas} {.status.readyReplicas}",
            check=False,
        )  # fmt: skip
        wanted, _, ready_now = out.strip().partition(" ")
        return bool(wanted) and wanted == ready_now

    wait_until(
        "the release's operator and workers Ready (is another test session pausing them?)",
        lambda: ready(OPERATOR) and ready(WORKER),
        timeout,
        lambda: k("get", "deployments,pods", "-o", "wide"),
    )


@pytest.fixture
def jobs(release: Stack, namespace: Kubectl, output_s3: Any) -> Iterator[Jobs]:
    """This test's namespace, as a user applying TranscodeJobs sees it. Afterwards its jobs are
    deleted (the operator's finalizer runs) and what they wrote to the default bucket too."""
    wait_release_serving(release)
    yield Jobs(namespace)
    namespace("delete", "transcodejobs", "--all", "--timeout=90s", check=False)
    delete_objects(output_s3, chart.DEFAULT_BUCKET, f"{namespace.namespace}/")
