"""A WorkerPool scaled by the installed operator, as a user sees it: kubectl and helm only.

A burst of short jobs scales a spot pool up from zero towards its max; every job finishes on
its first attempt; the pool returns to zero after the cooldown, and no scale-in ever stopped
a busy worker (no job was requeued). Then a spot interruption in the middle of a burst: the
evicted workers hand their jobs back, which finish elsewhere; none is lost or failed.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
import pytest

from kube_transcode.messages import dead_letter_name, job_queue_name
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.e2e.helpers import Jobs, Sources, release_kubectl, transcode_job
from tests.harness.kube import Kubectl, install_crd

pytestmark = pytest.mark.e2e

MAX_REPLICAS = 3
COOLDOWN_SECONDS = 10
BURST = 6
BURST_SECONDS = 240  # six tiny jobs on a loaded two-core machine, with room to spare


@pytest.fixture(scope="module")
def pool_crd(release: Stack) -> None:
    """helm installs crds/ only on a first install: an older release may lack this one."""
    install_crd(release.layout.kubeconfig, "workerpools.yaml")


@dataclass
class Replicas:
    """The pool Deployment's spec.replicas over time, polled in the background."""

    seen: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def highest(self) -> int:
        return max((r for _, r in self.seen), default=0)


@pytest.fixture
def pool(release: Stack, pool_crd: None) -> Iterator[str]:
    """A spot WorkerPool of this test's own in the release namespace (where the worker
    Secrets are), small and quick: jobs are tiny, the machine has two cores."""
    name = f"as-{secrets.token_hex(3)}"
    k = release_kubectl(release)
    body = {
        "apiVersion": "kubetranscode.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {
            "minReplicas": 0,
            "maxReplicas": MAX_REPLICAS,
            "jobsPerReplica": 1,
            "scaleDownCooldownSeconds": COOLDOWN_SECONDS,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            "env": [{"name": "KT_FFMPEG_PRESET", "value": "ultrafast"}],
                        }
                    ]
                }
            },
        },
    }
    k("apply", "-f", "-", input=json.dumps(body))
    yield name
    k("delete", "workerpool", name, "--wait=true", "--timeout=60s", check=False)
    k("wait", f"deployment/{name}-workers", "--for=delete", "--timeout=60s", check=False)
    remove_queues(release, name)


def remove_queues(stack: Stack, pool: str) -> None:
    """The pool's queues outlive it (they may hold jobs); this test's are empty by now."""
    queue = job_queue_name(pool)
    connection = pika.BlockingConnection(pika.URLParameters(stack.rabbitmq.url))
    try:
        channel = connection.channel()
        channel.queue_delete(dead_letter_name(queue), if_empty=True)
        channel.exchange_delete(dead_letter_name(queue))
        channel.queue_delete(queue, if_empty=True)
    finally:
        connection.close()


def deployment_replicas(k: Kubectl, pool: str) -> int | None:
    out = k("get", f"deployment/{pool}-workers", "-o", "jsonpath={.spec.replicas}", check=False)
    return int(out.strip()) if out.strip().isdigit() else None


def poll_replicas(k: Kubectl, pool: str, record: Replicas) -> None:
    while not record.stop.is_set():
        value = deployment_replicas(k, pool)
        if value is not None:
            record.seen.append((time.monotonic(), value))
        record.stop.wait(0.5)


def burst(jobs: Jobs, pool: str, source: str, prefix: str) -> list[str]:
    names = [f"{prefix}-{n}" for n in range(BURST)]
    jobs.apply(*(transcode_job(name, source, rungs=("240p",), pool=pool) for name in names))
    return names


