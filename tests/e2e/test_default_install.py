"""The chart's default install, as `make up` and a plain `helm install` leave it: the default
pool is served by an autoscaled spot WorkerPool, not by a fixed worker Deployment.

The session's release has the fixed Deployment instead (tests/e2e/conftest.py); this module
installs `make up`'s values (the chart's default pool, at most 3 workers on the local stack)
for its test and puts the session's one fixed worker back afterwards.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kube_transcode_devstack import release as chart
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.e2e.helpers import (
    DEFAULT_POOL,
    DEFAULT_POOL_PODS,
    OPERATOR,
    WORKER,
    Jobs,
    Sources,
    ensure_ready,
    install_one_fixed_worker,
    phase,
    ready_pods,
    release_kubectl,
    transcode_job,
)
from tests.harness.kube import Kubectl
from tests.harness.storage import delete_objects

pytestmark = pytest.mark.e2e

BURST = 6  # 12 s sources: more than one worker gets through before the queue is empty
BURST_SECONDS = 300


@pytest.fixture(scope="module")
def default_install(release: Stack) -> Iterator[Stack]:
    chart.install_chart(release)  # `make up`'s values: nothing about workers but maxReplicas
    ensure_ready(release, OPERATOR, 1)
    k = release_kubectl(release)
    wait_until(
        "the default WorkerPool's first worker Ready (minReplicas 1)",
        lambda: ready_pods(k, DEFAULT_POOL_PODS),
        180,
        lambda: k("get", "workerpools,deployments,pods", "-o", "wide"),
    )
    yield release
    install_one_fixed_worker(release)


@pytest.fixture
def jobs(default_install: Stack, namespace: Kubectl, output_s3: Any) -> Iterator[Jobs]:
    """As conftest's `jobs`, without waiting for the fixed worker this install has not."""
    yield Jobs(namespace)
    namespace("delete", "transcodejobs", "--all", "--timeout=90s", check=False)
    delete_objects(output_s3, chart.DEFAULT_BUCKET, f"{namespace.namespace}/")


def pool_status(k: Kubectl) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(k("get", DEFAULT_POOL, "-o", "json")).get("status", {})
    return status


def test_the_default_pool_is_a_spot_workerpool_that_scales_with_its_queue(
    default_install: Stack, jobs: Jobs, sources: Sources
) -> None:
    k = release_kubectl(default_install)
    pool = json.loads(k("get", DEFAULT_POOL, "-o", "json"))
    assert (pool["spec"]["capacity"], pool["spec"]["minReplicas"]) == ("Spot", 1)
    assert pool["spec"]["maxReplicas"] == chart.LOCAL_MAX_WORKERS >= 3
    assert k("get", WORKER, "--ignore-not-found", "-o", "name").strip() == "", "no fixed worker"

    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            seen.append(pool_status(k))
            stop.wait(0.5)

    poller = threading.Thread(target=record, daemon=True)
    poller.start()
    names = [f"default-{n}" for n in range(BURST)]
    try:
        # No spec.pool: the jobs go to the default pool.
        jobs.apply(*(transcode_job(name, sources.medium.url) for name in names))
        finished = jobs.wait_finished(names, BURST_SECONDS)
    finally:
        stop.set()
        poller.join(5)

    assert {n: phase(j) for n, j in finished.items()} == dict.fromkeys(names, "Succeeded")
    assert {j["spec"]["pool"] for j in finished.values()} == {"default"}
    workers = {j["status"]["worker"] for j in finished.values()}
    assert len(workers) >= 2, f"one worker did everything: {workers}"
    # Scaled to its max at once; new workers may take jobs before their readiness probe passes.
    desired = max(s.get("desiredReplicas", 0) for s in seen)
    replicas = max(s.get("replicas", 0) for s in seen)
    assert desired == replicas == chart.LOCAL_MAX_WORKERS, seen[-1]
    assert all(w.startswith("default-workers-") for w in workers), workers
    status = pool_status(k)
    assert status["queue"] == "transcode.default"
    assert status["readyReplicas"] >= 1, status  # never below minReplicas
    print(f"{BURST} jobs on {len(workers)} workers; replicas up to {replicas}")
