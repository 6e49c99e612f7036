"""Poster and storyboard: what a job asks for, where they go, and the storyboard's VTT. Pure.

- **Poster**: one JPEG of a representative frame. FFmpeg's `thumbnail` filter picks the frame
  closest to the average of a short window (POSTER_WINDOW_SECONDS) that starts 10 % into the
  source: past the black or faded first frames and title cards, and the filter skips a frame
  caught mid-cut within the window. Width `poster.width` (default 1280), never wider than
  the source; aspect kept, even sizes.
- **Storyboard**: thumbnail n is the first frame at or after n * `intervalSeconds` (global
  times, so chunked jobs' parts agree), `width` pixels wide (default 160), tiled row by row
  into sprite sheets of `columns` x `rows` (default 5x5) named `sheet-0001.jpg`...; the WebVTT
  file has one cue per thumbnail, covering the whole duration without gaps:
  `00:00:10.000 --> 00:00:20.000` then `sheet-0001.jpg#xywh=160,0,160,90`.

Both are made in the ladder's own FFmpeg run (a branch of its filter graph), so the source is
decoded once; the sheets are tiled from the thumbnails' JPEGs, never from the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

POSTER_NAME: Final = "poster.jpg"
STORYBOARD_DIR: Final = "storyboard"
STORYBOARD_VTT_NAME: Final = "storyboard.vtt"
DEFAULT_POSTER_WIDTH: Final = 1280
DEFAULT_INTERVAL_SECONDS: Final = 10
DEFAULT_THUMBNAIL_WIDTH: Final = 160
DEFAULT_SHEET_COLUMNS: Final = 5
DEFAULT_SHEET_ROWS: Final = 5
# Where the poster is looked for: this share into the source, over this long a window.
POSTER_POSITION: Final = 0.10
POSTER_WINDOW_SECONDS: Final = 1.0


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PosterOptions(_Options):
    enabled: bool = True
    width: int = Field(default=DEFAULT_POSTER_WIDTH, ge=16, le=7680)


class StoryboardOptions(_Options):
    enabled: bool = True
    interval_seconds: int = Field(default=DEFAULT_INTERVAL_SECONDS, ge=1, le=3600)
    width: int = Field(default=DEFAULT_THUMBNAIL_WIDTH, ge=16, le=1280)
    columns: int = Field(default=DEFAULT_SHEET_COLUMNS, ge=1, le=20)
    rows: int = Field(default=DEFAULT_SHEET_ROWS, ge=1, le=20)

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows


class ThumbnailOptions(_Options):
    poster: PosterOptions = PosterOptions()
    storyboard: StoryboardOptions = StoryboardOptions()


@dataclass(frozen=True)
class Size:
    width: int
    height: int


def scaled_size(width: int, source_width: int, source_height: int) -> Size:
    """`width` (at most the source's), aspect kept, both even."""
    out_width = max(2, min(width, source_width) // 2 * 2)
    out_height = max(2, round(out_width * source_height / source_width / 2) * 2)
    return Size(out_width, out_height)


def poster_seconds(duration_seconds: float) -> float:
    """Where the poster's window starts in the source."""
    return duration_seconds * POSTER_POSITION


def thumbnail_count(duration_seconds: float, interval_seconds: int) -> int:
    """Thumbnails of a source: one at every multiple of the interval before its end."""
    return max(1, math.ceil(duration_seconds / interval_seconds - 1e-9))


def thumbnail_indices(start_seconds: float, end_seconds: float, interval_seconds: int) -> range:
    """The thumbnails whose time lies in [start, end): a chunk's share of the storyboard."""
    first = math.ceil(start_seconds / interval_seconds - 1e-9)
    stop = math.ceil(end_seconds / interval_seconds - 1e-9)
    return range(first, max(first, stop))


def sheet_name(sheet: int) -> str:
    """The n-th sprite sheet (0-based) as stored: sheet-0001.jpg for the first."""
    return f"sheet-{sheet + 1:04d}.jpg"


def sheet_count(thumbnails: int, options: StoryboardOptions) -> int:
    return math.ceil(thumbnails / options.per_sheet)


def vtt_timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def storyboard_vtt(duration_seconds: float, options: StoryboardOptions, thumb: Size) -> str:
    """The WebVTT thumbnail track: cue n from n * interval to the next (the last to the end),
    pointing at its tile in its sheet (paths relative to the VTT)."""
    lines = ["WEBVTT", ""]
    interval = options.interval_seconds
    count = thumbnail_count(duration_seconds, interval)
    for index in range(count):
        start = index * interval
        end = duration_seconds if index == count - 1 else (index + 1) * interval
        sheet, position = divmod(index, options.per_sheet)
        row, column = divmod(position, options.columns)
        x, y = column * thumb.width, row * thumb.height
        lines += [
            f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}",
            f"{sheet_name(sheet)}#xywh={x},{y},{thumb.width},{thumb.height}",
            "",
        ]
    return "\n".join(lines)
