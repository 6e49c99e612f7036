"""`kube-transcode submit` and `watch` as a user runs them: the console script against the
installed chart, with the release's kubeconfig and MinIO keys, a file from this machine."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from kube_transcode_devstack import release as chart
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.e2e.helpers import API_VERSION, PRESET, Jobs, Sources, condition, phase
from tests.harness.media import make_source

pytestmark = pytest.mark.e2e

# The console script installed beside this interpreter: the same one a user's shell finds.
KUBE_TRANSCODE = Path(sys.executable).with_name("kube-transcode")
KUBECTL_PLUGIN = Path(sys.executable).with_name("kubectl-transcode")
MIB = 1024**2
PART = 8 * MIB  # the client's part size for files below 78 GiB
RUN_SECONDS = 240  # upload and one short job on a loaded two-core machine
UPLOAD_LINE = re.compile(r"^uploading\s+\[[#.]+\]\s+(\d+\.\d)%")


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    """The client, bound to the release's kubeconfig, a namespace and MinIO's keys."""

    stack: Stack
    namespace: str
    s3: Any
    keys: list[str]

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "AWS_"))}
        env.pop("KUBECONFIG", None)  # --kubeconfig is what the test means
        return {
            **env,
            "KT_S3_ENDPOINT_URL": self.stack.minio.endpoint,
            "KT_S3_ACCESS_KEY_ID": self.stack.credentials.s3_access_key,
            "KT_S3_SECRET_ACCESS_KEY": self.stack.credentials.s3_secret_key,
            "KT_SOURCES_BUCKET": chart.SOURCES_BUCKET,
        }

    def argv(self, command: str, *args: str, program: Path = KUBE_TRANSCODE) -> list[str]:
        cluster = ["--kubeconfig", str(self.stack.layout.kubeconfig), "-n", self.namespace]
        return [str(program), command, *args, *cluster]

    def run(self, command: str, *args: str, program: Path = KUBE_TRANSCODE) -> Run:
        done = subprocess.run(
            self.argv(command, *args, program=program),
            capture_output=True,
            text=True,
            timeout=RUN_SECONDS,
            check=False,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def uploaded(self, job: dict[str, Any]) -> str:
        """The key the job's source was uploaded to; removed after the test."""
        url = job["spec"]["source"]["url"]
        prefix = f"s3://{chart.SOURCES_BUCKET}/"
        assert url.startswith(f"{prefix}uploads/"), url
        self.keys.append(url.removeprefix(prefix))
        return str(self.keys[-1])


@pytest.fixture
def cli(release: Stack, jobs: Jobs, output_s3: Any) -> Iterator[Cli]:
    client = Cli(release, jobs.namespace, output_s3, [])
    yield client
    for key in client.keys:
        client.s3.delete_object(Bucket=chart.SOURCES_BUCKET, Key=key)
        pending = client.s3.list_multipart_uploads(Bucket=chart.SOURCES_BUCKET, Prefix=key)
        for upload in pending.get("Uploads", []):
            client.s3.abort_multipart_upload(
                Bucket=chart.SOURCES_BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
            )


def padded_video(folder: Path, name: str, seconds: int, extra_bytes: int) -> Path:
    """A test picture followed by an MP4 `free` box of random bytes, which demuxers skip: as
    large as a test needs, and content no earlier run has uploaded."""
    video = make_source(
        folder / f"plain-{name}", width=640, height=360, seconds=seconds, preset=PRESET, qp=None
    )
    path = folder / name
    box = struct.pack(">I", extra_bytes + 8) + b"free" + secrets.token_bytes(extra_bytes)
    path.write_bytes(video.read_bytes() + box)
    return path


def multipart_etag(path: Path, part_size: int) -> str:
    """S3's ETag of a multipart object: the MD5 of the parts' MD5s, and the number of parts."""
    data = path.read_bytes()
    digests = [
        hashlib.md5(data[i : i + part_size], usedforsecurity=False).digest()
        for i in range(0, len(data), part_size)
    ]
    joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f'"{joined}-{len(digests)}"'


def test_submit_wait_uploads_a_local_file_and_prints_the_playable_url(
    cli: Cli, jobs: Jobs, tmp_path: Path
) -> None:
    video = padded_video(tmp_path, "Opening Talk.mp4", seconds=2, extra_bytes=MIB)
    run = cli.run("submit", str(video), "--rungs", "240p", "--priority", "high", "--wait")
    assert run.code == 0, run.stderr

    name, url = run.stdout.splitlines()  # stdout: only what a script takes
    assert re.fullmatch(r"opening-talk-[a-z0-9]{5}", name), name
    assert re.search(r"^uploading .* 100\.0%", run.stderr, re.MULTILINE), run.stderr
    assert re.search(r"^Succeeded .* 100\.0%", run.stderr, re.MULTILINE), run.stderr
    job = jobs.require(name)
    assert (phase(job), job["spec"]["priority"]) == ("Succeeded", "high")
    assert job["spec"]["ladder"] == {"rungs": [{"name": "240p"}]}
    assert url == job["status"]["outputs"]["masterPlaylistUrl"]
    key = cli.uploaded(job)
    assert cli.s3.head_object(Bucket=chart.SOURCES_BUCKET, Key=key)["ContentLength"] == (
        video.stat().st_size
    )
    played = requests.get(url, timeout=10)
    assert played.status_code == 200 and played.text.startswith("#EXTM3U"), played.text


