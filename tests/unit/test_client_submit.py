"""The client's pure parts: job names and manifests, upload part planning and resuming, what a
job's status says, exit codes, and the transfer progress line."""

from __future__ import annotations

import argparse
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from urllib3.exceptions import MaxRetryError

from kube_transcode_client.cli import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_JOB_DELETED,
    EXIT_JOB_FAILED,
    EXIT_TEMPORARY,
    BadInputError,
    describe_failure,
    parse_rate,
    report,
)
from kube_transcode_client.follow import JobDeletedError, JobNotFoundError, job_state
from kube_transcode_client.submit import build_job, job_name
from kube_transcode_client.upload import (
    MAX_PARTS,
    MIB,
    PART_SIZE,
    Part,
    SourceUploader,
    missing_parts,
    object_key,
    part_size_for,
    plan_parts,
)
from kube_transcode_worker.terminal import ProgressReporter, format_bytes, format_transfer

pytestmark = pytest.mark.unit
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- names and manifests -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("talk.mp4", "talk-abcde"),
        ("/home/me/My Talk (final).MP4", "my-talk-final-abcde"),
        ("s3://sources/uploads/1234/Keynote_2026.mov", "keynote-2026-abcde"),
        ("https://cdn.example.com/v/clip.mp4?sig=1", "clip-abcde"),
        ("___.mp4", "job-abcde"),
        ("日本語.mp4", "job-abcde"),
    ],
)
def test_a_job_name_comes_from_the_file_name_and_is_dns_safe(source: str, expected: str) -> None:
    assert job_name(source, suffix="abcde") == expected


