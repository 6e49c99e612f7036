"""WorkerPools with the operator in-process against the real API server, scheduler, node agent
and RabbitMQ: the Deployment follows the queue within seconds, shrinks after the cooldown,
never below (nor by removing) a busy worker, and urgent jobs leave a pool without capacity."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from kube_transcode.messages import (
    DEFAULT_EVENTS_EXCHANGE,
    JobEvent,
    JobMessage,
    Phase,
    decode_job,
    encode,
    event_routing_key,
    job_queue_name,
    now_utc,
)
from kube_transcode_devstack.layout import tools_bin
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from kube_transcode_operator.deletion_cost import BUSY_COST, DELETION_COST, IDLE_COST
from tests.harness.broker import Vhost
from tests.harness.kube import Kubectl
from tests.harness.operator import amqp, apply_job, get_job, running_operator, wait_phase

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Pods that run and are Ready but consume nothing: the test plays the workers itself.
IDLE_TEMPLATE = {
    "spec": {
        "containers": [
            {
                "name": "worker",
                "image": "kube-transcode/worker:test",
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }
        ]
    }
}
REACTION_LIMIT_SECONDS = 5.0


@pytest.fixture(scope="module")
def pool_crd(kube: Stack) -> None:
    kubectl = [str(tools_bin() / "kubectl"), "--kubeconfig", str(kube.layout.kubeconfig)]
    crd_file = ROOT / "crds" / "workerpools.yaml"
    subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(crd_file)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "--timeout=60s",
         "crd/workerpools.kubetranscode.io"],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def pool_env(monkeypatch: pytest.MonkeyPatch, vhost: Vhost) -> None:
    monkeypatch.setenv("KT_WORKER_TEMPLATE", json.dumps(IDLE_TEMPLATE))
    monkeypatch.setenv("KT_RABBITMQ_MANAGEMENT_URL", vhost.management_url)


def apply_pool(kubectl: Kubectl, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "kubetranscode.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}, **spec},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))


def replicas(kubectl: Kubectl, pool: str) -> int | None:
    out = kubectl(
        "get", f"deployment/{pool}-workers", "-o", "jsonpath={.spec.replicas}", check=False
    ).strip()
    return int(out) if out.isdigit() else None


def wait_replicas(kubectl: Kubectl, pool: str, want: int, timeout: float = 30) -> float:
    """Seconds until the Deployment asks for `want` replicas."""
    started = time.monotonic()
    wait_until(f"{pool} at {want} replicas", lambda: replicas(kubectl, pool) == want, timeout)
    return time.monotonic() - started


def pods(kubectl: Kubectl, pool: str) -> list[dict[str, Any]]:
    out = kubectl("get", "pods", "-l", f"kubetranscode.io/workerpool={pool}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def running_pods(kubectl: Kubectl, pool: str, count: int) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        found = pods(kubectl, pool)
        running = [p for p in found if p.get("status", {}).get("phase") == "Running"]
        return running if len(running) == count and len(found) == count else None

    return wait_until(f"{count} running pods of {pool}", probe, 60)


def publish(vhost: Vhost, queue: str, count: int) -> None:
    with amqp(vhost) as channel:
        channel.confirm_delivery()
        for n in range(count):
            channel.basic_publish(
                "", queue, f"filler {n}".encode(), pika.BasicProperties(delivery_mode=2)
            )


def drain_fillers(vhost: Vhost, queue: str) -> int:
    """Take (and ack) every message that is not a job message."""
    taken = 0
    with amqp(vhost) as channel:
        kept = []
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            if body.startswith(b"filler"):
                channel.basic_ack(method.delivery_tag)
                taken += 1
            else:
                kept.append(method.delivery_tag)
        for tag in kept:
            channel.basic_nack(tag, requeue=True)
    return taken


def send_event(vhost: Vhost, job: JobMessage, phase: Phase, worker: str, **fields: Any) -> None:
    """What the worker Pod `worker` would report about its attempt at `job`."""
    now = now_utc()
    event = JobEvent(
        job=job.job, attempt=job.attempt, worker=worker, phase=phase, started_at=now, at=now,
        **fields,
    )  # fmt: skip
    with amqp(vhost) as channel:
        channel.basic_publish(
            DEFAULT_EVENTS_EXCHANGE,
            event_routing_key(job.job),
            encode(event),
            pika.BasicProperties(content_type="application/json", delivery_mode=2),
        )


def pool_status(kubectl: Kubectl, pool: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(kubectl("get", "wp", pool, "-o", "json")).get("status", {})
    return status


@pytest.fixture
def pool_name() -> Iterator[str]:
    yield f"wp-{secrets.token_hex(3)}"


@pytest.mark.usefixtures("crd", "pool_crd", "operator_env", "pool_env")
def test_pool_follows_its_queue_and_never_drops_a_busy_worker(
    namespace: Kubectl, vhost: Vhost, pool_name: str
) -> None:
    queue = job_queue_name(pool_name)
    reactions: dict[str, float] = {}
    with running_operator(namespace.namespace):
        apply_pool(namespace, pool_name, maxReplicas=3, scaleDownCooldownSeconds=4)
        wait_replicas(namespace, pool_name, 0)
        deployment = json.loads(namespace("get", f"deployment/{pool_name}-workers", "-o", "json"))
        pod_spec = deployment["spec"]["template"]["spec"]
        assert pod_spec["automountServiceAccountToken"] is False
        assert {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
                "effect": "NoSchedule"} in pod_spec["tolerations"]  # fmt: skip
        assert {"name": "KT_QUEUE", "value": queue} in pod_spec["containers"][0]["env"]
        assert deployment["metadata"]["ownerReferences"][0]["kind"] == "WorkerPool"

        # Up at once: two messages -> two workers, then a job -> three.
        publish(vhost, queue, 2)
        reactions["0->2"] = wait_replicas(namespace, pool_name, 2, timeout=15)
        apply_job(namespace, "busy", pool=pool_name)
        wait_phase(namespace, "busy", "Queued")
        reactions["2->3"] = wait_replicas(namespace, pool_name, 3, timeout=15)
        # More than max stays at max: once a tick has seen all six waiting, it asked for 3.
        publish(vhost, queue, 3)
        wait_until(
            "the autoscaler to see 6 messages waiting",
            lambda: (pool_status(namespace, pool_name).get("queueDepth") or {}).get("ready") == 6,
            15,
        )
        assert replicas(namespace, pool_name) == 3

        # One pod takes the job (priority first): it is busy from its `fetching` event on.
        workers = running_pods(namespace, pool_name, 3)
        busy_pod = workers[1]["metadata"]["name"]
        with amqp(vhost) as channel:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            assert method is not None
        message = decode_job(body)
        assert message.job.name == "busy"
        send_event(vhost, message, Phase.fetching, worker=busy_pod)

        def costs() -> dict[str, str] | None:
            found = {
                p["metadata"]["name"]: p["metadata"].get("annotations", {}).get(DELETION_COST)
                for p in pods(namespace, pool_name)
            }
            return found if found.get(busy_pod) == BUSY_COST else None

        seen = wait_until("the busy pod's deletion cost", costs, 15)
        assert sorted(seen.values()) == [IDLE_COST, IDLE_COST, BUSY_COST]

        # The fillers go: demand is the busy job alone. Not before the cooldown, then to 1,
        # and the one left is the busy worker.
        assert drain_fillers(vhost, queue) == 5
        drained = time.monotonic()
        reactions["3->1 (4 s cooldown)"] = wait_replicas(namespace, pool_name, 1, timeout=20)
        assert time.monotonic() - drained >= 4 - 1.5  # the cooldown held (a tick of slack)
        wait_until(
            "only the busy pod to remain",
            lambda: [p["metadata"]["name"] for p in pods(namespace, pool_name)] == [busy_pod],
            30,
        )
        status = pool_status(namespace, pool_name)
        assert status["queueDepth"]["busyWorkers"] == 1
        assert status["desiredReplicas"] == 1
        assert status["lastScaleReason"] == "ScaleDown"

        # The job ends: the pool goes to zero after the cooldown.
        send_event(vhost, message, Phase.failed, worker=busy_pod, reason="Boom", message="x")
        wait_phase(namespace, "busy", "Failed")
        reactions["1->0 (4 s cooldown)"] = wait_replicas(namespace, pool_name, 0, timeout=20)
        status = pool_status(namespace, pool_name)
        assert status["lastScaleReason"] == "ScaleToZero"
        assert status["queueDepth"] == {"ready": 0, "unacknowledged": 0, "busyWorkers": 0}
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["QueueReachable"] == "True"
    print("reaction seconds:", json.dumps(reactions))
    assert reactions["0->2"] <= REACTION_LIMIT_SECONDS
    assert reactions["2->3"] <= REACTION_LIMIT_SECONDS


@pytest.mark.usefixtures("crd", "pool_crd", "operator_env", "pool_env")
def test_urgent_jobs_move_to_the_on_demand_pool_when_spot_pods_cannot_be_placed(
    namespace: Kubectl, vhost: Vhost, pool_name: str
) -> None:
    spot, on_demand = pool_name, f"{pool_name}-od"
    with running_operator(namespace.namespace):
        apply_pool(namespace, on_demand, maxReplicas=1, capacity="OnDemand")
        # No node has this label: like a spot pool when the spot capacity is gone.
        apply_pool(
            namespace,
            spot,
            maxReplicas=2,
            capacity="SpotOnly",
            template={"spec": {"nodeSelector": {"kube-transcode.dev/no-such-node": "x"},
                               "terminationGracePeriodSeconds": 1}},
            onDemandFallback={"pool": on_demand, "afterSeconds": 3, "priorities": ["high"]},
        )  # fmt: skip
        wait_replicas(namespace, spot, 0)
        apply_job(namespace, "urgent", pool=spot, priority="high")
        apply_job(namespace, "relaxed", pool=spot, priority="low")
        wait_phase(namespace, "urgent", "Queued")
        queued_at = time.monotonic()

        def moved() -> dict[str, Any] | None:
            job = get_job(namespace, "urgent")
            queued = next(c for c in job["status"]["conditions"] if c["type"] == "Queued")
            return job if queued["reason"] == "MovedToOnDemand" else None

        job = wait_until("the urgent job to move", moved, 30)
        waited = time.monotonic() - queued_at
        assert waited >= 3 - 1
        assert job["status"]["published"]["queue"] == job_queue_name(on_demand)
        assert job["status"]["phase"] == "Queued"
        assert job["status"]["attempts"] == 1
        reasons = json.loads(
            namespace("get", "events", "--field-selector", "involvedObject.name=urgent",
                      "-o", "json")
        )["items"]  # fmt: skip
        assert "MovedToOnDemand" in {e["reason"] for e in reasons}
        # The on-demand pool scales up for it; the spot pool keeps only the low-priority job.
        wait_replicas(namespace, on_demand, 1, timeout=15)
        status = pool_status(namespace, spot)
        assert status["movedToOnDemand"] == 1
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Schedulable"]["status"] == "False"
    with amqp(vhost) as channel:
        left = channel.queue_declare(job_queue_name(spot), passive=True).method.message_count
        method, properties, body = channel.basic_get(job_queue_name(on_demand), auto_ack=True)
    assert left == 1
    assert method is not None
    message = decode_job(body)
    assert (message.job.name, message.attempt, properties.priority) == ("urgent", 1, 3)
