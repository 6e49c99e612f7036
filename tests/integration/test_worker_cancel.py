"""Cancelling: a JobCancel stops the running encode, a cancel marker drops queued work.

Both as the operator does it (see kube_transcode.messages): the marker object in the output
bucket, and the broadcast on the fanout control exchange. Workers run as processes
(tests.harness.worker).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pika
import pytest

from kube_transcode.messages import (
    CANCELLED_REASON,
    CONTENT_TYPE,
    CONTROL_EXCHANGE,
    JobCancel,
    JobMessage,
    Phase,
    cancelled_marker_key,
    dead_letter_name,
    encode,
    now_utc,
)
from kube_transcode_devstack.services import RabbitMQ
from kube_transcode_devstack.waiting import wait_until
from kube_transcode_worker.encode import KILL_GRACE_SECONDS
from tests.harness.broker import QUEUE, Broker, Vhost, queue_counts
from tests.harness.media import make_source
from tests.harness.processes import ffmpeg_pids
from tests.harness.storage import object_exists, object_keys, upload_source
from tests.harness.worker import Workers, job_message

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def long_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long enough to be still encoding when the test acts on it."""
    folder = tmp_path_factory.mktemp("media")
    return make_source(folder / "longer.mp4", width=640, height=360, seconds=20)


def cancel_of(message: JobMessage, reason: str = "Deleted") -> JobCancel:
    return JobCancel(job=message.job, reason=reason, message="the job was deleted", at=now_utc())


def broadcast(broker: Broker, cancel: JobCancel) -> None:
    """What the operator publishes for running attempts."""
    broker.channel.basic_publish(
        CONTROL_EXCHANGE, "", encode(cancel), pika.BasicProperties(content_type=CONTENT_TYPE)
    )


def mark_cancelled(s3: Any, bucket: str, cancel: JobCancel) -> None:
    """What the operator writes, before broadcasting, for attempts still in the queue."""
    s3.put_object(Bucket=bucket, Key=cancelled_marker_key(cancel.job.uid), Body=encode(cancel))


def transcoding(broker: Broker, message: JobMessage) -> bool:
    broker.poll_events()
    return any(
        e.job == message.job and e.phase == Phase.transcoding and e.progress_percent > 0
        for e in broker.events
    )


def assert_settled_for_good(broker: Broker, rabbitmq: RabbitMQ, vhost: Vhost) -> None:
    """Not back in the work queue, not unacked, not dead-lettered."""
    assert queue_counts(rabbitmq, vhost, QUEUE) == (0, 0)
    assert broker.get(dead_letter_name(QUEUE)) is None


def test_a_cancel_stops_the_running_encode_and_the_worker_serves_on(
    workers: Workers,
    broker: Broker,
    s3: Any,
    bucket: str,
    rabbitmq: RabbitMQ,
    vhost: Vhost,
    long_source: Path,
    small_source: Path,
) -> None:
    message = job_message(bucket, upload_source(s3, bucket, long_source))
    worker = workers.start(ffmpeg_preset="veryslow")
    broker.publish(message)
    wait_until("the encode to make progress", lambda: transcoding(broker, message), 60)
    assert ffmpeg_pids(group=worker.process.pid), "FFmpeg is not running"

    sent = time.monotonic()
    broadcast(broker, cancel_of(message))
    # FFmpeg gets SIGTERM to flush its lookahead (seconds at veryslow), SIGKILL after the grace.
    gone = KILL_GRACE_SECONDS + 2
    wait_until(
        "FFmpeg to exit", lambda: not ffmpeg_pids(group=worker.process.pid), gone, interval=0.05
    )
    stop_seconds = time.monotonic() - sent
    failed = broker.event(message.job.uid, Phase.failed, timeout=10)
    assert failed.reason == CANCELLED_REASON
    assert failed.message is not None and "Deleted" in failed.message
    assert_settled_for_good(broker, rabbitmq, vhost)

    following = job_message(bucket, upload_source(s3, bucket, small_source))
    broker.publish(following)
    assert broker.event(following.job.uid, Phase.succeeded, timeout=90).worker == worker.name
    # The next job's success is later than any upload the cancelled one could have made.
    assert object_keys(s3, bucket, f"{message.output.prefix}/") == []
    assert broker.phases(message.job.uid).count(Phase.failed) == 1
    assert Phase.succeeded not in broker.phases(message.job.uid)
    assert worker.process.poll() is None and "Traceback" not in worker.log()
    print(f"cancel to FFmpeg gone: {stop_seconds:.2f} s")


def test_queued_work_of_a_cancelled_generation_is_dropped_and_newer_work_runs(
    workers: Workers,
    broker: Broker,
    s3: Any,
    bucket: str,
    rabbitmq: RabbitMQ,
    vhost: Vhost,
    small_source: Path,
) -> None:
    source = upload_source(s3, bucket, small_source)
    old = job_message(bucket, source)
    newer = old.model_copy(
        update={
            "job": old.job.model_copy(update={"generation": 2}),
            "output": old.output.model_copy(update={"prefix": f"{old.output.prefix}-v2"}),
        }
    )
    mark_cancelled(s3, bucket, cancel_of(old, reason="SpecChanged"))
    broker.publish(old)
    broker.publish(newer)
    workers.start()

    done = broker.event(old.job.uid, Phase.succeeded, timeout=90)
    assert done.job.generation == 2
    dropped = [e for e in broker.events if e.job == old.job]
    assert [(e.phase, e.reason) for e in dropped] == [(Phase.failed, CANCELLED_REASON)]
    assert object_keys(s3, bucket, f"{old.output.prefix}/") == []
    assert_settled_for_good(broker, rabbitmq, vhost)


def test_a_marker_found_before_the_master_playlist_keeps_it_unwritten(
    workers: Workers,
    broker: Broker,
    s3: Any,
    bucket: str,
    rabbitmq: RabbitMQ,
    vhost: Vhost,
    long_source: Path,
) -> None:
    """A worker that missed the broadcast still finds the marker before it publishes."""
    message = job_message(bucket, upload_source(s3, bucket, long_source))
    worker = workers.start()
    broker.publish(message)
    broker.event(message.job.uid, Phase.transcoding)
    mark_cancelled(s3, bucket, cancel_of(message))  # and no broadcast
    assert ffmpeg_pids(group=worker.process.pid), "the encode ended before the marker was written"

    failed = broker.event(message.job.uid, Phase.failed, timeout=90)
    assert failed.reason == CANCELLED_REASON
    assert not object_exists(s3, bucket, f"{message.output.prefix}/master.m3u8")
    assert_settled_for_good(broker, rabbitmq, vhost)