def test_a_generated_name_has_a_random_suffix_and_fits_a_dns_label() -> None:
    names = {job_name("x" * 100 + "-.mp4") for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert len(name) <= 63 and DNS_LABEL.match(name), name


def test_the_manifest_sets_only_what_was_chosen() -> None:
    assert build_job("a-1", "s3://b/k.mp4")["spec"] == {"source": {"url": "s3://b/k.mp4"}}
    job = build_job(
        "a-1", "s3://b/k.mp4", priority="high", pool="gpu", template="web", rungs=["360p", "720p"]
    )
    assert job["apiVersion"] == "kubetranscode.io/v1alpha1" and job["kind"] == "TranscodeJob"
    assert job["metadata"] == {"name": "a-1"}
    assert job["spec"] == {
        "source": {"url": "s3://b/k.mp4"},
        "template": "web",
        "ladder": {"rungs": [{"name": "360p"}, {"name": "720p"}]},
        "priority": "high",
        "pool": "gpu",
    }


def test_rates_read_like_curls() -> None:
    assert [parse_rate(t) for t in ("500K", "2M", "2mb", "1G", "100")] == [
        500 * 1024, 2 * MIB, 2 * MIB, 1024**3, 100,
    ]  # fmt: skip
    for bad in ("fast", "0", "-1M"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_rate(bad)


# --- upload planning -------------------------------------------------------------------------


def test_parts_cover_the_file_exactly_and_stay_within_s3s_limits() -> None:
    assert plan_parts(0, PART_SIZE) == [Part(1, 0, 0)]
    parts = plan_parts(20 * MIB + 1, PART_SIZE)
    assert [(p.number, p.offset, p.size) for p in parts] == [
        (1, 0, 8 * MIB), (2, 8 * MIB, 8 * MIB), (3, 16 * MIB, 4 * MIB + 1),
    ]  # fmt: skip
    assert part_size_for(100 * MIB) == PART_SIZE
    huge = 5 * 1024**4  # 5 TiB, S3's largest object
    assert len(plan_parts(huge, part_size_for(huge))) <= MAX_PARTS


def test_a_resumed_upload_sends_only_the_parts_missing_or_of_another_size() -> None:
    planned = plan_parts(40 * MIB, PART_SIZE)  # 5 parts
    assert missing_parts(planned, {}) == planned
    uploaded = {1: 8 * MIB, 2: 8 * MIB, 4: 3 * MIB}  # 4: left by a run with other part sizes
    assert [p.number for p in missing_parts(planned, uploaded)] == [3, 4, 5]
    assert missing_parts(planned, {p.number: p.size for p in planned}) == []


def test_the_key_is_derived_from_the_content_and_safe_in_a_url() -> None:
    digest = "ab" * 32
    assert object_key(digest, "My Talk.mp4") == "uploads/abababababababab/My_Talk.mp4"
    assert object_key(digest, "..") == "uploads/abababababababab/source"


class FakeS3:
    """Just enough of S3's multipart API, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.uploads: dict[str, tuple[str, dict[str, str], dict[int, bytes]]] = {}
        self.sent_parts: list[int] = []
        self.fail_after: int | None = None

    def head_object(self, **call: Any) -> dict[str, Any]:
        if call["Key"] not in self.objects:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
        body, metadata = self.objects[call["Key"]]
        return {"ContentLength": len(body), "Metadata": metadata}

    def create_multipart_upload(self, **call: Any) -> dict[str, str]:
        upload_id = f"u{len(self.uploads)}"
        self.uploads[upload_id] = (call["Key"], call["Metadata"], {})
        return {"UploadId": upload_id}

    def upload_part(self, **call: Any) -> dict[str, str]:
        if self.fail_after is not None and len(self.sent_parts) >= self.fail_after:
            raise EndpointConnectionError(endpoint_url="http://s3")
        self.uploads[call["UploadId"]][2][call["PartNumber"]] = call["Body"]
        self.sent_parts.append(call["PartNumber"])
        return {"ETag": f'"{call["PartNumber"]}"'}

    def complete_multipart_upload(self, **call: Any) -> None:
        key, metadata, parts = self.uploads.pop(call["UploadId"])
        numbers = [p["PartNumber"] for p in call["MultipartUpload"]["Parts"]]
        self.objects[key] = (b"".join(parts[n] for n in numbers), metadata)

    def get_paginator(self, name: str) -> Any:
        fake = self

        class Pages:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                if name == "list_multipart_uploads":
                    uploads = [
                        {"Key": key, "UploadId": uid, "Initiated": datetime.now(UTC)}
                        for uid, (key, _, _) in fake.uploads.items()
                    ]
                    return [{"Uploads": uploads}]
                parts = fake.uploads[kwargs["UploadId"]][2]
                return [
                    {
                        "Parts": [
                            {"PartNumber": n, "Size": len(b), "ETag": f'"{n}"'}
                            for n, b in parts.items()
                        ]
                    }
                ]

        return Pages()


def test_an_interrupted_upload_resumes_with_the_missing_parts_and_is_not_sent_a_third_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "clip.mp4"
    content = bytes(range(256)) * (PART_SIZE * 3 // 256) + b"tail"  # 4 parts
    path.write_bytes(content)
    s3, quiet = FakeS3(), ProgressReporter(io.StringIO(), interactive=False, enabled=False)
    s3.fail_after = 2
    with pytest.raises(EndpointConnectionError):
        SourceUploader(s3, "sources", quiet).upload(path)
    s3.fail_after = None

    result = SourceUploader(s3, "sources", quiet).upload(path)
    assert s3.sent_parts == [1, 2, 3, 4]  # parts 1 and 2 once, before the interruption
    assert (result.sent_parts, result.kept_parts, result.sent_bytes) == (2, 2, PART_SIZE + 4)
    key = result.url.removeprefix("s3://sources/")
    assert s3.objects[key][0] == content

    again = SourceUploader(s3, "sources", quiet).upload(path)
    assert again.already_there and again.sent_bytes == 0 and again.url == result.url
    assert s3.sent_parts == [1, 2, 3, 4]


# --- a job's status and the exit codes -------------------------------------------------------


def failed_job() -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "status": {
            "phase": "Failed",
            "observedGeneration": 1,
            "conditions": [
                {"type": "Running", "status": "False", "reason": "Failed"},
                {"type": "Failed", "status": "True", "reason": "UnreadableSource",
                 "message": "ffprobe cannot read the source"},
            ],
        },
    }  # fmt: skip


def test_a_job_states_phase_progress_and_outcome() -> None:
    assert job_state({"metadata": {}}).phase == "Pending"
    running = job_state({"status": {"phase": "Running", "progress": 40}})
    assert (running.phase, running.progress, running.finished) == ("Running", 40, False)
    outputs = {"masterPlaylist": "s3://kt/ns/a/master.m3u8", "masterPlaylistUrl": "http://x/m"}
    done = job_state({"status": {"phase": "Succeeded", "outputs": outputs}})
    assert done.succeeded and done.playlist == "http://x/m"
    del outputs["masterPlaylistUrl"]
    assert job_state({"status": {"phase": "Succeeded", "outputs": outputs}}).playlist == (
        "s3://kt/ns/a/master.m3u8"
    )
    failed = job_state(failed_job())
    assert (failed.finished, failed.succeeded, failed.reason) == (True, False, "UnreadableSource")


def test_a_finished_status_of_an_older_generation_is_not_the_end() -> None:
    job = failed_job()
    job["metadata"]["generation"] = 2
    assert not job_state(job).finished


def test_a_failed_job_prints_its_reason_on_stderr_and_a_success_its_url_on_stdout() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert report(job_state(failed_job()), out, err) == EXIT_JOB_FAILED
    assert (out.getvalue(), err.getvalue()) == (
        "",
        "UnreadableSource: ffprobe cannot read the source\n",
    )
    ok = job_state({"status": {"phase": "Succeeded", "outputs": {"masterPlaylistUrl": "http://m"}}})
    out, err = io.StringIO(), io.StringIO()
    assert report(ok, out, err) == 0 and out.getvalue() == "http://m\n" and err.getvalue() == ""


NO_POOL: Any = None
S3_INTERNAL_ERROR: Any = {
    "Error": {"Code": "InternalError"},
    "ResponseMetadata": {"HTTPStatusCode": 500},
}


def api_error(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Reason")
    error.body = f'{{"kind": "Status", "message": "{message}"}}'
    return error


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
        (BadInputError("talk.mp4: no such file"), EXIT_BAD_INPUT, "talk.mp4: no such file"),
        (ConfigException("Invalid kube-config file."), EXIT_BAD_INPUT, "Invalid kube-config"),
        (JobNotFoundError("no TranscodeJob x"), EXIT_BAD_INPUT, "no TranscodeJob x"),
        (JobDeletedError("TranscodeJob x was deleted"), EXIT_JOB_DELETED, "TranscodeJob x"),
        (api_error(422, "spec.pool: Invalid"), EXIT_BAD_INPUT, "the Kubernetes API refused: spec"),
        (api_error(409, "already exists"), EXIT_BAD_INPUT, "the Kubernetes API refused: already"),
        (api_error(403, "forbidden"), EXIT_BAD_INPUT, "the Kubernetes API refused: forbidden"),
        (api_error(503, "unavailable"), EXIT_TEMPORARY, "the Kubernetes API: unavailable"),
        (MaxRetryError(NO_POOL, "/apis"), EXIT_TEMPORARY, "the Kubernetes API is unreachable"),
        (EndpointConnectionError(endpoint_url="http://s3"), EXIT_TEMPORARY, "S3 is unreachable"),
        (
            ClientError({"Error": {"Code": "NoSuchBucket"}}, "CreateMultipartUpload"),
            EXIT_BAD_INPUT,
            "S3: ",
        ),
        (
            ClientError(S3_INTERNAL_ERROR, "UploadPart"),
            EXIT_TEMPORARY,
            "S3: ",
        ),
        (RuntimeError("boom"), 1, "unexpected failure"),
    ],
)
def test_every_failure_has_an_exit_code_and_one_line(
    error: BaseException, code: int, text: str
) -> None:
    assert describe_failure(error)[0] == code
    assert describe_failure(error)[1].startswith(text), describe_failure(error)[1]


# --- the transfer progress line --------------------------------------------------------------


def test_bytes_read_in_binary_units() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1536, 40 * MIB, 3 * 1024**3)] == [
        "0 B", "1023 B", "1.5 KiB", "40.0 MiB", "3.0 GiB",
    ]  # fmt: skip
    assert format_transfer(16 * MIB, 40 * MIB, None) == "16.0 MiB/40.0 MiB"
    assert format_transfer(16 * MIB, 40 * MIB, 2 * MIB) == "16.0 MiB/40.0 MiB  2.0 MiB/s"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_transfer_shows_bytes_and_the_rate_of_this_run_only() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = ProgressReporter(out, interactive=False, interval_seconds=10, clock=clock)
    progress.update_bytes("uploading", 16 * MIB, 40 * MIB)  # kept from an interrupted run
    clock.now = 12.0
    progress.update_bytes("uploading", 40 * MIB, 40 * MIB)
    first, last = out.getvalue().splitlines()
    assert first.startswith("uploading   [") and "40.0%  16.0 MiB/40.0 MiB  0:00" in first
    assert "100.0%  40.0 MiB/40.0 MiB  2.0 MiB/s  0:12" in last