def pool_pods(k: Kubectl, pool: str) -> list[dict[str, Any]]:
    out = k("get", "pods", "-l", f"kubetranscode.io/workerpool={pool}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def requeued(jobs: Jobs, names: list[str]) -> list[str]:
    """Work handed back: a whole job's (Requeued) or a chunked job's part (ChunkRequeued)."""
    return [
        f"{n}: {e['message']}"
        for n in names
        for reason in ("Requeued", "ChunkRequeued")
        for e in jobs.events(n, reason)
    ]


def test_a_burst_scales_up_from_zero_and_back_without_stopping_a_busy_worker(
    jobs: Jobs, sources: Sources, pool: str, release: Stack
) -> None:
    k = release_kubectl(release)
    wait_until(
        "the pool's Deployment at zero", lambda: deployment_replicas(k, pool) == 0, 60,
        lambda: k("get", "wp,deployments", "-o", "wide"),
    )  # fmt: skip
    record = Replicas()
    poller = threading.Thread(target=poll_replicas, args=(k, pool, record), daemon=True)
    poller.start()
    try:
        started = time.monotonic()
        names = burst(jobs, pool, sources.tiny.url, "burst")
        finished = jobs.wait_finished(names, BURST_SECONDS)
        drained = time.monotonic() - started
        wait_until(
            "the pool back at zero", lambda: deployment_replicas(k, pool) == 0,
            COOLDOWN_SECONDS + 60, lambda: k("get", "wp", pool, "-o", "yaml"),
        )  # fmt: skip
        wait_until(
            "the pool's workers gone", lambda: not pool_pods(k, pool), 60,
            lambda: k("get", "pods", "-o", "wide"),
        )  # fmt: skip
    finally:
        record.stop.set()
        poller.join(5)

    assert {n: j["status"]["phase"] for n, j in finished.items()} == dict.fromkeys(
        names, "Succeeded"
    )
    assert {j["status"]["attempts"] for j in finished.values()} == {1}
    # No scale-in stopped a busy worker: it would have handed its job back (WorkerShutdown).
    assert requeued(jobs, names) == []
    assert record.highest == MAX_REPLICAS, record.seen
    first_top = next(t for t, r in record.seen if r == MAX_REPLICAS)
    status = json.loads(k("get", "wp", pool, "-o", "json"))["status"]
    assert status["lastScaleReason"] == "ScaleToZero"
    assert status["queueDepth"]["ready"] == 0
    print(f"burst of {BURST}: drained in {drained:.1f}s; replicas seen {record.seen[-1]} "
          f"max after {first_top - started:.1f}s")  # fmt: skip


def test_a_spot_interruption_mid_burst_loses_and_fails_no_job(
    jobs: Jobs, sources: Sources, pool: str, release: Stack
) -> None:
    k = release_kubectl(release)
    # 60 s sources: jobs still run when the interruption comes (12 s ones can finish first).
    # Each is chunked (the default, 30 s chunks): 2 video chunks and the audio, 3 parts.
    names = burst(jobs, pool, sources.long.url, "spot")
    try:
        on_spot = wait_until(
            "a busy worker on spot-1",
            lambda: _busy_on(k, jobs, names, "spot-1"),
            120,
            lambda: k("get", "pods", "-o", "wide") + jobs.table(),
        )
        workers_on_spot = len(_pods_on(k, "spot-1"))
        assert release.interrupt("spot-1") == 0
        finished = jobs.wait_finished(names, BURST_SECONDS)
    finally:
        release.restore_nodes()
    assert {n: j["status"]["phase"] for n, j in finished.items()} == dict.fromkeys(
        names, "Succeeded"
    )
    # A job handed back by an interrupted worker comes back with the same attempt.
    assert {j["status"]["attempts"] for j in finished.values()} == {1}
    handed_back = requeued(jobs, names)
    assert handed_back, f"no job was running on spot-1 ({on_spot}) when it went"
    assert all("WorkerShutdown" in m for m in handed_back), handed_back
    # Only the parts in flight on spot-1 were encoded again: one per worker there, at most.
    chunks = [j["status"].get("chunks") or {} for j in finished.values()]
    assert all(c.get("total") == c.get("done") == 3 for c in chunks), chunks
    assert sum(c["redone"] for c in chunks) <= workers_on_spot, (chunks, workers_on_spot)


def _pods_on(k: Kubectl, node: str) -> list[str]:
    out = json.loads(k("get", "pods", "-o", "json", "--field-selector", f"spec.nodeName={node}"))
    return [p["metadata"]["name"] for p in out["items"]]


def _busy_on(k: Kubectl, jobs: Jobs, names: list[str], node: str) -> list[str]:
    """The burst's jobs Running on a worker Pod of `node`."""
    out = json.loads(k("get", "pods", "-o", "json", "--field-selector", f"spec.nodeName={node}"))
    on_node = {p["metadata"]["name"] for p in out["items"]}
    running = []
    for name, job in jobs.all().items():
        status = job.get("status", {})
        if name in names and status.get("phase") == "Running" and status.get("worker") in on_node:
            running.append(name)
    return running
