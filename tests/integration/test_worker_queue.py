"""The worker as a process: jobs from a real RabbitMQ queue to a ladder in real MinIO.

Workers run as `python -m kube_transcode_worker.main` subprocesses with KT_ settings, the way
a pod runs them. The harness (WorkerProcess, Broker, job_message ...) is shared with
test_worker_failures.py and test_worker_storage.py.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pika
import pytest
import requests
from pika.adapters.blocking_connection import BlockingChannel

from kube_transcode.ladder import Rung
from kube_transcode.messages import (
    DEFAULT_EVENTS_EXCHANGE,
    JobEvent,
    JobMessage,
    JobRef,
    LadderRequest,
    OutputLocation,
    Phase,
    Priority,
    dead_letter_name,
    declare_topology,
    decode_event,
    encode,
)
from kube_transcode_devstack.services import MinIO, RabbitMQ
from kube_transcode_worker.hls import parse_master_playlist, parse_media_playlist
from tests.conftest import ROOT, Vhost
from tests.integration.media import make_source
from tests.polling import wait_until

pytestmark = pytest.mark.integration

T = TypeVar("T")
QUEUE = "transcode.test"
# Two renditions (90p and the source's own 180p) plus audio: a ladder, yet seconds to encode.
SMALL_LADDER = LadderRequest(rungs=(Rung(name="90p", height=90, video_kbps=150), "240p"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WorkerProcess:
    """One worker process, its log kept for the failure message."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.name} did not exit:\n{self.log()[-3000:]}"
            ) from None

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def kill_hard(self) -> None:
        """SIGKILL to the worker and its FFmpeg, like a node that vanishes."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@dataclass
class Workers:
    vhost: Vhost
    minio: MinIO
    work_dir: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str | None = None, **settings: str) -> WorkerProcess:
        name = name or f"worker-{secrets.token_hex(3)}"
        c = self.minio.creds
        port = free_port()
        env = {
            **os.environ,
            "KT_RABBITMQ_URL": self.vhost.url,
            "KT_QUEUE": QUEUE,
            "KT_S3_ENDPOINT_URL": self.minio.endpoint,
            "KT_S3_ACCESS_KEY_ID": c.s3_access_key,
            "KT_S3_SECRET_ACCESS_KEY": c.s3_secret_key,
            "KT_POD_NAME": name,
            "KT_WORK_DIR": str(self.work_dir),
            "KT_METRICS_PORT": str(port),
            "KT_METRICS_BIND_ADDRESS": "127.0.0.1",
            "KT_FFMPEG_PRESET": "ultrafast",
            "KT_RETRY_BASE_SECONDS": "0.2",
            "KT_RETRY_MAX_SECONDS": "1",
            "KT_HEARTBEAT_SECONDS": "10",
            **{f"KT_{key.upper()}": value for key, value in settings.items()},
        }
        log_path = self.work_dir / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "kube_transcode_worker.main"],
                env=env,
                cwd=ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so kill_hard reaches FFmpeg
            )
        worker = WorkerProcess(name, process, log_path, port)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.kill_hard()


@pytest.fixture
def workers(vhost: Vhost, minio: MinIO, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(vhost, minio, tmp_path / "workers")
    pool.work_dir.mkdir()
    yield pool
    pool.stop_all()


class Broker:
    """The test's own AMQP connection: publishes jobs, reads events and dead letters."""

    def __init__(self, vhost: Vhost) -> None:
        self.vhost = vhost
        self.connection = pika.BlockingConnection(pika.URLParameters(vhost.url))
        self.channel: BlockingChannel = self.connection.channel()
        self.channel.confirm_delivery()
        declare_topology(self.channel, QUEUE, DEFAULT_EVENTS_EXCHANGE)
        self.events_queue = self.channel.queue_declare("test.events", exclusive=True).method.queue
        self.channel.queue_bind(self.events_queue, DEFAULT_EVENTS_EXCHANGE, "job.#")
        self.events: list[JobEvent] = []

    def publish(self, message: JobMessage | bytes, priority: int | None = None) -> None:
        body = message if isinstance(message, bytes) else encode(message)
        if priority is None:
            normal = Priority.normal
            priority = (message.priority if isinstance(message, JobMessage) else normal).amqp
        self.channel.basic_publish(
            "",
            QUEUE,
            body,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                priority=priority,
            ),
            mandatory=True,
        )

    def poll_events(self) -> list[JobEvent]:
        while True:
            method, _props, body = self.channel.basic_get(self.events_queue, auto_ack=True)
            if method is None:
                return self.events
            self.events.append(decode_event(body))

    def event(self, uid: str, phase: Phase, timeout: float = 60) -> JobEvent:
        def found() -> JobEvent | None:
            self.poll_events()
            return next((e for e in self.events if e.job.uid == uid and e.phase == phase), None)

        return wait_until(f"a {phase} event of job {uid}", found, timeout)

    def phases(self, uid: str) -> list[Phase]:
        return [e.phase for e in self.poll_events() if e.job.uid == uid]

    def get(self, queue: str) -> tuple[pika.BasicProperties, bytes] | None:
        method, props, body = self.channel.basic_get(queue, auto_ack=True)
        return None if method is None else (props, body)

    def dead_letters(self, count: int, timeout: float = 60) -> list[tuple[dict[str, Any], bytes]]:
        letters: list[tuple[dict[str, Any], bytes]] = []

        def enough() -> bool:
            got = self.get(dead_letter_name(QUEUE))
            if got is not None:
                letters.append((dict(got[0].headers or {}), got[1]))
            return len(letters) >= count

        wait_until(f"{count} dead letters", enough, timeout)
        return letters

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


