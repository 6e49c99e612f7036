"""The operator in-process (kopf's KopfRunner) against the real API server and RabbitMQ:
kubectl apply -> one confirmed message at the job's priority -> worker events -> status."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, TypeVar

import pika
import pytest

from kube_transcode.chunks import ChunkCounts
from kube_transcode.messages import (
    ChunkReport,
    JobOutputs,
    Phase,
    RenditionOutput,
    decode_cancel,
)
from kube_transcode_devstack.waiting import wait_until
from tests.harness.broker import Vhost
from tests.harness.kube import Kubectl
from tests.harness.operator import (
    QUEUE,
    amqp,
    apply_job,
    apply_template,
    condition,
    event_reasons,
    get_job,
    ready_messages,
    running_operator,
    send_event,
    take_job,
    wait_phase,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")


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
        header, row = namespace("get", "tj", "movie").splitlines()
        assert row[header.index("PROGRESS") :].split()[0] == "55"  # the Progress column

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
        {
            "name": "480p",
            "resolution": "854x480",
            "bandwidth": 2_300_000,
            "codecs": "avc1.64001e,mp4a.40.2",
        }
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
            staged = f".kube-transcode/work/{uid}/1/source"  # a chunked job's work area
            s3.put_object(Bucket=bucket, Key=staged, Body=b"staged source")
            namespace("delete", "tj", "doomed", "--wait=true", "--timeout=30s")
        method, _, body = control.basic_get(heard, auto_ack=True)
    assert method is not None, "no cancel was broadcast"
    assert json.loads(body)["job"]["uid"] == uid
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert f"{prefix}/240p/segment_00000.ts" not in keys
    assert staged not in keys
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


@pytest.mark.usefixtures("crd", "operator_env")
def test_events_that_cannot_apply_yet_hold_back_no_other_job_and_apply_in_order_later(
    namespace: Kubectl, vhost: Vhost
) -> None:
    with running_operator(namespace.namespace):
        for name in ("early", "other"):
            apply_job(namespace, name)
            wait_phase(namespace, name, "Queued")
        messages = {m.job.name: m for m in (take_job(vhost)[0], take_job(vhost)[0])}
        # A worker reporting on the next generation before the operator recorded publishing
        # it: four events that cannot apply yet (and that no newer one carries)...
        ahead = messages["early"].model_copy(
            update={"job": messages["early"].job.model_copy(update={"generation": 2})}
        )
        send_event(vhost, ahead, Phase.fetching)
        send_event(vhost, ahead, Phase.requeued, reason="SourceUnreachable",
                   message="connection reset", next_attempt=2)  # fmt: skip
        send_event(vhost, ahead, Phase.probing, attempt=2)
        send_event(vhost, ahead, Phase.failed, attempt=2, reason="UnsupportedCodec",
                   message="no decoder for prores_raw")  # fmt: skip
        # ...then another job's progress, which must not wait for them.
        sent = time.monotonic()
        send_event(vhost, messages["other"], Phase.transcoding, progress_percent=30.0)
        wait_until(
            "the other job to run",
            lambda: get_job(namespace, "other")["status"].get("progress") == 30,
            10,
            interval=0.05,
        )
        delay = time.monotonic() - sent
        early = get_job(namespace, "early")["status"]
        assert (early["phase"], early["attempts"]) == ("Queued", 1)  # nothing applied early

        # The spec changes: generation 2 is published, and the held events apply, in order.
        namespace("patch", "tj", "early", "--type=merge", "-p", '{"spec":{"priority":"high"}}')
        failed = wait_phase(namespace, "early", "Failed", timeout=30)

        def reasons() -> set[str] | None:
            seen = set(event_reasons(namespace, "early"))
            return seen if "Failed" in seen else None

        posted = wait_until("the early job's Failed event", reasons, 30)
    print(f"another job's progress applied {delay:.3f} s after it was sent")
    assert delay < 1.0
    assert failed["status"]["observedGeneration"] == 2
    assert failed["status"]["attempts"] == 2
    assert condition(failed, "Failed")["reason"] == "UnsupportedCodec"
    assert "AttemptFailed" in posted  # the requeue applied before the failure, not after


def _part(task: str, done: int = 0, *, stored: bool = False, total: int = 4) -> ChunkReport:
    return ChunkReport(task=task, counts=ChunkCounts(total=total, done=done), stored=stored)


@pytest.mark.usefixtures("crd", "operator_env")
def test_a_chunked_job_shows_its_chunks_and_a_part_failing_fails_it_and_stops_the_others(
    namespace: Kubectl, vhost: Vhost
) -> None:
    with amqp(vhost) as control:
        control.exchange_declare("kube-transcode.control", exchange_type="fanout", durable=True)
        heard = control.queue_declare("", exclusive=True).method.queue
        control.queue_bind(heard, "kube-transcode.control")
        with running_operator(namespace.namespace):
            apply_job(namespace, "film", chunking={"chunkSeconds": 12})
            wait_phase(namespace, "film", "Queued")
            message, _ = take_job(vhost)
            assert (message.chunking.mode, message.chunking.chunk_seconds) == ("Auto", 12)

            # The job's worker planned three video chunks and the audio.
            send_event(vhost, message, Phase.transcoding, chunk=_part("plan"))
            # Parts report with their own attempts, from other workers, in any order.
            send_event(vhost, message, Phase.transcoding, attempt=2, progress_percent=50.0,
                       chunk=_part("chunk-0000"))  # fmt: skip
            send_event(vhost, message, Phase.uploading, progress_percent=100.0,
                       chunk=_part("chunk-0001", 1, stored=True))  # fmt: skip
            running = wait_until(
                "one chunk done and one running",
                lambda: (
                    (j := get_job(namespace, "film"))["status"].get("chunks", {}).get("done") == 1
                    and j["status"]["chunks"]["running"] == 1
                    and j
                ),
                30,
            )
            status = running["status"]
            assert status["chunks"] == {"total": 4, "done": 1, "running": 1, "redone": 0,
                                        "summary": "1/4", "workers": ["worker-0"]}  # fmt: skip
            assert (status["phase"], status["progress"], status["attempts"]) == ("Running", 37, 1)
            header, row = namespace("get", "tj", "film").splitlines()
            assert row[header.index("CHUNKS") :].split()[0] == "1/4"
            assert row[header.index("PROGRESS") :].split()[0] == "37"

            send_event(vhost, message, Phase.requeued, attempt=2, reason="WorkerShutdown",
                       message="SIGTERM", next_attempt=2, chunk=_part("chunk-0000", 1))  # fmt: skip
            wait_until("the requeue's Event",
                       lambda: "ChunkRequeued" in event_reasons(namespace, "film"), 30)  # fmt: skip
            assert get_job(namespace, "film")["status"]["phase"] == "Running"

            send_event(vhost, message, Phase.failed, attempt=3, reason="EncoderCrashed",
                       message="x264 aborted", chunk=_part("chunk-0002", 1))  # fmt: skip
            failed = wait_phase(namespace, "film", "Failed")
            stopped = wait_until(
                "the other parts stopped",
                lambda: (
                    (j := get_job(namespace, "film"))["status"]["chunks"].get("partsStopped") and j
                ),
                30,
            )
            _, _, body = control.basic_get(heard, auto_ack=True)
    assert condition(failed, "Failed")["reason"] == "EncoderCrashed"
    assert condition(failed, "Failed")["message"] == (
        "chunk-0002 failed on attempt 3 (EncoderCrashed): x264 aborted"
    )
    assert stopped["status"]["chunks"]["failedPart"] == "chunk-0002"
    assert body is not None, "no cancel was broadcast"
    cancel = decode_cancel(body)
    assert (cancel.job.uid, cancel.job.generation) == (failed["metadata"]["uid"], 1)
    assert cancel.reason == "ChunkFailed" and "chunk-0002" in cancel.message
    assert {"Planned", "ChunkRequeued", "Failed", "ChunksStopped"} <= set(
        event_reasons(namespace, "film")
    )


@pytest.mark.usefixtures("crd", "operator_env")
def test_a_template_s_segments_that_do_not_divide_the_job_s_chunks_fail_it_with_the_reason(
    namespace: Kubectl, vhost: Vhost
) -> None:
    apply_template(namespace, "long-segments", hls={"segmentSeconds": 10}).check_returncode()
    with running_operator(namespace.namespace):
        apply_job(namespace, "odd", template="long-segments", chunking={"chunkSeconds": 24})
        failed = wait_phase(namespace, "odd", "Failed")
    assert condition(failed, "Failed")["reason"] == "InvalidSpec"
    assert failed["status"]["message"] == (
        "chunking.chunkSeconds must be a whole number of hls.segmentSeconds (10) (with "
        "TranscodeTemplate long-segments): chunkSeconds 24 is not a whole number of 10 s segments"
    )
    with amqp(vhost) as channel, pytest.raises(pika.exceptions.ChannelClosedByBroker):
        channel.queue_declare(QUEUE, passive=True)  # nothing was published
