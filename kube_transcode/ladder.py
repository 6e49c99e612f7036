"""The HLS ladder: named rungs, HLS and audio options, and planning a ladder for a source.

Shared by the operator (which resolves and validates a TranscodeJob's ladder) and the worker
(which encodes it). Everything here is pure: no I/O, no FFmpeg.

Named rungs (H.264, bitrates for ~30 fps content, close to Apple's HLS authoring spec table;
"height" is the short side of the picture, so portrait video gets the same rungs turned):

======  ==========  ==========  ============  ============  =======
name    16:9 size   video kbps  maxrate kbps  bufsize kbps  profile
======  ==========  ==========  ============  ============  =======
240p    426x240            400           600           800  main
360p    640x360            800          1200          1600  main
480p    854x480           1400          2100          2800  high
720p    1280x720          3000          4500          6000  high
1080p   1920x1080         6000          9000         12000  high
1440p   2560x1440        10000         15000         20000  high
2160p   3840x2160        18000         27000         36000  high
======  ==========  ==========  ============  ============  =======

maxrate is 1.5x and bufsize 2x the average bitrate unless a rung says otherwise (Apple asks
for peaks within 200% of the average for VOD). Audio is AAC-LC, encoded once as its own
rendition (128 kbps stereo, 48 kHz by default) and shared by every video rendition. The H.264
level of each rendition is derived from its size, frame rate and VBV settings (Table A-1 of
the H.264 spec), so the CODECS attribute in the master playlist is always truthful. HEVC and
AV1 renditions of each rung (`VideoOptions.codecs`) get a share of these bitrates and their own
codec's level: see kube_transcode.codecs.

Planning rules (`plan_ladder`):
- never upscale: rungs taller than the source's short side are dropped;
- a source between rungs gets a top rung at its own (even) short side, named like "718p",
  with bitrates interpolated linearly in height from its neighbours; it is left out when the
  highest kept rung is within 10% of the source, where it would only duplicate that rung;
- aspect ratio is kept (from the display size, i.e. after rotation and sample aspect ratio),
  both dimensions are even, and the long side never exceeds the source's;
- audio is planned once when the source has audio and left out otherwise;
- an explicit list of rungs replaces the default ladder, under the same rules.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kube_transcode.codecs import (
    DEFAULT_SEGMENT_FORMAT,
    DEFAULT_VIDEO_CODECS,
    SegmentFormat,
    VideoCodec,
    check_codecs_fit,
    codec_level,
    rendition_name,
    scaled_kbps,
)

H264Profile = Literal["baseline", "main", "high"]
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]

# What a job gets when it names none: measured as the best speed/size trade on spot cores.
DEFAULT_X264_PRESET: X264Preset = "veryfast"

AUDIO_RENDITION_NAME = "audio"
# The own-height top rung is only worth encoding when it is this much taller than the next.
OWN_HEIGHT_MIN_GAIN = 1.10
DEFAULT_MAXRATE_FACTOR = 1.5
DEFAULT_BUFSIZE_FACTOR = 2.0


class Rung(BaseModel):
    """A requested rendition: its short side and its video bitrate budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Used as a folder name and in FFmpeg's -var_stream_map, so it stays a plain word.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    height: int = Field(ge=16, le=4320, description="short side of the picture, in pixels")
    video_kbps: int = Field(gt=0, le=200_000)
    maxrate_kbps: int | None = Field(default=None, gt=0, le=300_000)
    bufsize_kbps: int | None = Field(default=None, gt=0, le=600_000)
    profile: H264Profile = "high"

    @field_validator("height")
    @classmethod
    def _height_is_even(cls, height: int) -> int:
        if height % 2:
            raise ValueError(f"height must be even (4:2:0 chroma), got {height}")
        return height

    @field_validator("name")
    @classmethod
    def _name_is_not_audio(cls, name: str) -> str:
        if name == AUDIO_RENDITION_NAME:
            raise ValueError(f"{AUDIO_RENDITION_NAME!r} is reserved for the audio rendition")
        return name

    @model_validator(mode="after")
    def _maxrate_covers_average(self) -> Rung:
        if self.maxrate_kbps is not None and self.maxrate_kbps < self.video_kbps:
            raise ValueError(
                f"maxrate_kbps ({self.maxrate_kbps}) must be >= video_kbps ({self.video_kbps})"
            )
        return self

    @property
    def resolved_maxrate_kbps(self) -> int:
        if self.maxrate_kbps is not None:
            return self.maxrate_kbps
        return round(self.video_kbps * DEFAULT_MAXRATE_FACTOR)

    @property
    def resolved_bufsize_kbps(self) -> int:
        if self.bufsize_kbps is not None:
            return self.bufsize_kbps
        return round(self.video_kbps * DEFAULT_BUFSIZE_FACTOR)


