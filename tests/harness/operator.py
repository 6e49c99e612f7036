"""The operator as integration tests run it: kopf's KopfRunner in this process against the
real API server and RabbitMQ, and the worker's side of the conversation (take a job message,
send its events) played by the test."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pika
from kopf.testing import KopfRunner

from kube_transcode.messages import (
    DEFAULT_EVENTS_EXCHANGE,
    JobEvent,
    JobMessage,
    Phase,
    decode_job,
    encode,
    event_routing_key,
    job_queue_name,
)
from kube_transcode_devstack.waiting import wait_until
from tests.harness.broker import Vhost
from tests.harness.kube import Kubectl

QUEUE = job_queue_name("default")


@contextmanager
def running_operator(namespace: str) -> Iterator[KopfRunner]:
    args = ["run", "--standalone", "-n", namespace, "-m", "kube_transcode_operator.main"]
    with KopfRunner(args, timeout=60) as runner:
        yield runner
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output


def get_job(kubectl: Kubectl, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(kubectl("get", "tj", name, "-o", "json"))
    return body


def wait_phase(kubectl: Kubectl, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job = get_job(kubectl, name)
        return job if job.get("status", {}).get("phase") == phase else None

    return wait_until(f"{name} to be {phase}", probe, timeout)


def condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in job["status"]["conditions"] if c["type"] == type_)
    return found


def event_reasons(kubectl: Kubectl, name: str) -> list[str]:
    out = json.loads(
        kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    )
    return [e["reason"] for e in sorted(out["items"], key=lambda e: e["metadata"]["name"])]


def apply_job(kubectl: Kubectl, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "kubetranscode.io/v1alpha1",
        "kind": "TranscodeJob",
        "metadata": {"name": name},
        "spec": {"source": {"url": "s3://media/in/video.mp4"}, **spec},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))


def apply_template(kubectl: Kubectl, name: str, **spec: Any) -> subprocess.CompletedProcess[str]:
    """kubectl apply of a TranscodeTemplate; the result carries the API server's refusal."""
    body = {
        "apiVersion": "kubetranscode.io/v1alpha1",
        "kind": "TranscodeTemplate",
        "metadata": {"name": name},
        "spec": spec,
    }
    return kubectl.run("apply", "-f", "-", input=json.dumps(body))


@contextmanager
def amqp(vhost: Vhost) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(vhost.url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def ready_messages(vhost: Vhost) -> int:
    with amqp(vhost) as channel:
        count: int = channel.queue_declare(QUEUE, passive=True).method.message_count
        return count


def take_job(vhost: Vhost) -> tuple[JobMessage, int]:
    """What a worker would receive: the message and its AMQP priority."""
    with amqp(vhost) as channel:
        method, properties, body = channel.basic_get(QUEUE, auto_ack=True)
        assert method is not None, "the queue is empty"
        return decode_job(body), properties.priority


def send_event(vhost: Vhost, job: JobMessage, phase: Phase, **fields: Any) -> None:
    """What a worker would report about its attempt at `job`."""
    now = datetime.now(UTC)
    event = JobEvent(
        job=job.job,
        attempt=fields.pop("attempt", job.attempt),
        worker="worker-0",
        phase=phase,
        started_at=now,
        at=now,
        **fields,
    )
    with amqp(vhost) as channel:
        channel.basic_publish(
            DEFAULT_EVENTS_EXCHANGE,
            event_routing_key(job.job),
            encode(event),
            pika.BasicProperties(content_type="application/json", delivery_mode=2),
        )
