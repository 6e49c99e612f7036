"""The chunk plan: whole segments, contiguous, covering the source; a chunk task's message."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from pydantic import ValidationError

from kube_transcode.chunks import (
    DEFAULT_CHUNK_SECONDS,
    MAX_CHUNK_SECONDS,
    MIN_CHUNK_SECONDS,
    ChunkCounts,
    ChunkingOptions,
    chunk_length,
    plan_chunks,
)
from kube_transcode.ladder import SourceInfo
from kube_transcode.messages import (
    ChunkReport,
    ChunkTask,
    JobEvent,
    JobMessage,
    JobRef,
    OutputLocation,
    Phase,
    StagedSource,
    decode_event,
    decode_job,
    encode,
    work_area_prefix,
)

pytestmark = pytest.mark.unit

AUTO = ChunkingOptions()


@pytest.mark.parametrize("segment", [1, 2, 4, 5, 6, 7, 10, 13, 25, 30])
def test_the_default_length_is_whole_segments_within_the_bounds(segment: int) -> None:
    length = chunk_length(AUTO, segment)
    assert length % segment == 0
    assert MIN_CHUNK_SECONDS <= length <= MAX_CHUNK_SECONDS
    assert abs(length - DEFAULT_CHUNK_SECONDS) <= segment


@pytest.mark.parametrize(
    ("duration", "segment", "chunk"),
    [(120.0, 6, 30), (125.5, 6, 30), (7201.3, 6, 30), (61.0, 6, 30), (97.0, 4, 12), (600, 10, 60)],
)
def test_chunks_cover_the_source_on_segment_boundaries(
    duration: float, segment: int, chunk: int
) -> None:
    ranges = plan_chunks(duration, segment, ChunkingOptions(chunk_seconds=chunk))
    assert ranges, "a source at least twice the chunk length is chunked"
    assert ranges[0].start_seconds == 0
    assert ranges[-1].end_seconds == pytest.approx(duration)
    for before, after in itertools.pairwise(ranges):
        assert after.start_seconds == before.end_seconds  # no gap, no overlap
        assert before.duration_seconds == chunk
    for index, part in enumerate(ranges):
        assert part.index == index
        assert part.start_seconds % segment == 0
        assert part.first_segment == part.start_seconds // segment
    assert ranges[-1].duration_seconds >= segment  # no sliver of a last chunk


def test_a_two_minute_source_is_chunked_by_default() -> None:
    assert len(plan_chunks(120.0, 6, AUTO)) == 4


@pytest.mark.parametrize(
    ("duration", "options"),
    [
        (59.9, AUTO),
        (3600.0, ChunkingOptions(mode="Off")),
        (100.0, ChunkingOptions(chunk_seconds=60)),
    ],
)
def test_short_sources_and_off_keep_the_single_run(
    duration: float, options: ChunkingOptions
) -> None:
    assert plan_chunks(duration, 6, options) == ()


def test_a_chunk_length_that_is_not_whole_segments_is_refused() -> None:
    with pytest.raises(ValueError, match="chunkSeconds 20 is not a whole number of 6 s segments"):
        plan_chunks(600.0, 6, ChunkingOptions(chunk_seconds=20))


@pytest.mark.parametrize("seconds", [MIN_CHUNK_SECONDS - 1, MAX_CHUNK_SECONDS + 1])
def test_chunk_lengths_outside_the_bounds_are_invalid(seconds: int) -> None:
    with pytest.raises(ValidationError):
        ChunkingOptions(chunk_seconds=seconds)


def test_counts_cannot_claim_more_done_than_there_are() -> None:
    with pytest.raises(ValidationError, match="exceeds total"):
        ChunkCounts(total=3, done=4)


def _job() -> JobMessage:
    return JobMessage(
        job=JobRef(uid="u-1", namespace="media", name="film", generation=2),
        source="https://example.com/film.mp4",
        output=OutputLocation(bucket="videos", prefix="media/film"),
    )


def _task(kind: str = "video") -> ChunkTask:
    probed = SourceInfo(
        width=1920,
        height=1080,
        duration_seconds=125.5,
        fps=Fraction(30000, 1001),
        has_audio=True,
        video_codec="h264",
        container="mov,mp4,m4a,3gp,3g2,mj2",
    )
    return ChunkTask.model_validate(
        {
            "kind": kind,
            "index": 4 if kind == "audio" else 1,
            "chunks": 4,
            "start_seconds": 0.0 if kind == "audio" else 30.0,
            "duration_seconds": 125.5 if kind == "audio" else 30.0,
            "first_segment": 0 if kind == "audio" else 5,
            "source": StagedSource(bucket="videos", key=work_area_prefix("u-1", 2) + "source"),
            "probed": probed,
            "preset": "veryfast",
        }
    )


def test_a_chunk_task_travels_whole_and_starts_its_own_attempts() -> None:
    job = _job().next_attempt()
    part = job.for_task(_task())
    assert part.attempt == 1 and part.task_name == "chunk-0001"
    assert part.job == job.job and part.output == job.output
    assert decode_job(encode(part)) == part
    assert decode_job(encode(part)).task.probed.fps == Fraction(30000, 1001)  # type: ignore[union-attr]
    audio = _task("audio")
    assert audio.name == "audio" and audio.total_tasks == 5


def test_a_chunk_event_names_its_part() -> None:
    now = datetime.now(UTC)
    event = JobEvent(
        job=_job().job,
        attempt=2,
        worker="w-1",
        phase=Phase.transcoding,
        chunk=ChunkReport(task="chunk-0003", counts=ChunkCounts(total=5, done=2), stored=True),
        started_at=now,
        at=now,
    )
    assert decode_event(encode(event)) == event
    assert event.part == "chunk-0003"
    with pytest.raises(ValidationError):
        ChunkReport(task="../x", counts=ChunkCounts(total=1))