@pytest.fixture
def broker(vhost: Vhost) -> Iterator[Broker]:
    b = Broker(vhost)
    yield b
    b.close()


def job_message(
    bucket: str,
    source: str,
    *,
    uid: str | None = None,
    priority: Priority = Priority.normal,
    ladder: LadderRequest = SMALL_LADDER,
    prefix: str | None = None,
    **fields: Any,
) -> JobMessage:
    uid = uid or secrets.token_hex(6)
    return JobMessage(
        job=JobRef(uid=uid, namespace="media", name=f"clip-{uid}", generation=1),
        source=source,
        priority=priority,
        ladder=ladder,
        output=OutputLocation(bucket=bucket, prefix=prefix or f"out/{uid}"),
        **fields,
    )


def upload_source(s3: Any, bucket: str, path: Path, key: str | None = None) -> str:
    key = key or f"sources/{path.name}"
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    return make_source(folder / "small.mp4", width=320, height=180, seconds=3)


def object_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0))


def check_stored_ladder(s3: Any, bucket: str, prefix: str) -> list[str]:
    """What a player does: master, every variant's playlist, every segment; returns the keys."""
    keys = object_keys(s3, bucket, prefix)

    def text(key: str) -> str:
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["ContentType"] == "application/vnd.apple.mpegurl", key
        return str(got["Body"].read().decode())

    master = parse_master_playlist(text(f"{prefix}/master.m3u8"))
    uris = [v.uri for v in master.variants] + [m["URI"] for m in master.media]
    assert len(master.variants) == 2
    referenced = {f"{prefix}/master.m3u8"}
    for uri in uris:
        referenced.add(f"{prefix}/{uri}")
        playlist = parse_media_playlist(text(f"{prefix}/{uri}"))
        assert playlist.ended and playlist.segments
        folder = uri.rsplit("/", 1)[0]
        for segment in playlist.segments:
            key = f"{prefix}/{folder}/{segment.uri}"
            head = s3.head_object(Bucket=bucket, Key=key)
            assert head["ContentType"] == "video/mp2t" and head["ContentLength"] > 0
            referenced.add(key)
    assert set(keys) == referenced, "objects the ladder does not name, or names and lacks"
    return keys


def queue_counts(rabbitmq: RabbitMQ, vhost: Vhost, queue: str) -> tuple[int, int]:
    """(ready, unacknowledged) straight from the queue process, not the 5 s stats cache."""
    out = rabbitmq.ctl(
        "list_queues",
        "-p",
        vhost.name,
        "--no-table-headers",
        "--quiet",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {queue} not listed: {out!r}")


# ---------------------------------------------------------------------------------- tests


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
    done = False
    while not done:
        # Queue first, then storage: "settled" followed by "no master" proves an early ack.
        ready, unacked = queue_counts(rabbitmq, vhost, QUEUE)
        master = object_exists(s3, bucket, master_key)
        samples.append((ready, unacked, master))
        assert not (ready == 0 and unacked == 0 and not master), f"acked early: {samples}"
        done = any(e.phase == Phase.succeeded for e in broker.poll_events())
        assert worker.process.poll() is None, worker.log()[-3000:]

    succeeded = broker.event(message.job.uid, Phase.succeeded)
    assert succeeded.outputs is not None
    assert succeeded.outputs.master_uri == f"s3://{bucket}/{master_key}"
    sizes = sorted((r.width, r.height) for r in succeeded.outputs.renditions)
    assert sizes == [(160, 90), (320, 180)]
    assert all(r.bandwidth >= r.average_bandwidth > 0 for r in succeeded.outputs.renditions)
    assert succeeded.outputs.has_audio
    phases = broker.phases(message.job.uid)
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


class _SlowSource:
    """An HTTP server on loopback that trickles a file out over a few seconds."""

    def __init__(self, path: Path, seconds: float) -> None:
        import http.server
        import threading

        data = path.read_bytes()
        chunk = max(1, len(data) // 20)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for start in range(0, len(data), chunk):
                    self.wfile.write(data[start : start + chunk])
                    self.wfile.flush()
                    time.sleep(seconds / 20)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{path.name}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    slow = _SlowSource(small_source, seconds=8)
    message = job_message(bucket, slow.url)

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
