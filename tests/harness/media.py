"""Test media made with FFmpeg at test time, and a ladder check that looks like a player's.

Sources are tiny lavfi test patterns (testsrc2 picture, sine tone) so a ladder encodes in
seconds on two cores.
"""

from __future__ import annotations

import json
import math
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

from kube_transcode.ladder import LadderPlan
from kube_transcode_worker.authoring import Violation, check_folder
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME
from kube_transcode_worker.playlists import (
    MasterPlaylist,
    MediaPlaylist,
    parse_master_playlist,
    parse_media_playlist,
)

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"
# Audio segments may run over by about two AAC frames (1024 samples at 48 kHz each).
AUDIO_SEGMENT_TOLERANCE_SECONDS = 0.05
_PROFILE_IDC = {"Constrained Baseline": 0x42, "Baseline": 0x42, "Main": 0x4D, "High": 0x64}


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True
    )


def ffprobe_json(path: Path, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [FFPROBE, "-v", "error", "-print_format", "json", *args, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def make_source(
    path: Path,
    *,
    width: int,
    height: int,
    seconds: float,
    fps: str = "30",
    audio: bool = True,
    faststart: bool = True,
    video_filter: str = "",
    preset: str = "ultrafast",
    qp: int | None = 30,
) -> Path:
    """An H.264 (+ AAC) test pattern; video_filter can make odd sizes (format=yuv444p,crop).

    The defaults make it quickly and small; preset and qp=None (x264's own rate control) make
    a source that decodes like a worker's output.
    """
    args = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if video_filter:
        args += ["-vf", video_filter]
    args += ["-c:v", "libx264", "-preset", preset]
    if qp is not None:
        args += ["-qp", str(qp)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    if faststart and path.suffix == ".mp4":
        args += ["-movflags", "+faststart"]
    ffmpeg(*args, str(path))
    return path


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:a", "aac", str(path))
    return path


def set_rotation(source: Path, rotated: Path, degrees: int) -> Path:
    """A copy of source whose display matrix says: turn the picture by degrees."""
    ffmpeg("-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(rotated))
    return rotated


def avc1_from_probe(stream: dict[str, Any]) -> tuple[int, int]:
    """(profile_idc, level_idc) of an H.264 stream as ffprobe reports them."""
    return _PROFILE_IDC[stream["profile"]], int(stream["level"])


def check_video_codecs(declared: str, stream: dict[str, Any], codec: str) -> None:
    """The master's CODECS for a rendition against what ffprobe reads from its bitstream."""
    assert stream["codec_name"] == codec, (declared, stream["codec_name"])
    if codec == "h264":
        profile_idc, level_idc = avc1_from_probe(stream)
        assert declared.startswith(f"avc1.{profile_idc:02x}"), declared
        assert declared.endswith(f"{level_idc:02x}"), declared
    elif codec == "hevc":
        # hvc1 (parameter sets in the init segment, as Apple requires), Main profile (1),
        # Main tier, general_level_idc as ffprobe reports it.
        assert stream["codec_tag_string"] == "hvc1" and stream["profile"] == "Main", stream
        assert declared.startswith("hvc1.1.") and f".L{stream['level']}." in declared, declared
    else:
        # av01.<profile>.<seq_level_idx><tier>.<bit depth>: Main profile, 8-bit 4:2:0.
        assert stream["profile"] == "Main", stream
        assert declared == f"av01.0.{int(stream['level']):02d}M.08", declared


def frame_times(playlist: Path, stream: str = "v:0") -> list[float]:
    """Presentation times of a rendition's frames (or audio frames), in order."""
    report = ffprobe_json(playlist, "-select_streams", stream, "-show_entries", "frame=pts_time")
    return [float(frame["pts_time"]) for frame in report["frames"]]


def assert_same_rendition(ours: Path, theirs: Path, stream: str = "v:0") -> None:
    """Two renditions' playlists give a player the same segments and the same frames at the
    same moments, up to one constant shift (a chunked timeline starts a little later)."""
    a = parse_media_playlist(ours.read_text())
    b = parse_media_playlist(theirs.read_text())
    assert [s.uri for s in a.segments] == [s.uri for s in b.segments], ours
    for mine, single in zip(a.segments, b.segments, strict=True):
        assert abs(mine.duration - single.duration) < 0.002, (ours, mine, single)
    x, y = frame_times(ours, stream), frame_times(theirs, stream)
    assert len(x) == len(y) > 0, ours
    shift = x[0] - y[0]
    drift = max(abs(p - q - shift) for p, q in zip(x, y, strict=True))
    assert drift < 0.002, (ours, drift)


def keyframe_times(playlist: Path) -> list[float]:
    """Keyframe times of a rendition, counted from its first frame."""
    report = ffprobe_json(
        playlist,
        "-skip_frame",
        "nokey",
        "-select_streams",
        "v:0",
        "-show_entries",
        "frame=pts_time",
    )
    times = [float(frame["pts_time"]) for frame in report["frames"]]
    return [time - times[0] for time in times]


def check_media_playlist(path: Path, segment_seconds: int, tolerance: float) -> MediaPlaylist:
    """A finished VOD playlist whose segments exist and last the segment length (+ tolerance).

    Only the last segment may be shorter.
    """
    playlist = parse_media_playlist(path.read_text())
    assert playlist.playlist_type == "VOD" and playlist.ended, path
    assert playlist.segments, path
    assert playlist.target_duration <= math.ceil(segment_seconds + tolerance)
    for segment in playlist.segments:
        assert (path.parent / segment.uri).stat().st_size > 0
        assert 0 < segment.duration <= segment_seconds + tolerance, (path, segment)
        assert round(segment.duration) <= playlist.target_duration, (path, segment)
    for segment in playlist.segments[:-1]:
        assert segment.duration >= segment_seconds - tolerance, (path, segment)
    return playlist


def assert_authoring_rules(violations: list[Violation]) -> None:
    assert violations == [], "HLS authoring rules broken:\n" + "\n".join(map(str, violations))


def check_ladder(dest: Path, plan: LadderPlan) -> MasterPlaylist:
    """Play the ladder at dest the way a player would, compare it with the plan, and hold it to
    Apple's HLS authoring rules."""
    assert_authoring_rules(check_folder(dest))
    source = plan.source
    segment_seconds = plan.hls.segment_seconds
    master = parse_master_playlist((dest / MASTER_PLAYLIST_NAME).read_text())
    planned = {rendition.name: rendition for rendition in plan.renditions}
    assert sorted(v.uri for v in master.variants) == sorted(f"{n}/index.m3u8" for n in planned)
    boundaries: dict[str, list[float]] = {}
    for variant in master.variants:
        rendition = planned[variant.uri.split("/")[0]]
        attributes = variant.attributes
        width, height = (int(side) for side in attributes["RESOLUTION"].split("x"))
        assert (width, height) == (rendition.width, rendition.height)
        assert width <= source.width and height <= source.height, "upscaled"
        assert float(attributes["FRAME-RATE"]) == round(float(source.fps), 3)
        assert int(attributes["BANDWIDTH"]) >= int(attributes["AVERAGE-BANDWIDTH"]) > 0

        # A forced keyframe lands on the first frame at or after the boundary.
        frame = float(1 / Fraction(source.fps))
        playlist = check_media_playlist(dest / variant.uri, segment_seconds, frame + 0.002)
        boundaries[rendition.name] = [round(s.duration, 3) for s in playlist.segments]
        assert abs(playlist.duration - source.duration_seconds) < 0.2, variant.uri

        video = ffprobe_json(dest / variant.uri, "-show_streams", "-select_streams", "v")
        (stream,) = video["streams"]
        assert (stream["width"], stream["height"]) == (rendition.width, rendition.height)
        assert stream["pix_fmt"] == "yuv420p"
        codecs = attributes["CODECS"].split(",")
        check_video_codecs(codecs[0], stream, rendition.codec)
        if plan.fmp4:
            init = parse_media_playlist((dest / variant.uri).read_text()).init_uri
            assert init is not None and (dest / variant.uri).with_name(init).is_file()

        # Every segment must start on a keyframe, or switching renditions shows garbage.
        starts = [sum(boundaries[rendition.name][:i]) for i in range(len(playlist.segments))]
        keyframes = keyframe_times(dest / variant.uri)
        for start in starts:
            assert any(abs(start - key) < frame for key in keyframes), (variant.uri, start)

        if plan.audio:
            assert attributes["AUDIO"] == "aud"
            assert codecs[1:] == ["mp4a.40.2"]
        else:
            assert "AUDIO" not in attributes and len(codecs) == 1
    # Same segment boundaries on every rung: a player can switch at any segment.
    assert len({tuple(durations) for durations in boundaries.values()}) == 1, boundaries
    check_audio(dest, master, plan)
    return master


def check_audio(dest: Path, master: MasterPlaylist, plan: LadderPlan) -> None:
    if plan.audio is None:
        assert master.media == ()
        assert not (dest / "audio").exists()
        return
    (media,) = master.media
    assert (media["TYPE"], media["GROUP-ID"], media["DEFAULT"]) == ("AUDIO", "aud", "YES")
    playlist = check_media_playlist(
        dest / media["URI"], plan.hls.segment_seconds, AUDIO_SEGMENT_TOLERANCE_SECONDS
    )
    assert abs(playlist.duration - plan.source.duration_seconds) < 0.2
    report = ffprobe_json(dest / media["URI"], "-show_streams")
    (stream,) = report["streams"]
    assert stream["codec_type"] == "audio" and stream["codec_name"] == "aac"
    assert stream["profile"] == "LC", "the master's mp4a.40.2 promises AAC-LC"
    assert (stream["channels"], int(stream["sample_rate"])) == (2, 48000)
