"""Workers as processes: `python -m kube_transcode_worker.main` with KT_ settings, the way a Pod
runs them, against a test's own vhost (broker.QUEUE) and MinIO; and the jobs they are given."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kube_transcode.ladder import Rung
from kube_transcode.messages import JobMessage, JobRef, LadderRequest, OutputLocation, Priority
from kube_transcode_devstack.services import MinIO
from tests.harness import ROOT
from tests.harness.broker import QUEUE, Vhost

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
