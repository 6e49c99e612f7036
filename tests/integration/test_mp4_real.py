"""kube_transcode_worker.mp4 on what the bundled FFmpeg writes: a 2 s fMP4 HLS clip in H.264,
HEVC, AV1 and AAC, its facts checked against ffprobe and the media playlists."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

from kube_transcode_worker.mp4 import codecs_from_init, first_sample_end, fragments, timescale
from kube_transcode_worker.playlists import parse_media_playlist
from tests.harness.media import check_video_codecs, ffprobe_json

pytestmark = pytest.mark.integration

VIDEO = {"h264": "h264", "hevc": "hevc", "av1": "av1"}  # rendition name -> ffprobe codec_name
RENDITIONS = (*VIDEO, "audio")
EXTINF_TOLERANCE_SECONDS = 0.001
AAC_FRAME_SAMPLES = 1024


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per rendition folder: init_<name>.mp4, seg_%05d.m4s, index.m3u8; 1 s segments."""
    out = tmp_path_factory.mktemp("fmp4")
    split = "[0:v]split=3[a][b][c];" + ";".join(
        f"[{pad}]scale=320:180,format=yuv420p[v{index}]" for index, pad in enumerate("abc")
    )
    streams = "v:0,agroup:aud,name:h264 v:1,agroup:aud,name:hevc v:2,agroup:aud,name:av1"
    # Debian's /usr/bin/ffmpeg lacks libsvtav1: the bundled one encodes.
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        *("-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
        *("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=2"),
        *("-f", "lavfi", "-i", "sine=duration=2", "-filter_complex", split),
        *("-map", "[v0]", "-map", "[v1]", "-map", "[v2]", "-map", "1:a"),
        *("-c:v:0", "libx264", "-preset:v:0", "veryfast", "-b:v:0", "400k"),
        *("-c:v:1", "libx265", "-preset:v:1", "veryfast", "-tag:v:1", "hvc1", "-b:v:1", "300k"),
        # Closed GOPs as encode.py asks: x265's open GOPs put leading frames after the keyframe.
        *("-x265-params:v:1", "log-level=error:open-gop=0:scenecut=0"),
        *("-c:v:2", "libsvtav1", "-preset:v:2", "10", "-b:v:2", "300k"),
        *("-force_key_frames", "expr:gte(t,n_forced*1)", "-g", "30", "-sc_threshold", "0"),
        *("-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1"),
        *("-hls_playlist_type", "vod", "-hls_segment_type", "fmp4"),
        *("-hls_fmp4_init_filename", "init_%v.mp4"),
        *("-hls_segment_options", "movflags=+frag_discont", "-hls_flags", "independent_segments"),
        *("-hls_segment_filename", str(out / "%v" / "seg_%05d.m4s")),
        *("-var_stream_map", f"{streams} a:0,agroup:aud,name:audio"),
        str(out / "%v" / "index.m3u8"),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return out


def init(clip: Path, name: str) -> bytes:
    return (clip / name / f"init_{name}.mp4").read_bytes()


def first(clip: Path, name: str) -> bytes:
    """The first segment: ffprobe reports a profile only with frames to read."""
    return segments(clip, name)[0][1]


def segments(clip: Path, name: str) -> list[tuple[float, bytes]]:
    """(EXTINF, bytes) of each segment of the rendition, in playlist order."""
    playlist = parse_media_playlist((clip / name / "index.m3u8").read_text())
    return [(s.duration, (clip / name / s.uri).read_bytes()) for s in playlist.segments]


def probe_joined(tmp_path: Path, *parts: bytes, args: tuple[str, ...]) -> dict[str, Any]:
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(b"".join(parts))
    return ffprobe_json(joined, *args)


@pytest.mark.parametrize("name", VIDEO)
def test_video_codecs_are_the_profile_and_level_ffprobe_reads(
    clip: Path, name: str, tmp_path: Path
) -> None:
    codecs = codecs_from_init(init(clip, name))
    assert codecs is not None
    report = probe_joined(tmp_path, init(clip, name), first(clip, name), args=("-show_streams",))
    [stream] = report["streams"]
    check_video_codecs(codecs, stream, VIDEO[name])


def test_audio_codecs_are_aac_lc(clip: Path, tmp_path: Path) -> None:
    report = probe_joined(
        tmp_path, init(clip, "audio"), first(clip, "audio"), args=("-show_streams",)
    )
    [stream] = report["streams"]
    assert (stream["codec_name"], stream["profile"]) == ("aac", "LC")
    assert codecs_from_init(init(clip, "audio")) == "mp4a.40.2"


@pytest.mark.parametrize("name", RENDITIONS)
def test_every_segment_starts_with_a_sync_sample(clip: Path, name: str) -> None:
    for _, data in segments(clip, name):
        found = fragments(data)
        assert found and found[0].starts_with_sync, found


@pytest.mark.parametrize("name", RENDITIONS)
def test_fragment_durations_add_up_to_the_extinf(clip: Path, name: str) -> None:
    scale = timescale(init(clip, name))
    assert scale
    listed = segments(clip, name)
    for index, (extinf, data) in enumerate(listed):
        lasted = sum(fragment.duration for fragment in fragments(data)) / scale
        tolerance = EXTINF_TOLERANCE_SECONDS
        if name == "audio" and index == len(listed) - 1:
            # The muxer trims the last AAC frame to the stream's end; EXTINF keeps its 1024.
            tolerance = AAC_FRAME_SAMPLES / scale
        assert abs(lasted - extinf) <= tolerance, (index, lasted, extinf)


@pytest.mark.parametrize("name", VIDEO)
def test_the_first_sample_range_alone_decodes_to_one_keyframe(
    clip: Path, name: str, tmp_path: Path
) -> None:
    for _, data in segments(clip, name):
        end = first_sample_end(data)
        assert end is not None and end <= len(data)
        args = ("-select_streams", "v:0", "-show_entries", "frame=key_frame,pict_type")
        report = probe_joined(tmp_path, init(clip, name), data[:end], args=args)
        frames = report["frames"]
        assert [(f["key_frame"], f["pict_type"]) for f in frames] == [(1, "I")], frames
