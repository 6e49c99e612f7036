"""Sources in and ladders out: the SSRF guard against real sockets, the store against MinIO."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from kube_transcode_devstack.services import MinIO
from kube_transcode_worker.errors import PermanentJobError, TransientJobError
from kube_transcode_worker.fetch import HttpFetcher, S3Fetcher
from kube_transcode_worker.store import LadderStore
from tests.harness.http_stub import Reply, Request, StubServer
from tests.harness.storage import object_keys

pytestmark = pytest.mark.integration

PAYLOAD = bytes(range(256)) * 400  # 100 KiB
# An origin on 127.0.0.1: a file, a redirect elsewhere, an error.
ORIGIN_ROUTES = {
    "/video.mp4": Reply(200, PAYLOAD),
    "/to-self": Reply(302, headers={"Location": "/video.mp4"}),
    "/to-other-loopback": Reply(302, headers={"Location": "http://127.0.0.2:9/video.mp4"}),
    "/to-metadata": Reply(301, headers={"Location": "http://169.254.169.254/latest/"}),
    "/gone": Reply(404, b"no"),
    "/busy": Reply(503, b"later"),
}


class Origin(StubServer):
    """Reached by the name localhost, so a fetcher must resolve it and vet the address."""

    def __init__(self) -> None:
        super().__init__(ORIGIN_ROUTES)

    def url(self, path: str, host: str = "localhost") -> str:
        return super().url(path, host)

    def asked(self) -> list[str]:
        """Every request as "host path", the host as the client named it."""
        return [f"{request.host} {request.path}" for request in self.requests]


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as server:
        yield server


def fetcher(*networks: str, max_bytes: int = 10**6) -> HttpFetcher:
    return HttpFetcher(
        allowed_networks=[ip_network(n) for n in networks],
        allow_http=True,
        max_bytes=max_bytes,
        connect_timeout=2,
        read_timeout=5,
    )


def test_loopback_source_is_refused_by_default_and_never_contacted(
    origin: Origin, tmp_path: Path
) -> None:
    with pytest.raises(PermanentJobError) as caught:
        fetcher().fetch(origin.url("/video.mp4"), tmp_path / "src", threading.Event())
    assert caught.value.reason == "ForbiddenSourceAddress"
    assert "loopback" in caught.value.message
    assert origin.asked() == []
    assert not (tmp_path / "src").exists()


def test_loopback_source_is_fetched_when_its_network_is_allowed(
    origin: Origin, tmp_path: Path
) -> None:
    dest = tmp_path / "src"
    size = fetcher("127.0.0.0/8").fetch(origin.url("/to-self"), dest, threading.Event())
    assert size == len(PAYLOAD) and dest.read_bytes() == PAYLOAD
    # Connected to the vetted address, asked with the name the user gave.
    host = f"localhost:{origin.port}"
    assert origin.asked() == [f"{host} /to-self", f"{host} /video.mp4"]


@pytest.mark.parametrize(
    ("path", "why"),
    [("/to-other-loopback", "loopback"), ("/to-metadata", "cloud metadata service")],
)
def test_redirect_to_a_forbidden_address_is_refused(
    origin: Origin, tmp_path: Path, path: str, why: str
) -> None:
    with pytest.raises(PermanentJobError) as caught:
        fetcher("127.0.0.1/32").fetch(origin.url(path), tmp_path / "src", threading.Event())
    assert caught.value.reason == "ForbiddenSourceAddress" and why in caught.value.message
    assert origin.asked() == [f"localhost:{origin.port} {path}"]


def test_http_errors_and_size_limit_map_to_permanent_or_transient(
    origin: Origin, tmp_path: Path
) -> None:
    cancel = threading.Event()
    with pytest.raises(PermanentJobError, match="SourceNotFound"):
        fetcher("127.0.0.0/8").fetch(origin.url("/gone"), tmp_path / "a", cancel)
    with pytest.raises(TransientJobError, match="SourceUnavailable"):
        fetcher("127.0.0.0/8").fetch(origin.url("/busy"), tmp_path / "b", cancel)
    with pytest.raises(PermanentJobError, match="SourceTooLarge"):
        fetcher("127.0.0.0/8", max_bytes=1000).fetch(
            origin.url("/video.mp4"), tmp_path / "c", cancel
        )


def test_s3_source_is_fetched_and_a_missing_one_is_permanent(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/video.mp4", Body=PAYLOAD)
    source = S3Fetcher(s3, max_bytes=10**6)
    dest = tmp_path / "src"
    assert source.fetch(f"s3://{bucket}/in/video.mp4", dest, threading.Event()) == len(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(PermanentJobError, match="SourceNotFound"):
        source.fetch(f"s3://{bucket}/in/missing.mp4", dest, threading.Event())
    with pytest.raises(PermanentJobError, match="SourceTooLarge"):
        S3Fetcher(s3, max_bytes=10).fetch(f"s3://{bucket}/in/video.mp4", dest, threading.Event())


def make_ladder(folder: Path, renditions: list[str], segments: int) -> Path:
    """A ladder folder as the encoder leaves it (contents do not matter to the store)."""
    lines = ["#EXTM3U"]
    for name in renditions:
        (folder / name).mkdir(parents=True)
        for index in range(segments):
            (folder / name / f"seg_{index:05d}.ts").write_bytes(f"{name}{index}".encode() * 100)
        (folder / name / "index.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
        lines += ["#EXT-X-STREAM-INF:BANDWIDTH=1", f"{name}/index.m3u8"]
    (folder / "master.m3u8").write_text("\n".join(lines) + "\n")
    return folder


def test_store_publishes_with_types_and_a_rerun_leaves_no_orphans(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    store = LadderStore(s3, concurrency=4)
    s3.put_object(Bucket=bucket, Key="job/a-sibling/keep.txt", Body=b"not ours")
    s3.put_object(Bucket=bucket, Key="jobs-other/keep.txt", Body=b"not ours")
    first = make_ladder(tmp_path / "one", ["360p", "720p"], segments=3)
    result = store.publish(first, bucket, "job/a", threading.Event())
    assert len(result.keys) == 9 and result.removed == ()
    head = s3.head_object(Bucket=bucket, Key="job/a/720p/seg_00002.ts")
    assert head["ContentType"] == "video/mp2t" and "max-age" in head["CacheControl"]
    head = s3.head_object(Bucket=bucket, Key="job/a/master.m3u8")
    assert head["ContentType"] == "application/vnd.apple.mpegurl"
    assert head["CacheControl"] == "no-cache"

    second = make_ladder(tmp_path / "two", ["360p"], segments=2)
    result = store.publish(second, bucket, "job/a", threading.Event())
    assert object_keys(s3, bucket, "job/a/") == [
        "job/a/360p/index.m3u8",
        "job/a/360p/seg_00000.ts",
        "job/a/360p/seg_00001.ts",
        "job/a/master.m3u8",
    ]
    assert len(result.removed) == 5  # 720p's four objects and 360p's third segment
    # Neighbours that merely share the prefix's characters are not the job's.
    assert object_keys(s3, bucket, "job/a-sibling/") == ["job/a-sibling/keep.txt"]
    assert object_keys(s3, bucket, "jobs-other/") == ["jobs-other/keep.txt"]


class FlakyProxy(StubServer):
    """Forwards to MinIO but answers the first PUT of every key with 503 Slow Down."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.failed: list[str] = []
        self.puts: list[str] = []
        self._lock = threading.Lock()
        super().__init__(respond=self._respond)

    def _respond(self, request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        if request.method == "PUT":
            with self._lock:
                first = path not in self.failed
                (self.failed if first else self.puts).append(path)
            if first:
                return Reply(503, b"<Error><Code>SlowDown</Code></Error>")
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "transfer-encoding"}
        if request.body or request.method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(request.body))
        upstream.request(request.method, request.path, body=request.body, headers=headers)
        response = upstream.getresponse()
        reply = Reply(response.status, response.read(), dict(response.getheaders()))
        upstream.close()
        return reply


def test_transient_s3_failures_are_retried(
    minio: MinIO, s3: Any, bucket: str, tmp_path: Path
) -> None:
    proxy = FlakyProxy(int(minio.endpoint.rsplit(":", 1)[1]))
    try:
        client = boto3.client(
            "s3",
            endpoint_url=proxy.base,
            aws_access_key_id=minio.creds.s3_access_key,
            aws_secret_access_key=minio.creds.s3_secret_key,
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}),  # as the worker: retries are ours
        )
        ladder = make_ladder(tmp_path / "ladder", ["240p"], segments=4)
        store = LadderStore(client, concurrency=3, backoff_base_seconds=0.05)
        result = store.publish(ladder, bucket, "flaky/job", threading.Event())
    finally:
        proxy.close()
    assert len(proxy.failed) == 6  # every object was refused once ...
    assert sorted(proxy.puts) == sorted(proxy.failed)  # ... and stored on the next try
    assert object_keys(s3, bucket, "flaky/job/") == sorted(result.keys)
    got = s3.get_object(Bucket=bucket, Key="flaky/job/240p/seg_00003.ts")["Body"].read()
    assert got == b"240p3" * 100
