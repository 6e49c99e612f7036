"""Chunked encoding: when a job is cut into time ranges, and where the ranges fall. Pure.

A long source is encoded as N video chunks (every video rung of one time range each, on any
worker) plus one audio task (the whole source's audio, once: AAC priming at every chunk start
would click). A chunk is whole HLS segments: its start and length are multiples of the
segment length, so its segments carry the numbers and timestamps of one continuous encode
and the media playlists are the chunks' own, concatenated.

Sources shorter than twice the chunk length keep the single run: chunking them would cost
its per-chunk overhead for no parallelism worth having.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Bounds of spec.chunking.chunkSeconds (the CRD enforces them too).
MIN_CHUNK_SECONDS: Final = 12
MAX_CHUNK_SECONDS: Final = 60
# Chosen from the measured per-chunk overhead (docs/chunked-encoding.md, `make bench`).
DEFAULT_CHUNK_SECONDS: Final = 30

ChunkingMode = Literal["Auto", "Off"]
AUDIO_TASK: Final = "audio"
PLAN_TASK: Final = "plan"


class ChunkingOptions(BaseModel):
    """A job's choice: chunk long sources (`Auto`) or never (`Off`); chunk length in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: ChunkingMode = "Auto"
    # None: DEFAULT_CHUNK_SECONDS rounded to whole segments.
    chunk_seconds: int | None = Field(default=None, ge=MIN_CHUNK_SECONDS, le=MAX_CHUNK_SECONDS)


@dataclass(frozen=True)
class TimeRange:
    """One video chunk: [start, start + duration) of the source, from segment `first_segment`."""

    index: int
    start_seconds: float
    duration_seconds: float
    first_segment: int

    @property
    def end_seconds(self) -> float:
        return self.start_seconds + self.duration_seconds


def chunk_length(options: ChunkingOptions, segment_seconds: int) -> int:
    """The chunk length for this segment length: whole segments, within the bounds."""
    if options.chunk_seconds is not None:
        if options.chunk_seconds % segment_seconds:
            raise ValueError(
                f"chunkSeconds {options.chunk_seconds} is not a whole number of "
                f"{segment_seconds} s segments"
            )
        return options.chunk_seconds
    segments = max(1, round(DEFAULT_CHUNK_SECONDS / segment_seconds))
    while segments * segment_seconds > MAX_CHUNK_SECONDS and segments > 1:
        segments -= 1
    while segments * segment_seconds < MIN_CHUNK_SECONDS:
        segments += 1
    return segments * segment_seconds


def plan_chunks(
    duration_seconds: float, segment_seconds: int, options: ChunkingOptions
) -> tuple[TimeRange, ...]:
    """The video chunks of a source; empty when it is encoded in one run.

    Every chunk but the last is `chunk_length` long; a remainder shorter than one segment
    joins the chunk before it rather than paying a chunk's start-up for a sliver.
    """
    if options.mode == "Off":
        return ()
    length = chunk_length(options, segment_seconds)
    if duration_seconds < 2 * length:
        return ()
    starts = list(range(0, int(duration_seconds // length) * length, length))
    if duration_seconds - (starts[-1] + length) >= segment_seconds:
        starts.append(starts[-1] + length)
    ranges = []
    for index, start in enumerate(starts):
        last = index == len(starts) - 1
        end = duration_seconds if last else start + length
        ranges.append(
            TimeRange(
                index=index,
                start_seconds=float(start),
                duration_seconds=float(end - start),
                first_segment=start // segment_seconds,
            )
        )
    return tuple(ranges)


def chunk_task_name(index: int) -> str:
    return f"chunk-{index:04d}"


class ChunkCounts(BaseModel):
    """A chunked job's tasks as the stored objects show them (audio counts as one task)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    total: int = Field(ge=1)
    done: int = Field(default=0, ge=0)
    # Encodes started again after an interruption or a crash (a lost chunk is redone).
    redone: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _done_within_total(self) -> ChunkCounts:
        if self.done > self.total:
            raise ValueError(f"done ({self.done}) exceeds total ({self.total})")
        return self
