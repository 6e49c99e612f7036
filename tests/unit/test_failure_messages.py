"""Failure reasons name what the user gave (the source URL, the output location), never the
worker's scratch paths that FFmpeg and ffprobe print."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kube_transcode.ladder import HlsOptions
from kube_transcode.messages import JobMessage, JobRef, LadderRequest, OutputLocation
from kube_transcode_worker import encode, probe
from kube_transcode_worker.errors import JobError, PermanentJobError
from kube_transcode_worker.job import LADDER_DIR, SOURCE_NAME, user_names

pytestmark = pytest.mark.unit

SOURCE_URL = "https://media.example.com/uploads/holiday.mp4"
SCRATCH = Path("/tmp/kube-transcode/worker-7f9c/job-1234-abcd")
SOURCE = SCRATCH / SOURCE_NAME
LADDER = SCRATCH / LADDER_DIR


def message() -> JobMessage:
    return JobMessage(
        job=JobRef(uid="1234", namespace="media", name="holiday", generation=1),
        source=SOURCE_URL,
        ladder=LadderRequest(rungs=("360p",)),
        hls=HlsOptions(),
        output=OutputLocation(bucket="videos", prefix="media/holiday"),
    )


def raised(make: Callable[[], object]) -> JobError:
    with pytest.raises(JobError) as caught:
        error = make()
        if isinstance(error, JobError):
            raise error
    return caught.value


# Each permanent failure that can carry a path, made by the code that makes it in a job.
FAILURES: dict[str, Callable[[], object]] = {
    "UnreadableSource": lambda: probe._probe_failure(
        f"file:{SOURCE}: Invalid data found when processing input\n"
    ),
    "UnsupportedFormat": lambda: probe._probe_failure(
        f"[file @ 0x55d0] Format concat is not on whitelist 'mov,mp4'\nfile:{SOURCE}: bad\n"
    ),
    "SourceNotFound": lambda: probe.probe_source(SOURCE),
    "EncodeFailed": lambda: encode._raise_for_failure(
        1,
        [
            f"[in#0 @ 0x1] Error opening input: file:{SOURCE}: Invalid argument",
            f"[hls @ 0x2] Failed to open file '{LADDER}/720p/segment_00003.ts'",
        ],
    ),
    "TruncatedSource": lambda: encode._check_complete(
        3.0, 60.0, [f"[h264 @ 0x3] file:{SOURCE}: Invalid NAL unit size"]
    ),
}


@pytest.mark.parametrize("reason", sorted(FAILURES))
def test_a_permanent_failure_names_the_source_url_not_the_scratch_file(reason: str) -> None:
    error = raised(FAILURES[reason])
    assert isinstance(error, PermanentJobError)
    assert error.reason == reason
    assert str(SCRATCH) in error.message, "the case must start with a worker path in it"

    error.in_user_terms(user_names(SCRATCH, message()))

    assert "/tmp/" not in error.message and "file:" not in error.message, error.message
    assert SOURCE_URL in error.message, error.message
    assert str(error) == f"{reason}: {error.message}"


def test_output_files_are_named_by_their_place_in_the_bucket() -> None:
    error = raised(FAILURES["EncodeFailed"])
    error.in_user_terms(user_names(SCRATCH, message()))
    assert "'s3://videos/media/holiday/720p/segment_00003.ts'" in error.message, error.message


def test_a_message_without_paths_is_left_as_it_is() -> None:
    error = PermanentJobError("NoVideoStream", "the source has no video stream")
    error.in_user_terms(user_names(SCRATCH, message()))
    assert error.message == "the source has no video stream"
