"""The poster and storyboard of a run: its FFmpeg branches and outputs, then sheets and VTT.

The ladder's FFmpeg run (encode.py) splits the decoded picture once more for each: the poster
branch trims to its window (kube_transcode.thumbnails) and keeps the `thumbnail` filter's
pick; the storyboard branch selects the first frame at or after every multiple of the
interval, in the source's time (a chunk adds its start), so the parts of a chunked job make
exactly their share. Both are written as JPEGs after the HLS output. The sheets are then
tiled from those JPEGs by a small FFmpeg run with the `tile` filter; the video is never
decoded again. Pure, except `fill_gaps` and `write_storyboard`, which work on files.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kube_transcode.ladder import SourceInfo
from kube_transcode.messages import ChunkTask
from kube_transcode.thumbnails import (
    POSTER_NAME,
    POSTER_WINDOW_SECONDS,
    STORYBOARD_DIR,
    STORYBOARD_VTT_NAME,
    Size,
    StoryboardOptions,
    ThumbnailOptions,
    poster_seconds,
    scaled_size,
    storyboard_vtt,
    thumbnail_count,
    thumbnail_indices,
)
from kube_transcode_worker.errors import PermanentJobError

FRAMES_DIR: Final = "frames"
FRAME_PATTERN: Final = "%06d.jpg"
# mjpeg's quality scale (2 best .. 31 worst): a sharp poster, small thumbnails.
POSTER_QUALITY: Final = 2
THUMBNAIL_QUALITY: Final = 4
SHEET_QUALITY: Final = 4


@dataclass(frozen=True)
class PosterShot:
    """The poster's window in this run's input time, and how many frames the filter weighs."""

    start_seconds: float
    window_frames: int
    size: Size


@dataclass(frozen=True)
class StoryboardShots:
    """The thumbnails this run makes: `indices` of the job's storyboard."""

    offset_seconds: float
    interval_seconds: int
    indices: range
    size: Size


@dataclass(frozen=True)
class ThumbnailPlan:
    poster: PosterShot | None = None
    storyboard: StoryboardShots | None = None

    @property
    def empty(self) -> bool:
        return self.poster is None and (self.storyboard is None or not self.storyboard.indices)


def frame_name(index: int) -> str:
    return FRAME_PATTERN % index


def plan_thumbnails(
    options: ThumbnailOptions, source: SourceInfo, part: ChunkTask | None = None
) -> ThumbnailPlan:
    """What a run makes: a whole run everything, a video chunk its range's share, audio none."""
    if part is not None and part.kind == "audio":
        return ThumbnailPlan()
    start = 0.0 if part is None else part.start_seconds
    end = source.duration_seconds if part is None else part.start_seconds + part.duration_seconds
    poster = None
    at = poster_seconds(source.duration_seconds)
    if options.poster.enabled and start <= at < end:
        poster = PosterShot(
            start_seconds=at - start,
            window_frames=max(1, math.ceil(float(source.fps) * POSTER_WINDOW_SECONDS)),
            size=scaled_size(options.poster.width, source.width, source.height),
        )
    storyboard = None
    board = options.storyboard
    if board.enabled:
        indices = thumbnail_indices(start, end, board.interval_seconds)
        if part is None:  # a whole run holds every thumbnail, however short the source
            indices = range(thumbnail_count(source.duration_seconds, board.interval_seconds))
        storyboard = StoryboardShots(
            offset_seconds=start,
            interval_seconds=board.interval_seconds,
            indices=indices,
            size=scaled_size(board.width, source.width, source.height),
        )
    return ThumbnailPlan(poster=poster, storyboard=storyboard)


def branch_labels(plan: ThumbnailPlan) -> list[str]:
    """The filter-graph labels the decoded picture is split into for the thumbnails."""
    labels = []
    if plan.poster is not None:
        labels.append("[tposter]")
    if plan.storyboard is not None and plan.storyboard.indices:
        labels.append("[tboard]")
    return labels


def _to_jpeg(size: Size) -> str:
    return f"scale=w={size.width}:h={size.height},setsar=1,format=yuvj420p"


def branch_filters(plan: ThumbnailPlan) -> list[str]:
    """The filter chains that read the labels of branch_labels and end in JPEG-ready frames."""
    chains = []
    if plan.poster is not None:
        poster = plan.poster
        chains.append(
            f"[tposter]trim=start={poster.start_seconds:.6f}:duration={POSTER_WINDOW_SECONDS},"
            f"{_to_jpeg(poster.size)},thumbnail=n={poster.window_frames}[poster]"
        )
    board = plan.storyboard
    if board is not None and board.indices:
        offset, interval = f"{board.offset_seconds:.6f}", board.interval_seconds
        first = board.indices.start * interval
        # The first frame at or after each multiple of the interval, in the source's time.
        select = (
            f"if(isnan(prev_selected_t),gte(t+{offset},{first}),"
            f"gt(floor((t+{offset})/{interval}),floor((prev_selected_t+{offset})/{interval})))"
        )
        chains.append(f"[tboard]select='{select}',{_to_jpeg(board.size)}[board]")
    return chains


