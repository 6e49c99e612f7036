"""Fixtures that start the local stack's parts (or reuse running ones) and isolate each test.

Parts start on demand: a test that needs only RabbitMQ does not wait for the control plane.
Whatever a session started, it stops at the end; what was already running is left running.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from kube_transcode_devstack.layout import tools_bin
from kube_transcode_devstack.services import MinIO, RabbitMQ
from kube_transcode_devstack.stack import Stack

# Re-exported (`as`) for the test modules that still import them from here, not tests.harness.
from tests.harness import ROOT
from tests.harness.broker import Vhost
from tests.harness.kube import Kubectl
from tests.harness.storage import delete_objects


@pytest.fixture(scope="session")
def stack() -> Stack:
    state = Path(os.environ.get("KT_STATE", ROOT / ".local"))
    return Stack.at(state)


def _started_for_session(
    request: pytest.FixtureRequest,
    running: Callable[[], bool],
    up: Callable[[], None],
    down: Callable[[], None],
) -> None:
    was_running = running()
    up()  # idempotent: waits for readiness either way
    if not was_running and not os.environ.get("KT_KEEP_STACK"):
        request.addfinalizer(down)


@pytest.fixture(scope="session")
def rabbitmq(request: pytest.FixtureRequest, stack: Stack) -> RabbitMQ:
    rabbit = stack.rabbitmq
    _started_for_session(request, rabbit.proc.running, rabbit.up, rabbit.down)
    return rabbit


@pytest.fixture(scope="session")
def minio(request: pytest.FixtureRequest, stack: Stack) -> MinIO:
    m = stack.minio
    _started_for_session(request, m.proc.running, m.up, m.down)
    return m


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, stack: Stack) -> Stack:
    """Control plane plus node agent; returns the stack (kubeconfig at stack.layout.kubeconfig)."""

    def running() -> bool:
        return stack.control_plane.kubeconfig_for("admin").exists() and all(
            pid is not None
            for name, pid, _ in stack.status()
            if name.startswith("kube") or name in ("etcd", "node-agent")
        )

    def up() -> None:
        stack.layout.make()
        stack.control_plane.up()
        stack.start_node_agent()
        stack.write_env()
        stack.wait_nodes_ready()

    def down() -> None:
        stack.node_agent.stop(grace_seconds=60)
        stack.control_plane.down()

    _started_for_session(request, running, up, down)
    return stack


@pytest.fixture
def vhost(rabbitmq: RabbitMQ) -> Iterator[Vhost]:
    """A RabbitMQ vhost of this test's own, deleted afterwards."""
    name = f"test-{secrets.token_hex(4)}"
    c = rabbitmq.creds
    auth = (c.rabbitmq_user, c.rabbitmq_password)
    base = rabbitmq.management_url
    requests.put(f"{base}/api/vhosts/{name}", auth=auth, timeout=10).raise_for_status()
    requests.put(
        f"{base}/api/permissions/{name}/{c.rabbitmq_user}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
        auth=auth,
        timeout=10,
    ).raise_for_status()
    url = f"amqp://{c.rabbitmq_user}:{c.rabbitmq_password}@127.0.0.1:{rabbitmq.ports.amqp}/{name}"
    yield Vhost(name=name, url=url, management_url=base, auth=auth)
    requests.delete(f"{base}/api/vhosts/{name}", auth=auth, timeout=30)


@pytest.fixture
def s3(minio: MinIO) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=minio.endpoint,
        aws_access_key_id=minio.creds.s3_access_key,
        aws_secret_access_key=minio.creds.s3_secret_key,
        region_name="us-east-1",
    )


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A bucket of this test's own, emptied and deleted afterwards."""
    name = f"test-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=name)
    yield name
    delete_objects(s3, name, "")
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def namespace(kube: Stack) -> Iterator[Kubectl]:
    """A namespace of this test's own, with kubectl bound to it; deleted afterwards."""
    name = f"test-{secrets.token_hex(4)}"
    k = Kubectl(kube.layout.kubeconfig, name, tools_bin())
    k("create", "namespace", name)
    yield k
    k("delete", "namespace", name, "--wait=false", check=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one suite, so `make test` can never skip one silently."""
    suites = {"unit", "integration", "e2e"}
    for item in items:
        marks = {m.name for m in item.iter_markers()} & suites
        if len(marks) != 1:
            raise pytest.UsageError(f"{item.nodeid}: mark it with exactly one of {sorted(suites)}")


@pytest.fixture(scope="module")
def installed_operator_paused(kube: Stack) -> Iterator[None]:
    """Tests that run their own operator in-process pause the one `make up` installed, so two
    operators never act on the same TranscodeJobs; it is scaled back afterwards."""
    k = Kubectl(kube.layout.kubeconfig, "kube-transcode", tools_bin())
    deployment = "deployment/kube-transcode-operator"
    replicas = k("get", deployment, "-o", "jsonpath={.spec.replicas}", check=False).strip()
    if not replicas.isdigit() or replicas == "0":
        yield
        return
    k("scale", deployment, "--replicas=0")
    k("wait", "pods", "-l", "app.kubernetes.io/component=operator", "--for=delete", "--timeout=90s")
    try:
        yield
    finally:
        k("scale", deployment, f"--replicas={replicas}")