def _named(name: str, height: int, video_kbps: int, profile: H264Profile) -> Rung:
    return Rung(
        name=name,
        height=height,
        video_kbps=video_kbps,
        maxrate_kbps=round(video_kbps * DEFAULT_MAXRATE_FACTOR),
        bufsize_kbps=round(video_kbps * DEFAULT_BUFSIZE_FACTOR),
        profile=profile,
    )


NAMED_RUNGS: dict[str, Rung] = {
    rung.name: rung
    for rung in (
        _named("240p", 240, 400, "main"),
        _named("360p", 360, 800, "main"),
        _named("480p", 480, 1400, "high"),
        _named("720p", 720, 3000, "high"),
        _named("1080p", 1080, 6000, "high"),
        _named("1440p", 1440, 10000, "high"),
        _named("2160p", 2160, 18000, "high"),
    )
}
DEFAULT_LADDER: tuple[Rung, ...] = tuple(NAMED_RUNGS.values())


def rung_by_name(name: str) -> Rung:
    """The named rung, or a ValueError that lists the names there are."""
    try:
        return NAMED_RUNGS[name]
    except KeyError:
        known = ", ".join(NAMED_RUNGS)
        raise ValueError(f"unknown rung {name!r}; named rungs are {known}") from None


class HlsOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    segment_seconds: int = Field(default=6, ge=1, le=30)
    # MPEG-TS (every HLS player since 2009) or fragmented MP4 with an init segment (CMAF).
    segment_format: SegmentFormat = DEFAULT_SEGMENT_FORMAT


class VideoOptions(BaseModel):
    """The ladder's video codecs: each rung is encoded once per codec (kube_transcode.codecs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    codecs: tuple[VideoCodec, ...] = Field(default=DEFAULT_VIDEO_CODECS, min_length=1, max_length=3)

    @field_validator("codecs")
    @classmethod
    def _unique(cls, codecs: tuple[VideoCodec, ...]) -> tuple[VideoCodec, ...]:
        if len(set(codecs)) != len(codecs):
            raise ValueError(f"video codecs must be unique, got {', '.join(codecs)}")
        return codecs


class AudioOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bitrate_kbps: int = Field(default=128, ge=32, le=512)
    channels: int = Field(default=2, ge=1, le=2)
    sample_rate: Literal[44100, 48000] = 48000


class SourceInfo(BaseModel):
    """What ffprobe found in a source, reduced to what planning and encoding need."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Display size: rotation and sample aspect ratio already applied, as FFmpeg decodes it.
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    duration_seconds: float = Field(gt=0)
    fps: Fraction
    has_audio: bool
    video_codec: str
    audio_codec: str | None = None
    # Demuxer as ffprobe names it ("mov,mp4,m4a,3gp,3g2,mj2"); the encode pins the same one.
    container: str
    rotation: int = 0

    @field_validator("fps")
    @classmethod
    def _fps_is_positive(cls, fps: Fraction) -> Fraction:
        # Floats such as 29.97 arrive as binary fractions; keep them readable.
        fps = fps.limit_denominator(1_000_000)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        return fps

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def is_portrait(self) -> bool:
        return self.height > self.width


