"""Probe a local source with ffprobe and turn the report into a SourceInfo, or a clear error."""

from __future__ import annotations

import json
import math
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kube_transcode.ladder import SourceInfo
from kube_transcode_worker.errors import PermanentJobError

# Demuxers a source may use. Playlist-like formats (hls, concat) are left out on purpose: they
# make FFmpeg open further files or URLs named inside the source.
DEFAULT_ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mov",
    "matroska",
    "mpegts",
    "avi",
    "flv",
    "mxf",
    "mpeg",
    "asf",
    "ogg",
    "dv",
    "h264",
    "hevc",
    "m4v",
    "mpegvideo",
    "yuv4mpegpipe",
)
STDERR_TAIL_LINES = 5


class ProbeLimits(BaseModel):
    """What a worker accepts; anything outside fails the job before encoding starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_duration_seconds: float = Field(default=4 * 3600, gt=0)
    max_long_side: int = Field(default=7680, gt=0)
    max_short_side: int = Field(default=4320, gt=0)
    min_short_side: int = Field(default=32, ge=16)
    max_fps: float = Field(default=120, gt=0)
    allowed_demuxers: tuple[str, ...] = DEFAULT_ALLOWED_DEMUXERS
    timeout_seconds: float = Field(default=120, gt=0)


def ffprobe_command(path: Path, limits: ProbeLimits, ffprobe: str = "ffprobe") -> list[str]:
    return [
        ffprobe,
        "-hide_banner",
        "-v",
        "error",
        "-format_whitelist",
        ",".join(limits.allowed_demuxers),
        "-print_format",
        "json",
        "-show_streams",
        "-show_format",
        # The file: prefix keeps a name like "concat:x" or "-x" from being read as more.
        f"file:{path.resolve()}",
    ]


def probe_source(
    path: Path, limits: ProbeLimits | None = None, ffprobe: str = "ffprobe"
) -> SourceInfo:
    """Run ffprobe on a local file; PermanentJobError when it is no usable video."""
    limits = limits or ProbeLimits()
    if not path.is_file():
        raise PermanentJobError("SourceNotFound", f"{path} is not a file")
    try:
        completed = subprocess.run(
            ffprobe_command(path, limits, ffprobe),
            capture_output=True,
            text=True,
            timeout=limits.timeout_seconds,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise PermanentJobError(
            "ProbeTimeout", f"ffprobe took longer than {limits.timeout_seconds:g} s"
        ) from None
    if completed.returncode != 0:
        raise _probe_failure(completed.stderr)
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise PermanentJobError("UnreadableSource", "ffprobe printed no valid JSON") from None
    return source_info_from_ffprobe(report, limits)


def _probe_failure(stderr: str) -> PermanentJobError:
    tail = " | ".join(stderr.strip().splitlines()[-STDERR_TAIL_LINES:]) or "no output"
    if "not on whitelist" in stderr:
        return PermanentJobError("UnsupportedFormat", f"container format not accepted: {tail}")
    return PermanentJobError("UnreadableSource", f"ffprobe cannot read the source: {tail}")


def source_info_from_ffprobe(report: dict[str, Any], limits: ProbeLimits) -> SourceInfo:
    """Pure: an ffprobe JSON report (-show_streams -show_format) checked against the limits."""
    streams: list[dict[str, Any]] = report.get("streams") or []
    fmt: dict[str, Any] = report.get("format") or {}
    video = _main_video_stream(streams)
    if video is None:
        raise PermanentJobError("NoVideoStream", "the source has no video stream")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)

    width, height, rotation = _display_size(video)
    fps = _frame_rate(video)
    duration = _duration(fmt, video)
    info = SourceInfo(
        width=width,
        height=height,
        duration_seconds=duration,
        fps=fps,
        has_audio=audio is not None,
        video_codec=str(video.get("codec_name") or "unknown"),
        audio_codec=str(audio.get("codec_name") or "unknown") if audio else None,
        container=str(fmt.get("format_name") or "unknown"),
        rotation=rotation,
    )
    _check_limits(info, limits)
    return info


def _main_video_stream(streams: list[dict[str, Any]]) -> dict[str, Any] | None:
    for stream in streams:
        # Cover art in audio files shows up as a one-frame "video" stream.
        if stream.get("codec_type") == "video" and not _is_attached_picture(stream):
            return stream
    return None


def _is_attached_picture(stream: dict[str, Any]) -> bool:
    disposition: dict[str, Any] = stream.get("disposition") or {}
    return bool(disposition.get("attached_pic"))


def _display_size(video: dict[str, Any]) -> tuple[int, int, int]:
    """Width, height and rotation as FFmpeg will decode the picture (autorotate, square pixels)."""
    width = _positive_int(video.get("width"))
    height = _positive_int(video.get("height"))
    if width is None or height is None:
        raise PermanentJobError("UnreadableSource", "the video stream has no picture size")
    sample_aspect = _fraction(video.get("sample_aspect_ratio"), separator=":")
    if sample_aspect is not None and sample_aspect != 1:
        width = max(1, round(width * sample_aspect))
    rotation = _rotation(video)
    if rotation in (90, 270):
        width, height = height, width
    return width, height, rotation


def _rotation(video: dict[str, Any]) -> int:
    for side_data in video.get("side_data_list") or []:
        if "rotation" in side_data:
            return round(float(side_data["rotation"])) % 360
    tags: dict[str, Any] = video.get("tags") or {}
    try:
        return round(float(tags.get("rotate", 0))) % 360
    except ValueError:
        return 0


def _frame_rate(video: dict[str, Any]) -> Fraction:
    # avg_frame_rate is right for variable frame rate; r_frame_rate is the fallback.
    for key in ("avg_frame_rate", "r_frame_rate"):
        rate = _fraction(video.get(key), separator="/")
        if rate is not None and rate > 0:
            return rate
    raise PermanentJobError("UnknownFrameRate", "the video stream has no usable frame rate")


def _duration(fmt: dict[str, Any], video: dict[str, Any]) -> float:
    for value in (fmt.get("duration"), video.get("duration")):
        try:
            seconds = float(str(value))
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    raise PermanentJobError("UnknownDuration", "the source has no known, non-zero duration")


def _check_limits(info: SourceInfo, limits: ProbeLimits) -> None:
    long_side = max(info.width, info.height)
    if info.duration_seconds > limits.max_duration_seconds:
        raise PermanentJobError(
            "SourceTooLong",
            f"duration {info.duration_seconds:.1f} s exceeds the limit of "
            f"{limits.max_duration_seconds:g} s",
        )
    if long_side > limits.max_long_side or info.short_side > limits.max_short_side:
        raise PermanentJobError(
            "SourceTooLarge",
            f"{info.width}x{info.height} exceeds the limit of "
            f"{limits.max_long_side}x{limits.max_short_side}",
        )
    if info.short_side < limits.min_short_side:
        raise PermanentJobError(
            "SourceTooSmall",
            f"{info.width}x{info.height} is below the minimum short side of "
            f"{limits.min_short_side} px",
        )
    if info.fps > limits.max_fps:
        raise PermanentJobError(
            "FrameRateTooHigh",
            f"{float(info.fps):.3f} fps exceeds the limit of {limits.max_fps:g} fps",
        )


def _positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _fraction(value: Any, separator: str) -> Fraction | None:
    """ffprobe's "24000/1001" or "16:9"; None for "0/0", "N/A" and other non-answers."""
    if not isinstance(value, str) or separator not in value:
        return None
    numerator, _, denominator = value.partition(separator)
    try:
        num, den = int(numerator), int(denominator)
    except ValueError:
        return None
    if num <= 0 or den <= 0:
        return None
    return Fraction(num, den)
