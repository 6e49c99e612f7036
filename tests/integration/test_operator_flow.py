"""The operator in-process (kopf's KopfRunner) against the real API server and RabbitMQ:
kubectl apply -> one confirmed message at the job's priority -> worker events -> status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import kubernetes
import pika
import pytest
from kopf.testing import KopfRunner

from kube_transcode.messages import (
    DEFAULT_EVENTS_EXCHANGE,
    JobEvent,
    JobMessage,
    JobOutputs,
    Phase,
    RenditionOutput,
    decode_job,
    encode,
    event_routing_key,
)
from kube_transcode_devstack.services import MinIO
from kube_transcode_devstack.stack import Stack
from tests.conftest import Kubectl, Vhost
from tests.integration.test_crd_transcodejob import install_crd
from tests.polling import wait_until

pytestmark = pytest.mark.integration

QUEUE = "transcode.default"
T = TypeVar("T")


@pytest.fixture(scope="module")
def crd(kube: Stack) -> None:
    install_crd(kube.layout.kubeconfig)


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


@pytest.mark.usefixtures("crd", "operator_env")
def test_apply_publishes_once_at_priority_and_restart_does_not_republish(
    namespace: Kubectl, vhost: Vhost
) -> None:
    with running_operator(namespace.namespace):
        apply_job(namespace, "first", priority="high")
        job = wait_phase(namespace, "first", "Queued")
    queued = condition(job, "Queued")
    assert queued["status"] == "True"
    assert queued["reason"] == "Published"
    assert queued["observedGeneration"] == job["metadata"]["generation"]
    assert job["status"]["attempts"] == 1
    assert "Queued" in event_reasons(namespace, "first")
    assert ready_messages(vhost) == 1

    with running_operator(namespace.namespace):
        # A job created after the restart is handled after the resume of the first one.
        apply_job(namespace, "second", priority="low")
        wait_phase(namespace, "second", "Queued")
    assert ready_messages(vhost) == 2

    first, priority = take_job(vhost)
    assert (first.job.name, priority, first.priority.value) == ("first", 3, "high")
    assert first.output.prefix == f"{namespace.namespace}/first"
    second, priority = take_job(vhost)
    assert (second.job.name, priority) == ("second", 1)


@pytest.mark.usefixtures("crd", "operator_env")
def test_worker_events_drive_status_to_succeeded(namespace: Kubectl, vhost: Vhost) -> None:
    with running_operator(namespace.namespace):
        apply_job(namespace, "movie", ladder={"preset": "mobile"})
        wait_phase(namespace, "movie", "Queued")
        message, _ = take_job(vhost)
        assert message.ladder.rungs == ("240p", "360p", "480p")

        send_event(vhost, message, Phase.transcoding, progress_percent=10.0)
        send_event(vhost, message, Phase.transcoding, progress_percent=55.5)
        running = wait_until(
            "progress 55",
            lambda: (j := get_job(namespace, "movie"))["status"].get("progress", 0) >= 55 and j,
            30,
        )
        assert running["status"]["phase"] == "Running"
        assert running["status"]["worker"] == "worker-0"
        assert condition(running, "Running")["reason"] == "Transcoding"
        assert "55" in namespace("get", "tj", "movie")  # the Progress column

        outputs = JobOutputs(
            master_uri=message.output.uri("master.m3u8"),
            renditions=(
                RenditionOutput(name="480p", width=854, height=480, bandwidth=2_300_000,
                                average_bandwidth=1_500_000, codecs="avc1.64001e,mp4a.40.2",
                                playlist_uri=message.output.uri("480p/index.m3u8")),
            ),
            has_audio=True,
        )  # fmt: skip
        send_event(vhost, message, Phase.succeeded, progress_percent=100.0, outputs=outputs)
        done = wait_phase(namespace, "movie", "Succeeded")
    status = done["status"]
    assert status["progress"] == 100
    assert status["outputs"]["masterPlaylist"] == message.output.uri("master.m3u8")
    assert status["outputs"]["masterPlaylistUrl"].endswith(
        f"/{message.output.bucket}/{namespace.namespace}/movie/master.m3u8"
    )
    assert status["outputs"]["renditions"] == [
        {"name": "480p", "resolution": "854x480", "bandwidth": 2_300_000}
    ]
    assert condition(done, "Succeeded")["status"] == "True"
    assert condition(done, "Running")["status"] == "False"
    assert "completionTime" in status

    def reasons() -> set[str] | None:
        seen = set(event_reasons(namespace, "movie"))
        return seen if "Succeeded" in seen else None

    assert {"Queued", "Started", "Succeeded"} <= wait_until("a Succeeded event", reasons, 30)


@pytest.mark.usefixtures("crd", "operator_env")
def test_failed_attempts_retry_then_fail_with_the_workers_reason(
    namespace: Kubectl, vhost: Vhost
) -> None:
    with running_operator(namespace.namespace):
        apply_job(namespace, "broken")
        wait_phase(namespace, "broken", "Queued")
        message, _ = take_job(vhost)
        send_event(vhost, message, Phase.fetching)
        wait_phase(namespace, "broken", "Running")
        send_event(vhost, message, Phase.requeued, reason="SourceUnreachable",
                   message="connection reset", next_attempt=2,
                   retry_at=datetime.now(UTC))  # fmt: skip
        retrying = wait_phase(namespace, "broken", "Retrying")
        assert retrying["status"]["attempts"] == 2
        assert "attempt 1 failed (SourceUnreachable)" in retrying["status"]["message"]

        send_event(vhost, message, Phase.probing, attempt=2)
        wait_phase(namespace, "broken", "Running")
        send_event(vhost, message, Phase.failed, attempt=2, reason="UnsupportedCodec",
                   message="no decoder for prores_raw")  # fmt: skip
        failed = wait_phase(namespace, "broken", "Failed")
    assert condition(failed, "Failed")["reason"] == "UnsupportedCodec"
    assert "no decoder for prores_raw" in condition(failed, "Failed")["message"]
    assert wait_until("a Failed event", lambda: "Failed" in event_reasons(namespace, "broken"), 30)


@pytest.mark.usefixtures("crd", "operator_env")
def test_output_outside_the_namespace_is_refused_without_publishing(
    namespace: Kubectl, vhost: Vhost
) -> None:
    with running_operator(namespace.namespace):
        apply_job(namespace, "nosy", output={"prefix": "other-team/loot"})
        failed = wait_phase(namespace, "nosy", "Failed")
    assert condition(failed, "Failed")["reason"] == "OutputNotAllowed"
    assert f"may only write under '{namespace.namespace}/'" in failed["status"]["message"]
    with amqp(vhost) as channel, pytest.raises(pika.exceptions.ChannelClosedByBroker):
        channel.queue_declare(QUEUE, passive=True)  # never even declared


@pytest.mark.usefixtures("crd", "operator_env")
def test_deleting_a_queued_job_cancels_it_and_removes_partial_outputs(
    namespace: Kubectl, vhost: Vhost, s3: Any, bucket: str
) -> None:
    with amqp(vhost) as control:
        control.exchange_declare("kube-transcode.control", exchange_type="fanout", durable=True)
        heard = control.queue_declare("", exclusive=True).method.queue
        control.queue_bind(heard, "kube-transcode.control")
        with running_operator(namespace.namespace):
            apply_job(namespace, "doomed")
            wait_phase(namespace, "doomed", "Queued")
            prefix = f"{namespace.namespace}/doomed"
            s3.put_object(Bucket=bucket, Key=f"{prefix}/240p/segment_00000.ts", Body=b"partial")
            s3.put_object(Bucket=bucket, Key=f"{prefix}-2/keep.txt", Body=b"a neighbour")
            uid = get_job(namespace, "doomed")["metadata"]["uid"]
            namespace("delete", "tj", "doomed", "--wait=true", "--timeout=30s")
        method, _, body = control.basic_get(heard, auto_ack=True)
    assert method is not None, "no cancel was broadcast"
    assert json.loads(body)["job"]["uid"] == uid
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert f"{prefix}/240p/segment_00000.ts" not in keys
    assert f"{prefix}-2/keep.txt" in keys
    assert f".kube-transcode/cancelled/{uid}" in keys


@pytest.mark.usefixtures("crd", "operator_env")
def test_a_job_whose_output_bucket_is_gone_can_still_be_deleted(
    namespace: Kubectl, vhost: Vhost, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = f"gone-{namespace.namespace}"
    monkeypatch.setenv("KT_OUTPUT_BUCKETS", json.dumps({gone: [namespace.namespace]}))
    s3.create_bucket(Bucket=gone)
    with running_operator(namespace.namespace):
        apply_job(namespace, "orphan", output={"bucket": gone, "prefix": namespace.namespace})
        wait_phase(namespace, "orphan", "Queued")
        s3.delete_bucket(Bucket=gone)
        namespace("delete", "tj", "orphan", "--wait=true", "--timeout=30s")
    assert "orphan" not in namespace("get", "tj", "-o", "name")


@pytest.mark.usefixtures("crd", "operator_env")
def test_broker_down_is_a_condition_and_publishing_resumes(
    namespace: Kubectl, monkeypatch: pytest.MonkeyPatch, vhost: Vhost
) -> None:
    monkeypatch.setenv("KT_RABBITMQ_URL", "amqp://nobody:nothing@127.0.0.1:1/%2F")
    with running_operator(namespace.namespace):
        apply_job(namespace, "patient")
        pending = wait_phase(namespace, "patient", "Pending")
    queued = condition(pending, "Queued")
    assert (queued["status"], queued["reason"]) == ("False", "BrokerUnavailable")
    monkeypatch.setenv("KT_RABBITMQ_URL", vhost.url)
    with running_operator(namespace.namespace):
        wait_phase(namespace, "patient", "Queued")
    assert ready_messages(vhost) == 1


@pytest.mark.usefixtures("crd", "operator_env")
def test_a_job_past_its_deadline_fails_and_its_work_is_cancelled(
    namespace: Kubectl, vhost: Vhost
) -> None:
    with running_operator(namespace.namespace):
        apply_job(namespace, "slow", activeDeadlineSeconds=1)
        failed = wait_phase(namespace, "slow", "Failed", timeout=20)
    assert condition(failed, "Failed")["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds (1s)" in failed["status"]["message"]
    message, _ = take_job(vhost)
    assert message.deadline is not None  # the worker can enforce it too


@pytest.mark.usefixtures("crd", "operator_env")
def test_finished_jobs_are_deleted_after_their_ttl_within_seconds(
    namespace: Kubectl, vhost: Vhost
) -> None:
    # The TTL timer deletes its own job, so it is still running when the deletion arrives;
    # kopf must not leave the finalizer waiting for it (its default re-check is 60 s).
    names = [f"shortlived-{index}" for index in range(6)]
    with running_operator(namespace.namespace):
        for name in names:
            apply_job(namespace, name, ttlSecondsAfterFinished=0)
        for name in names:
            wait_phase(namespace, name, "Queued")
        for _ in names:
            message, _ = take_job(vhost)
            send_event(vhost, message, Phase.failed, reason="SourceNotFound", message="404")
        wait_until(
            "the finished jobs to be deleted",
            lambda: not namespace("get", "tj", "-o", "name").strip(),
            20,
        )
