"""The worker as a process: jobs from a real RabbitMQ queue to a ladder in real MinIO.

Workers run as `python -m kube_transcode_worker.main` subprocesses with KT_ settings, the way
a pod runs them (tests.harness.worker; the fixtures are in tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import requests

from kube_transcode.messages import Phase, Priority, dead_letter_name
from kube_transcode_devstack.services import RabbitMQ
from kube_transcode_devstack.waiting import wait_until
from tests.harness.broker import QUEUE, Broker, Vhost, queue_counts
from tests.harness.http_stub import Reply, StubServer
from tests.harness.media import make_source
from tests.harness.storage import check_stored_ladder, object_exists, upload_source
from tests.harness.worker import Workers, job_message

pytestmark = pytest.mark.integration


def test_job_from_queue_to_ladder_acked_only_after_master_exists(
    workers: Workers,
    broker: Broker,
    s3: Any,
    bucket: str,
    rabbitmq: RabbitMQ,
    vhost: Vhost,
    tmp_path: Path,
) -> None:
    source = make_source(tmp_path / "clip.mp4", width=320, height=180, seconds=4)
    message = job_message(bucket, upload_source(s3, bucket, source))
    master_key = f"{message.output.prefix}/master.m3u8"
    uid = message.job.uid
    broker.publish(message)
    worker = workers.start()

    # Mid-encode, the worker is held still (SIGSTOP) while the queue is read: rabbitmqctl
    # takes seconds on a loaded machine, longer than this whole job.
    wait_until("the encode to start", lambda: Phase.transcoding in broker.phases(uid), 60)
    os.kill(worker.process.pid, signal.SIGSTOP)
    try:
        in_flight = queue_counts(rabbitmq, vhost, QUEUE)
        master_while_encoding = object_exists(s3, bucket, master_key)
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    assert in_flight == (0, 1), "the job is delivered and not yet acknowledged"
    assert not master_while_encoding

    samples: list[tuple[int, int, bool]] = []

    def sampled_until_succeeded() -> bool:
        # Queue first, then storage: "settled" followed by "no master" proves an early ack.
        ready, unacked = queue_counts(rabbitmq, vhost, QUEUE)
        master = object_exists(s3, bucket, master_key)
        samples.append((ready, unacked, master))
        assert not (ready == 0 and unacked == 0 and not master), f"acked early: {samples}"
        done = any(e.phase == Phase.succeeded for e in broker.poll_events())
        assert worker.process.poll() is None, worker.log()[-3000:]
        return done

    # No pause between samples: each one is as close to the last as rabbitmqctl allows.
    wait_until("the job to succeed", sampled_until_succeeded, 120, interval=0)

    succeeded = broker.event(message.job.uid, Phase.succeeded)
    assert succeeded.outputs is not None
    assert succeeded.outputs.master_uri == f"s3://{bucket}/{master_key}"
    sizes = sorted((r.width, r.height) for r in succeeded.outputs.renditions)
    assert sizes == [(160, 90), (320, 180)]
    assert all(r.bandwidth >= r.average_bandwidth > 0 for r in succeeded.outputs.renditions)
    assert succeeded.outputs.has_audio
    # Progress events repeat their phase, as often as timing has it: the order is the point.
    seen = broker.phases(message.job.uid)
    phases = [phase for i, phase in enumerate(seen) if i == 0 or seen[i - 1] != phase]
    assert phases[:4] == [Phase.fetching, Phase.probing, Phase.transcoding, Phase.uploading]
    check_stored_ladder(s3, bucket, message.output.prefix)
    wait_until("the queue to be empty", lambda: queue_counts(rabbitmq, vhost, QUEUE) == (0, 0), 10)
    assert broker.get(dead_letter_name(QUEUE)) is None

    base = f"http://127.0.0.1:{worker.metrics_port}"
    assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    assert requests.get(f"{base}/livez", timeout=5).status_code == 200
    metrics = requests.get(f"{base}/metrics", timeout=5).text
    assert 'kube_transcode_worker_jobs_total{outcome="succeeded"} 1.0' in metrics
    assert "kube_transcode_worker_busy 0.0" in metrics
    assert "kube_transcode_worker_encode_speed_ratio_count 1.0" in metrics


def test_high_priority_job_overtakes_waiting_normal_ones(
    workers: Workers, broker: Broker, s3: Any, bucket: str, small_source: Path
) -> None:
    source = upload_source(s3, bucket, small_source)
    normal = [job_message(bucket, source, uid=f"normal{i}") for i in range(3)]
    urgent = job_message(bucket, source, uid="urgent", priority=Priority.high)
    for message in [*normal, urgent]:
        broker.publish(message)
    workers.start()
    for message in [*normal, urgent]:
        broker.event(message.job.uid, Phase.succeeded, timeout=120)
    started = [e.job.uid for e in broker.poll_events() if e.phase == Phase.fetching]
    assert started == ["urgent", "normal0", "normal1", "normal2"]


def test_redelivered_job_leaves_the_same_objects(
    workers: Workers, broker: Broker, s3: Any, bucket: str, small_source: Path
) -> None:
    message = job_message(bucket, upload_source(s3, bucket, small_source))
    workers.start()
    broker.publish(message)
    broker.event(message.job.uid, Phase.succeeded)
    first = check_stored_ladder(s3, bucket, message.output.prefix)
    broker.events.clear()
    broker.publish(message)  # the same message again, as after a lost ack
    broker.event(message.job.uid, Phase.succeeded)
    assert check_stored_ladder(s3, bucket, message.output.prefix) == first


def test_job_of_a_killed_worker_is_completed_by_another(
    workers: Workers, broker: Broker, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # A slow preset makes the encode last long enough to be interrupted.
    source = make_source(tmp_path / "longer.mp4", width=640, height=360, seconds=20)
    message = job_message(bucket, upload_source(s3, bucket, source))
    doomed = workers.start("doomed", ffmpeg_preset="veryslow")
    broker.publish(message)
    broker.event(message.job.uid, Phase.transcoding)
    doomed.kill_hard()
    assert not object_exists(s3, bucket, f"{message.output.prefix}/master.m3u8")

    workers.start("rescuer")
    succeeded = broker.event(message.job.uid, Phase.succeeded, timeout=120)
    assert succeeded.worker == "rescuer"
    assert succeeded.attempt == 1  # a lost worker is not a failed attempt
    check_stored_ladder(s3, bucket, message.output.prefix)
    assert broker.get(dead_letter_name(QUEUE)) is None


def test_job_longer_than_consumer_timeout_succeeds_exactly_once(
    workers: Workers,
    broker: Broker,
    s3: Any,
    bucket: str,
    rabbitmq: RabbitMQ,
    vhost: Vhost,
    small_source: Path,
) -> None:
    """consumer_timeout 3 s (channels opened now), a job of ~8 s, renewing every second."""
    path = f"/{small_source.name}"
    slow = StubServer({path: Reply(body=small_source.read_bytes(), trickle_seconds=8)})
    message = job_message(bucket, slow.url(path))

    def set_env(key: str, value: int) -> None:
        result = rabbitmq.ctl("eval", f"application:set_env(rabbit, {key}, {value}).")
        assert result.returncode == 0, result.stderr

    try:
        # The channel reads consumer_timeout when it opens; the tick is read on every tick.
        set_env("channel_tick_interval", 500)
        set_env("consumer_timeout", 3000)
        worker = workers.start(
            delivery_renew_seconds="1",
            hold_ttl_seconds="30",
            allowed_source_networks="127.0.0.0/8",
            allow_http_sources="true",
        )
        wait_until(
            "the worker to consume",
            lambda: vhost.queue(QUEUE).get("consumers", 0) >= 1 or None,
            30,
            interval=0.5,
        )
        set_env("consumer_timeout", 1800000)  # other channels on this broker keep the default
        broker.publish(message)
        broker.event(message.job.uid, Phase.succeeded, timeout=90)
    finally:
        set_env("consumer_timeout", 1800000)
        set_env("channel_tick_interval", 60000)
        slow.close()
    log = worker.log()
    assert "renewed the delivery" in log, log[-3000:]
    assert "consumer ack timed out" not in log and "broker connection lost" not in log, log[-3000:]
    phases = broker.phases(message.job.uid)
    assert phases.count(Phase.succeeded) == 1 and phases.count(Phase.fetching) == 1, phases
    check_stored_ladder(s3, bucket, message.output.prefix)
    # Nothing left behind: not in the work queue, not held, not dead.
    assert broker.get(QUEUE) is None
    assert broker.get(f"{QUEUE}.hold.{worker.name}") is None
    assert broker.get(dead_letter_name(QUEUE)) is None
