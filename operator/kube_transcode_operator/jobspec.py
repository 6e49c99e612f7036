"""The TranscodeJob spec as a typed model. The CRD defaults priority, pool and output; the
defaults of ladder, video, hls, retry, chunking and thumbnails are applied here, after the
merge with the job's TranscodeTemplate (templates.py), so a template's value beats them.

The API server already rejected what the schema can express; parsing here only turns the
body into types, so an error here means the CRD and this model disagree (or, merged over a
template, a combination templates.job_spec reports).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kube_transcode.chunks import MAX_CHUNK_SECONDS, MIN_CHUNK_SECONDS, ChunkingMode
from kube_transcode.codecs import (
    DEFAULT_SEGMENT_FORMAT,
    DEFAULT_VIDEO_CODECS,
    SegmentFormat,
    VideoCodec,
)
from kube_transcode.thumbnails import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_POSTER_WIDTH,
    DEFAULT_SHEET_COLUMNS,
    DEFAULT_SHEET_ROWS,
    DEFAULT_THUMBNAIL_WIDTH,
    ThumbnailOptions,
)

Priority = Literal["low", "normal", "high"]
DEFAULT_POOL: Final = "default"  # the chart's worker Deployment serves it
Preset = Literal["standard", "mobile", "hd"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class Source(_Model):
    url: str


class RungSpec(_Model):
    name: str
    height: int | None = None
    video_bitrate_kbps: int | None = None


class LadderSpec(_Model):
    preset: Preset | None = None
    rungs: tuple[RungSpec, ...] | None = None


class OutputSpec(_Model):
    bucket: str | None = None
    prefix: str | None = None


class VideoSpec(_Model):
    codecs: tuple[VideoCodec, ...] = DEFAULT_VIDEO_CODECS


class HlsSpec(_Model):
    segment_seconds: int = 6
    segment_format: SegmentFormat = DEFAULT_SEGMENT_FORMAT


class ChunkingSpec(_Model):
    mode: ChunkingMode = "Auto"
    # None: the default chunk length for the segment length (kube_transcode.chunks).
    chunk_seconds: int | None = Field(default=None, ge=MIN_CHUNK_SECONDS, le=MAX_CHUNK_SECONDS)


class PosterSpec(_Model):
    enabled: bool = True
    width: int = Field(default=DEFAULT_POSTER_WIDTH, ge=16)


class StoryboardSpec(_Model):
    enabled: bool = True
    interval_seconds: int = Field(default=DEFAULT_INTERVAL_SECONDS, ge=1)
    width: int = Field(default=DEFAULT_THUMBNAIL_WIDTH, ge=16)
    columns: int = Field(default=DEFAULT_SHEET_COLUMNS, ge=1)
    rows: int = Field(default=DEFAULT_SHEET_ROWS, ge=1)


class ThumbnailsSpec(_Model):
    poster: PosterSpec = PosterSpec()
    storyboard: StoryboardSpec = StoryboardSpec()

    def options(self) -> ThumbnailOptions:
        """As the JobMessage carries them (kube_transcode.thumbnails)."""
        return ThumbnailOptions.model_validate(self.model_dump())


class RetrySpec(_Model):
    attempts: int = Field(default=3, ge=1)
    backoff_seconds: int = Field(default=10, ge=1)
    max_backoff_seconds: int = Field(default=300, ge=1)


class TranscodeJobSpec(_Model):
    source: Source
    ladder: LadderSpec = LadderSpec(preset="standard")
    priority: Priority = "normal"
    pool: str = DEFAULT_POOL
    output: OutputSpec = OutputSpec()
    video: VideoSpec = VideoSpec()
    hls: HlsSpec = HlsSpec()
    retry: RetrySpec = RetrySpec()
    chunking: ChunkingSpec = ChunkingSpec()
    thumbnails: ThumbnailsSpec = ThumbnailsSpec()
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None

    @classmethod
    def from_body(cls, spec: Mapping[str, Any]) -> TranscodeJobSpec:
        return cls.model_validate(dict(spec))