def output_args(plan: ThumbnailPlan, folder: Path) -> list[str]:
    """The JPEG outputs, after the HLS one: frames passed through as selected, never
    duplicated to a constant rate (image2's default)."""
    args: list[str] = []
    if plan.poster is not None:
        args += [
            "-map",
            "[poster]",
            "-fps_mode",
            "passthrough",
            "-frames:v",
            "1",
            "-c:v",
            "mjpeg",
            "-q:v",
            str(POSTER_QUALITY),
            "-f",
            "image2",
            "-update",
            "1",
            str(folder / POSTER_NAME),
        ]
    board = plan.storyboard
    if board is not None and board.indices:
        args += [
            "-map",
            "[board]",
            "-fps_mode",
            "passthrough",
            "-frames:v",
            str(len(board.indices)),
            "-c:v",
            "mjpeg",
            "-q:v",
            str(THUMBNAIL_QUALITY),
            "-f",
            "image2",
            "-start_number",
            str(board.indices.start),
            str(folder / FRAMES_DIR / FRAME_PATTERN),
        ]
    return args


def produced_frames(folder: Path) -> list[int]:
    """The thumbnail indices a run wrote into folder/frames/."""
    frames = folder / FRAMES_DIR
    if not frames.is_dir():
        return []
    return sorted(int(path.stem) for path in frames.glob("*.jpg") if path.stem.isdigit())


def fill_gaps(frames: Path, count: int) -> None:
    """Every thumbnail 0..count-1 present: a missing one (no frame after its time: the last
    of a source that ends just past it) is its nearest neighbour's copy."""
    have = sorted(int(p.stem) for p in frames.glob("*.jpg") if p.stem.isdigit())
    if not have:
        raise PermanentJobError("StoryboardFailed", "FFmpeg made no storyboard thumbnails")
    for index in range(count):
        target = frames / frame_name(index)
        if not target.exists():
            nearest = min(have, key=lambda h: (abs(h - index), h))
            shutil.copyfile(frames / frame_name(nearest), target)
    for extra in (h for h in have if h >= count):
        (frames / frame_name(extra)).unlink()


def tile_command(
    frames: Path, out: Path, options: StoryboardOptions, ffmpeg: str = "ffmpeg"
) -> list[str]:
    """Thumbnails 0.. tiled row by row into sheet-0001.jpg...; a last, partial sheet keeps
    the full size (the rest black), so every cue's tile lies inside its sheet."""
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "image2",
        "-framerate",
        "1",
        "-start_number",
        "0",
        "-i",
        str(frames / FRAME_PATTERN),
        "-vf",
        f"tile={options.columns}x{options.rows}",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "mjpeg",
        "-q:v",
        str(SHEET_QUALITY),
        "-f",
        "image2",
        "-start_number",
        "1",
        str(out / "sheet-%04d.jpg"),
    ]


def write_storyboard(
    frames: Path,
    ladder: Path,
    duration_seconds: float,
    options: StoryboardOptions,
    size: Size,
    ffmpeg: str = "ffmpeg",
) -> Path:
    """ladder/storyboard/: the sheets tiled from frames/ and the VTT; returns the VTT."""
    fill_gaps(frames, thumbnail_count(duration_seconds, options.interval_seconds))
    out = ladder / STORYBOARD_DIR
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        tile_command(frames, out, options, ffmpeg), capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        tail = " | ".join(run.stderr.strip().splitlines()[-3:]) or "no output"
        raise PermanentJobError("StoryboardFailed", f"tiling the storyboard failed: {tail}")
    vtt = out / STORYBOARD_VTT_NAME
    vtt.write_text(storyboard_vtt(duration_seconds, options, size))
    return vtt


def storyboard_size(options: ThumbnailOptions, source: SourceInfo) -> Size:
    return scaled_size(options.storyboard.width, source.width, source.height)


def finish(
    options: ThumbnailOptions,
    source: SourceInfo,
    thumbs: Path,
    ladder: Path,
    ffmpeg: str = "ffmpeg",
) -> None:
    """Poster and storyboard from the runs' JPEGs in thumbs/ into the ladder folder."""
    if options.poster.enabled:
        poster = thumbs / POSTER_NAME
        if not poster.is_file():
            raise PermanentJobError("PosterFailed", "FFmpeg made no poster frame")
        shutil.copyfile(poster, ladder / POSTER_NAME)
    if options.storyboard.enabled:
        write_storyboard(
            thumbs / FRAMES_DIR,
            ladder,
            source.duration_seconds,
            options.storyboard,
            storyboard_size(options, source),
            ffmpeg,
        )
