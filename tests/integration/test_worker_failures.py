"""How the worker fails: shutdown requeues, bad jobs are dead-lettered, transient ones retried."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube_transcode.messages import (
    ATTEMPT_HEADER,
    MESSAGE_HEADER,
    REASON_HEADER,
    JobMessage,
    Phase,
    decode_job,
)
from kube_transcode_devstack.waiting import wait_until
from tests.harness.broker import QUEUE, Broker
from tests.harness.http_stub import Reply, StubServer
from tests.harness.media import make_audio_only, make_source
from tests.harness.storage import upload_source
from tests.harness.worker import Workers, job_message

pytestmark = pytest.mark.integration


def test_sigterm_mid_encode_requeues_quickly_with_the_same_attempt(
    workers: Workers, broker: Broker, s3: Any, bucket: str, tmp_path: Path
) -> None:
    source = make_source(tmp_path / "longer.mp4", width=640, height=360, seconds=20)
    message = job_message(bucket, upload_source(s3, bucket, source))
    worker = workers.start(ffmpeg_preset="veryslow")
    broker.publish(message)

    def encoding() -> bool:
        broker.poll_events()
        return any(
            e.job.uid == message.job.uid and e.phase == Phase.transcoding and e.progress_percent > 0
            for e in broker.events
        )

    wait_until("the encode to make progress", encoding, 60)
    signalled = time.monotonic()
    worker.terminate()
    assert worker.wait_exit(30) == 0, worker.log()[-3000:]
    stop_seconds = time.monotonic() - signalled
    assert stop_seconds < 10, f"took {stop_seconds:.1f} s to stop"

    requeued = broker.event(message.job.uid, Phase.requeued, timeout=5)
    assert requeued.reason == "WorkerShutdown" and requeued.next_attempt == 1
    back = broker.get(QUEUE)
    assert back is not None, "the job is not back in the queue"
    again = decode_job(back[1])
    assert again.job == message.job and again.attempt == message.attempt == 1
    print(f"SIGTERM to exit: {stop_seconds:.2f} s")


@pytest.fixture
def flaky_server() -> Iterator[StubServer]:
    with StubServer({"/busy.mp4": Reply(503, b"try later")}) as server:
        yield server


def test_each_bad_job_is_dead_lettered_with_a_reason_and_the_worker_keeps_serving(
    workers: Workers, broker: Broker, s3: Any, bucket: str, small_source: Path, tmp_path: Path
) -> None:
    not_video = upload_source(s3, bucket, make_audio_only(tmp_path / "tone.m4a"))
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    bad: list[tuple[JobMessage | bytes, str]] = [
        (b"{not json", "InvalidMessage"),
        (b'{"schema_version": 1, "job": {"uid": "x"}}', "InvalidMessage"),
        (job_message(bucket, f"s3://{bucket}/sources/missing.mp4"), "SourceNotFound"),
        (job_message(bucket, not_video), "NoVideoStream"),
        (job_message(bucket, upload_source(s3, bucket, text)), "UnreadableSource"),
        (job_message(bucket, "https://127.0.0.1/video.mp4"), "ForbiddenSourceAddress"),
        (
            job_message(bucket, "https://169.254.169.254/latest/meta-data/"),
            "ForbiddenSourceAddress",
        ),
    ]
    good = job_message(bucket, upload_source(s3, bucket, small_source))
    for body, _ in bad:
        broker.publish(body)
    broker.publish(good)
    worker = workers.start()

    broker.event(good.job.uid, Phase.succeeded, timeout=90)
    letters = broker.dead_letters(len(bad), timeout=10)
    assert [headers[REASON_HEADER] for headers, _ in letters] == [reason for _, reason in bad]
    for headers, _body in letters:
        assert headers[MESSAGE_HEADER], headers  # a sentence for the human reading the queue
    for (headers, body), (sent, _) in zip(letters[2:], bad[2:], strict=True):
        assert decode_job(body) == sent  # the original job, for inspection or a replay
        assert headers[ATTEMPT_HEADER] == 1  # permanent: dead-lettered at once, no retries
        failed = broker.event(decode_job(body).job.uid, Phase.failed, timeout=5)
        assert failed.reason == headers[REASON_HEADER]
    assert "Traceback" not in worker.log()
    assert worker.process.poll() is None


def test_transient_source_failure_is_retried_then_dead_lettered(
    workers: Workers, broker: Broker, bucket: str, flaky_server: StubServer
) -> None:
    message = job_message(bucket, f"{flaky_server.base}/busy.mp4", max_attempts=3)
    workers.start(allowed_source_networks="127.0.0.0/8", allow_http_sources="true")
    broker.publish(message)

    failed = broker.event(message.job.uid, Phase.failed, timeout=60)
    assert failed.reason == "SourceUnavailable" and failed.attempt == 3
    requeued = [e for e in broker.events if e.job.uid == message.job.uid and e.phase == "requeued"]
    assert [(e.attempt, e.next_attempt) for e in requeued] == [(1, 2), (2, 3)]
    assert all(e.retry_at is not None and e.reason == "SourceUnavailable" for e in requeued)
    ((headers, body),) = broker.dead_letters(1)
    assert headers[REASON_HEADER] == "SourceUnavailable"
    assert "503" in headers[MESSAGE_HEADER] and "3 of 3 attempts" in headers[MESSAGE_HEADER]
    assert decode_job(body).attempt == 3
    assert broker.get(QUEUE) is None