class VideoRendition(BaseModel):
    """A rung resolved against a source in one codec: exact size, level and rate control."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Its folder: the rung's name, with the codec after it for HEVC and AV1 ("720p-av1").
    name: str
    width: int
    height: int
    video_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int
    # H.264: the rung's profile; HEVC and AV1: "main" (8-bit 4:2:0).
    profile: str
    level: str
    fps: Fraction
    codec: VideoCodec = "h264"


class LadderPlan(BaseModel):
    """Everything one encode produces: video renditions (tallest first) and optional audio."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: SourceInfo
    # Per codec (in the order asked), tallest first.
    renditions: tuple[VideoRendition, ...]
    audio: AudioOptions | None
    hls: HlsOptions
    video: VideoOptions = VideoOptions()

    @property
    def fmp4(self) -> bool:
        return self.hls.segment_format == "fmp4"


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def _scaled_size(source: SourceInfo, short_side: int) -> tuple[int, int]:
    """Width and height with the given short side, the source's aspect, even, never upscaled."""
    long_source = max(source.width, source.height)
    long_side = _even(long_source * short_side / source.short_side)
    long_side = min(long_side, long_source - long_source % 2)
    if source.is_portrait:
        return short_side, long_side
    return long_side, short_side


def _own_height_rung(height: int, below: Rung | None, above: Rung) -> Rung:
    """A rung at the source's own short side, bitrates interpolated between its neighbours."""
    low_height = below.height if below else 0

    def interpolate(low: int, high: int) -> int:
        share = (height - low_height) / (above.height - low_height)
        return max(1, round(low + (high - low) * share))

    return Rung(
        name=f"{height}p",
        height=height,
        video_kbps=interpolate(below.video_kbps if below else 0, above.video_kbps),
        maxrate_kbps=interpolate(
            below.resolved_maxrate_kbps if below else 0, above.resolved_maxrate_kbps
        ),
        bufsize_kbps=interpolate(
            below.resolved_bufsize_kbps if below else 0, above.resolved_bufsize_kbps
        ),
        profile=above.profile,
    )


def _rungs_for_source(source: SourceInfo, rungs: list[Rung]) -> list[Rung]:
    """The rungs to encode, shortest first: no upscaling, own-height top rung when between."""
    ordered = sorted(rungs, key=lambda rung: rung.height)
    kept = [rung for rung in ordered if rung.height <= source.short_side]
    above = [rung for rung in ordered if rung.height > source.short_side]
    own_height = source.short_side - source.short_side % 2
    if above and (not kept or own_height > kept[-1].height * OWN_HEIGHT_MIN_GAIN):
        kept.append(_own_height_rung(own_height, kept[-1] if kept else None, above[0]))
    return kept


def _check_unique_names(rungs: list[Rung]) -> None:
    names = [rung.name for rung in rungs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"rung names must be unique, repeated: {', '.join(duplicates)}")


def _rendition(source: SourceInfo, rung: Rung, codec: VideoCodec) -> VideoRendition:
    width, height = _scaled_size(source, rung.height)
    maxrate = scaled_kbps(rung.resolved_maxrate_kbps, codec)
    bufsize = scaled_kbps(rung.resolved_bufsize_kbps, codec)
    return VideoRendition(
        name=rendition_name(rung.name, codec),
        width=width,
        height=height,
        video_kbps=scaled_kbps(rung.video_kbps, codec),
        maxrate_kbps=maxrate,
        bufsize_kbps=bufsize,
        profile=rung.profile if codec == "h264" else "main",
        level=codec_level(codec, width, height, source.fps, maxrate, bufsize),
        fps=source.fps,
        codec=codec,
    )


def plan_ladder(
    source: SourceInfo,
    requested: list[Rung] | None = None,
    *,
    hls: HlsOptions | None = None,
    audio: AudioOptions | None = None,
    video: VideoOptions | None = None,
) -> LadderPlan:
    """Resolve the requested rungs (default: every named rung) against a probed source, once
    per video codec."""
    hls = hls or HlsOptions()
    video = video or VideoOptions()
    check_codecs_fit(video.codecs, hls.segment_format)
    if requested is not None and not requested:
        raise ValueError("an explicit ladder needs at least one rung")
    rungs = list(DEFAULT_LADDER if requested is None else requested)
    _check_unique_names(rungs)
    chosen = _rungs_for_source(source, rungs)
    _check_unique_names(chosen)
    return LadderPlan(
        source=source,
        renditions=tuple(
            _rendition(source, rung, codec) for codec in video.codecs for rung in reversed(chosen)
        ),
        audio=(audio or AudioOptions()) if source.has_audio else None,
        hls=hls,
        video=video,
    )
