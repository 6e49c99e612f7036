"""The codecs benchmark's pure pieces: reading FFmpeg's SSIM, the libaom command, the files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from benchmarks.codecs import (
    codec_plan,
    count_ssim_frames,
    encoder_versions_from,
    parse_ssim_all,
    rendition_bytes,
    rendition_files,
    ssim_filter,
    with_libaom,
)
from kube_transcode.ladder import SourceInfo
from kube_transcode_worker.encode import ffmpeg_command

pytestmark = pytest.mark.unit

SOURCE = SourceInfo(
    width=1920,
    height=1080,
    duration_seconds=10.0,
    fps=Fraction(30),
    has_audio=True,
    video_codec="h264",
    audio_codec="aac",
    container="mov,mp4,m4a,3gp,3g2,mj2",
)

SSIM_STDERR = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'rendition.mp4':
[Parsed_ssim_6 @ 0x7fcb80003280] SSIM Y:0.991192 (20.551380) U:0.991729 (20.824637) \
V:0.996155 (24.151583) All:0.992109 (21.028692)
[out#0/null @ 0x55f6a1d24940] video:12KiB audio:0KiB subtitle:0KiB other streams:0KiB
"""


def test_the_all_value_of_the_ssim_summary_is_read() -> None:
    assert parse_ssim_all(SSIM_STDERR) == pytest.approx(0.992109)


def test_output_without_a_summary_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="no SSIM"):
        parse_ssim_all("Conversion failed!\n")


def test_frames_compared_are_the_stats_file_lines() -> None:
    stats = "n:1 Y:0.99 U:0.99 V:0.99 All:0.99 (20.0)\nn:2 Y:0.98 U:0.99 V:0.99 All:0.98 (19.0)\n\n"
    assert count_ssim_frames(stats) == 2


def test_the_source_is_scaled_to_the_rungs_size_and_both_start_at_zero() -> None:
    graph = ssim_filter(1280, 720, "ssim.log")
    assert "[1:v]setpts=PTS-STARTPTS,scale=w=1280:h=720" in graph
    assert "[0:v]setpts=PTS-STARTPTS" in graph
    assert graph.endswith("[dist][ref]ssim=stats_file=ssim.log:shortest=1")


def test_the_libaom_command_is_the_workers_av1_one_with_another_encoder() -> None:
    plan = codec_plan(SOURCE, "av1", ladder=False)
    svt = ffmpeg_command(plan, Path("/in.mp4"), Path("/out"))
    aom = with_libaom(svt)
    assert "libsvtav1" not in aom
    at = aom.index("libaom-av1")
    assert aom[at - 1] == "-c:v:0"
    assert aom[at + 1 : at + 5] == ["-cpu-used", "8", "-row-mt", "1"]
    assert not any(arg.startswith("-preset") for arg in aom)
    # Everything but SVT's preset stays: rates, forced keyframes, the HLS muxer's options.
    preset = svt.index("-preset:v:0")
    expected = svt[:preset] + svt[preset + 2 :]
    expected[expected.index("libsvtav1")] = "libaom-av1"
    assert aom[: at + 1] + aom[at + 5 :] == expected
    for option in ("-b:v:0", "-bufsize:v:0", "-force_key_frames", "-hls_segment_type"):
        assert aom[aom.index(option) + 1] == svt[svt.index(option) + 1]


def test_only_a_libsvtav1_command_becomes_a_libaom_one() -> None:
    command = ffmpeg_command(codec_plan(SOURCE, "h264", ladder=False), Path("/in"), Path("/o"))
    with pytest.raises(ValueError, match="libsvtav1"):
        with_libaom(command)


def test_the_choice_plan_is_the_top_rung_alone_in_fmp4_without_audio() -> None:
    ladder = codec_plan(SOURCE, "hevc", ladder=True)
    top = codec_plan(SOURCE, "hevc", ladder=False)
    assert [r.name for r in ladder.renditions] == [
        "1080p-hevc", "720p-hevc", "480p-hevc", "360p-hevc", "240p-hevc",
    ]  # fmt: skip
    assert ladder.audio is not None and ladder.fmp4
    assert top.renditions == ladder.renditions[:1]
    assert top.audio is None and top.fmp4


def test_an_fmp4_renditions_files_are_its_init_then_its_segments(tmp_path: Path) -> None:
    (tmp_path / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        '#EXT-X-MAP:URI="init_1080p.mp4"\n'
        "#EXTINF:6.0,\nseg_00000.m4s\n#EXTINF:4.0,\nseg_00001.m4s\n#EXT-X-ENDLIST\n"
    )
    sizes = {"init_1080p.mp4": 700, "seg_00000.m4s": 5000, "seg_00001.m4s": 3000}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "stray.m4s").write_bytes(b"x" * 99)  # not in the playlist: not counted
    assert [p.name for p in rendition_files(tmp_path)] == list(sizes)
    assert rendition_bytes(tmp_path) == 8700


def test_a_ts_rendition_has_segments_only(tmp_path: Path) -> None:
    (tmp_path / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\nseg_00000.ts\n#EXT-X-ENDLIST\n"
    )
    (tmp_path / "seg_00000.ts").write_bytes(b"x" * 188)
    assert [p.name for p in rendition_files(tmp_path)] == ["seg_00000.ts"]


def test_encoder_versions_are_read_from_what_the_encoders_print() -> None:
    printed = (
        "\x00\x05x264 - core 164 r3095 baee400 - H.264/MPEG-4 AVC codec\n"
        "x265 [info]: HEVC encoder version 3.5+1-f0c1022b6\n"
        "Svt[info]: SVT [version]:\tSVT-AV1 Encoder Lib v1.4.1\n"
        "[libaom-av1 @ 0x564d1cde63c0] v3.6.0\n"
    )
    assert encoder_versions_from(printed) == (
        "x264 core 164 r3095, x265 3.5+1-f0c1022b6, SVT-AV1 v1.4.1, libaom v3.6.0"
    )
    assert encoder_versions_from("[libx264 @ 0x1] 264 - core 165 - H.264") == "x264 core 165"