class Background:
    """The client running while the test acts; its stderr lines as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        self.lines.extend(self.process.stderr)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, what: str, check: Callable[[list[str]], bool]) -> None:
        wait_until(
            what,
            lambda: check(self.lines),
            RUN_SECONDS,
            lambda: self.stderr,
            alive=lambda: self.process.poll() is None,
        )

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """The exit code and stdout; killed if it does not end in time."""
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        return code, self.process.stdout.read()


def test_an_interrupted_upload_resumes_with_only_the_missing_parts(
    cli: Cli, jobs: Jobs, tmp_path: Path
) -> None:
    video = padded_video(tmp_path, "big.mp4", seconds=2, extra_bytes=36 * MIB)
    size = video.stat().st_size
    parts = -(-size // PART)
    assert parts == 5, size
    # 2 MiB/s: long enough to interrupt between parts; the plain progress lines say how far.
    upload = Background(cli.argv("submit", str(video), "--limit-rate", "2M"), cli.env)

    def partly_uploaded(lines: list[str]) -> bool:
        shown = [float(m.group(1)) for line in lines if (m := UPLOAD_LINE.match(line))]
        return any(0 < percent < 100 for percent in shown)

    upload.wait_for("the upload to show some but not all bytes", partly_uploaded)
    upload.process.send_signal(signal.SIGINT)
    code, stdout = upload.finish(timeout=30)
    assert code == 130, upload.stderr
    assert stdout == ""  # no job was created
    assert jobs.all() == {}

    # The documented key; MinIO lists the unfinished uploads of one key, not of a prefix.
    key = f"uploads/{hashlib.sha256(video.read_bytes()).hexdigest()[:16]}/big.mp4"
    cli.keys.append(key)
    pending = cli.s3.list_multipart_uploads(Bucket=chart.SOURCES_BUCKET, Prefix=key)
    ours = [u for u in pending.get("Uploads", []) if u["Key"] == key]
    assert len(ours) == 1, pending
    listed = cli.s3.list_parts(
        Bucket=chart.SOURCES_BUCKET, Key=ours[0]["Key"], UploadId=ours[0]["UploadId"]
    )
    kept = len(listed.get("Parts", []))
    assert 1 <= kept < parts, listed

    run = cli.run("submit", str(video), "--wait")
    assert run.code == 0, run.stderr
    name, url = run.stdout.splitlines()
    missing = parts - kept
    resent = size - kept * PART
    assert f"in {missing} part(s), {kept} part(s) kept from an interrupted upload" in run.stderr
    print(f"interrupted after {kept} of {parts} parts; resent {missing} part(s), {resent} bytes")
    assert cli.uploaded(jobs.require(name)) == key
    stored = cli.s3.head_object(Bucket=chart.SOURCES_BUCKET, Key=key)
    assert (stored["ContentLength"], stored["ETag"]) == (size, multipart_etag(video, PART))
    assert requests.get(url, timeout=10).text.startswith("#EXTM3U")

    # The same file once more, through kubectl's plugin name: found, not sent again.
    again = cli.run("submit", str(video), program=KUBECTL_PLUGIN)
    assert again.code == 0, again.stderr
    assert "already uploaded" in again.stderr and "nothing sent" in again.stderr
    assert jobs.require(again.stdout.strip())["spec"]["source"]["url"] == (
        f"s3://{chart.SOURCES_BUCKET}/{key}"
    )


def test_a_corrupt_file_fails_with_its_reason_and_watch_says_the_same(
    cli: Cli, jobs: Jobs, sources: Sources
) -> None:
    run = cli.run("submit", str(sources.corrupt.path), "--rungs", "240p", "--wait")
    assert run.code == 1, run.stderr
    name = run.stdout.strip()  # the name, and no URL
    failed = condition(jobs.require(name), "Failed")
    assert failed["reason"] == "UnreadableSource"
    assert f"UnreadableSource: {failed['message']}" in run.stderr.splitlines(), run.stderr
    cli.uploaded(jobs.require(name))

    watched = cli.run("watch", name)
    assert (watched.code, watched.stdout) == (1, "")
    assert f"UnreadableSource: {failed['message']}" in watched.stderr.splitlines()


def test_watch_ends_when_the_job_is_deleted_and_refuses_an_unknown_job(
    cli: Cli, jobs: Jobs, sources: Sources
) -> None:
    missing = cli.run("watch", "no-such-job")
    assert missing.code == 2 and "no TranscodeJob no-such-job" in missing.stderr

    run = cli.run("submit", sources.long.url, "--name", "to-delete", "--rungs", "240p")
    assert (run.code, run.stdout) == (0, "to-delete\n"), run.stderr
    watch = Background(cli.argv("watch", "to-delete"), cli.env)
    # Its first phase line comes after it has read the job: a deletion from now on is seen.
    watch.wait_for("watch to show the job's phase", lambda lines: bool(lines))
    jobs.k("delete", "transcodejob", "to-delete", "--timeout=60s")
    code, stdout = watch.finish()
    assert (code, stdout) == (3, ""), watch.stderr
    assert "TranscodeJob to-delete was deleted while watched" in watch.stderr


def test_submit_with_a_template_runs_with_the_templates_ladder(
    cli: Cli, jobs: Jobs, sources: Sources
) -> None:
    template = {
        "apiVersion": API_VERSION,
        "kind": "TranscodeTemplate",
        "metadata": {"name": "tiny-ladder"},
        "spec": {"ladder": {"rungs": [{"name": "240p"}]}, "hls": {"segmentSeconds": 2}},
    }
    jobs.k("apply", "-f", "-", input=yaml.safe_dump(template))
    run = cli.run("submit", sources.tiny.url, "--template", "tiny-ladder", "--wait")
    assert run.code == 0, run.stderr
    name, _ = run.stdout.splitlines()
    job = jobs.require(name)
    assert job["spec"]["template"] == "tiny-ladder"
    assert job["status"]["template"]["name"] == "tiny-ladder"
    assert [r["name"] for r in job["status"]["outputs"]["renditions"]] == ["240p"]
