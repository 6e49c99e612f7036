"""Poster and storyboard as a player and a person check them: a real JPEG of the asked width
that is not black, and a WebVTT track whose cues cover the whole video, each tile inside its
sprite sheet."""

from __future__ import annotations

import itertools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.media import FFMPEG, ffprobe_json

# Mean luma (0..255) above which a picture is not black (video black is 16).
NOT_BLACK_LUMA = 40
_CUE = re.compile(
    r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n(\S+?)#xywh=(\d+),(\d+),"
    r"(\d+),(\d+)$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    sheet: str
    x: int
    y: int
    width: int
    height: int


def jpeg_size(path: Path) -> tuple[int, int]:
    (stream,) = ffprobe_json(path, "-show_streams")["streams"]
    assert stream["codec_name"] == "mjpeg", path
    return int(stream["width"]), int(stream["height"])


def mean_luma(path: Path) -> float:
    gray = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True,
        capture_output=True,
    ).stdout
    assert gray, path
    return sum(gray) / len(gray)


def parse_cues(vtt: str) -> list[Cue]:
    assert vtt.startswith("WEBVTT\n")
    cues = []
    for match in _CUE.finditer(vtt):
        g = match.groups()
        start = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3]) / 1000
        end = int(g[4]) * 3600 + int(g[5]) * 60 + int(g[6]) + int(g[7]) / 1000
        cues.append(Cue(start, end, g[8], *(int(v) for v in g[9:13])))
    return cues


def check_poster(path: Path, width: int) -> None:
    got_width, got_height = jpeg_size(path)
    assert got_width == width and got_height > 0 and got_height % 2 == 0
    assert mean_luma(path) > NOT_BLACK_LUMA, f"{path} is black"


def check_storyboard(folder: Path, duration_seconds: float, thumb_width: int) -> list[Cue]:
    """folder/storyboard.vtt: cues from 0 to the end without gaps, tiles inside their sheets,
    sheets that are JPEGs and not black."""
    cues = parse_cues((folder / "storyboard.vtt").read_text())
    assert cues, "no cues"
    assert cues[0].start == 0
    for before, after in itertools.pairwise(cues):
        assert before.end == after.start, f"gap or overlap between {before} and {after}"
    assert abs(cues[-1].end - duration_seconds) <= 0.05, (cues[-1], duration_seconds)
    sizes = {}
    for cue in cues:
        if cue.sheet not in sizes:
            sizes[cue.sheet] = jpeg_size(folder / cue.sheet)
            assert mean_luma(folder / cue.sheet) > NOT_BLACK_LUMA / 2, cue.sheet
        sheet_width, sheet_height = sizes[cue.sheet]
        assert cue.width == thumb_width
        assert cue.x + cue.width <= sheet_width and cue.y + cue.height <= sheet_height, cue
    return cues
