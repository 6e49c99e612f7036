"""The FFmpeg command for a ladder: one decode, aligned keyframes, one audio rendition."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from kube_transcode.ladder import HlsOptions, LadderPlan, SourceInfo, plan_ladder
from kube_transcode.messages import ChunkTask, StagedSource
from kube_transcode_worker.encode import (
    PART_TIMELINE_LEAD_SECONDS,
    ffmpeg_command,
    filter_graph,
    keyframe_interval_frames,
    var_stream_map,
)

pytestmark = pytest.mark.unit

OUT = Path("/work/out")


def plan_for(
    width: int = 1920,
    height: int = 1080,
    *,
    fps: Fraction = Fraction(30),
    has_audio: bool = True,
    segment_seconds: int = 6,
) -> LadderPlan:
    info = SourceInfo(
        width=width,
        height=height,
        duration_seconds=60.0,
        fps=fps,
        has_audio=has_audio,
        video_codec="h264",
        container="mov,mp4,m4a,3gp,3g2,mj2",
    )
    return plan_ladder(info, hls=HlsOptions(segment_seconds=segment_seconds))


def value_after(args: list[str], option: str) -> str:
    assert args.count(option) == 1, f"{option} should appear once in {args}"
    return args[args.index(option) + 1]


def test_command_is_a_plain_argument_list_for_ffmpeg() -> None:
    args = ffmpeg_command(plan_for(), Path("/in/src.mp4"), OUT)
    assert args[0] == "ffmpeg"
    assert all(isinstance(arg, str) for arg in args)
    assert "-nostdin" in args
    assert value_after(args, "-i") == "file:/in/src.mp4"
    formats = [args[i + 1] for i, arg in enumerate(args) if arg == "-f"]
    assert formats == ["mov", "hls"]  # the input demuxer is pinned, the output is HLS
    assert args.index("-f") < args.index("-i")
    assert "mov" in value_after(args, "-format_whitelist").split(",")


def test_a_hostile_file_name_stays_one_file_argument() -> None:
    name = Path("/in/-y; rm -rf ~ concat:evil.mp4")
    args = ffmpeg_command(plan_for(), name, OUT)
    assert value_after(args, "-i") == f"file:{name}"


def test_source_is_decoded_once_and_each_rendition_scaled_from_the_one_above() -> None:
    plan = plan_for()
    graph = filter_graph(plan)
    assert graph.count("[0:v:0]") == 1
    assert graph.split(";") == [
        "[0:v:0]scale=w=1920:h=1080,setsar=1,format=yuv420p,split=2[v0][d0]",
        "[d0]scale=w=1280:h=720,setsar=1,format=yuv420p,split=2[v1][d1]",
        "[d1]scale=w=854:h=480,setsar=1,format=yuv420p,split=2[v2][d2]",
        "[d2]scale=w=640:h=360,setsar=1,format=yuv420p,split=2[v3][d3]",
        "[d3]scale=w=426:h=240,setsar=1,format=yuv420p[v4]",
    ]
    args = ffmpeg_command(plan, Path("/in/src.mp4"), OUT)
    assert value_after(args, "-filter_complex") == graph


def test_a_single_rendition_is_scaled_straight_from_the_decoder() -> None:
    full = plan_for()
    plan = full.model_copy(update={"renditions": full.renditions[1:2]})
    assert filter_graph(plan) == "[0:v:0]scale=w=1280:h=720,setsar=1,format=yuv420p[v0]"


def test_every_rendition_is_mapped_and_audio_once() -> None:
    args = ffmpeg_command(plan_for(), Path("/in/src.mp4"), OUT)
    maps = [args[i + 1] for i, arg in enumerate(args) if arg == "-map"]
    assert maps == ["[v0]", "[v1]", "[v2]", "[v3]", "[v4]", "0:a:0"]
    assert value_after(args, "-c:a") == "aac"
    assert value_after(args, "-b:a") == "128k"
    assert value_after(args, "-ac") == "2"


def test_a_silent_source_maps_no_audio() -> None:
    args = ffmpeg_command(plan_for(has_audio=False), Path("/in/src.mp4"), OUT)
    assert "0:a:0" not in args
    assert "-c:a" not in args
    assert value_after(args, "-var_stream_map") == (
        "v:0,name:1080p v:1,name:720p v:2,name:480p v:3,name:360p v:4,name:240p"
    )


def test_var_stream_map_puts_every_variant_in_the_audio_group_with_readable_names() -> None:
    assert var_stream_map(plan_for(1280, 720)) == (
        "v:0,agroup:aud,name:720p v:1,agroup:aud,name:480p v:2,agroup:aud,name:360p "
        "v:3,agroup:aud,name:240p a:0,agroup:aud,name:audio"
    )


def test_keyframes_are_forced_on_segment_boundaries_on_every_rung() -> None:
    args = ffmpeg_command(plan_for(segment_seconds=4), Path("/in/src.mp4"), OUT)
    assert value_after(args, "-force_key_frames") == "expr:gte(t,n_forced*4)"
    assert value_after(args, "-sc_threshold") == "0"
    assert value_after(args, "-g") == "120"
    # One set of GOP options without a stream specifier applies to every video encoder.
    assert value_after(args, "-c:v") == "libx264"


@pytest.mark.parametrize(
    ("fps", "seconds", "frames"),
    [(Fraction(30), 6, 180), (Fraction(24000, 1001), 6, 144), (Fraction(30000, 1001), 2, 60)],
)
def test_gop_never_ends_inside_a_segment(fps: Fraction, seconds: int, frames: int) -> None:
    # 23.976 fps x 6 s is 143.86 frames: the forced keyframe falls on frame 144.
    assert keyframe_interval_frames(plan_for(fps=fps, segment_seconds=seconds)) == frames


def test_rate_control_profile_and_level_are_set_per_rendition() -> None:
    plan = plan_for()
    args = ffmpeg_command(plan, Path("/in/src.mp4"), OUT)
    for index, rendition in enumerate(plan.renditions):
        assert value_after(args, f"-b:v:{index}") == f"{rendition.video_kbps}k"
        assert value_after(args, f"-maxrate:v:{index}") == f"{rendition.maxrate_kbps}k"
        assert value_after(args, f"-bufsize:v:{index}") == f"{rendition.bufsize_kbps}k"
        assert value_after(args, f"-profile:v:{index}") == rendition.profile
        assert value_after(args, f"-level:v:{index}") == rendition.level
    assert value_after(args, "-b:v:0") == "6000k"
    assert value_after(args, "-level:v:0") == "4.0"


def test_hls_output_is_vod_with_independent_segments_in_per_rendition_folders() -> None:
    args = ffmpeg_command(plan_for(), Path("/in/src.mp4"), OUT, preset="ultrafast")
    assert value_after(args, "-preset") == "ultrafast"
    assert value_after(args, "-hls_time") == "6"
    assert value_after(args, "-hls_playlist_type") == "vod"
    assert value_after(args, "-hls_flags") == "independent_segments"
    assert value_after(args, "-hls_segment_filename") == "/work/out/%v/seg_%05d.ts"
    assert args[-1] == "/work/out/%v/index.m3u8"
    assert "-master_pl_name" not in args  # the master is ours, written last


def test_progress_goes_to_stdout_and_stats_stay_off() -> None:
    args = ffmpeg_command(plan_for(), Path("/in/src.mp4"), OUT)
    assert value_after(args, "-progress") == "pipe:1"
    assert value_after(args, "-stats_period") == "0.5"
    assert "-nostats" in args


def test_default_preset_is_veryfast_and_threads_are_left_to_ffmpeg() -> None:
    args = ffmpeg_command(plan_for(), Path("/in/src.mp4"), OUT)
    assert value_after(args, "-preset") == "veryfast"
    assert "-threads" not in args


def _part(plan: LadderPlan, kind: str = "video") -> ChunkTask:
    return ChunkTask.model_validate(
        {
            "kind": kind,
            "index": 2 if kind == "video" else 4,
            "chunks": 4,
            "start_seconds": 24.0 if kind == "video" else 0.0,
            "duration_seconds": 12.0 if kind == "video" else 60.0,
            "first_segment": 4 if kind == "video" else 0,
            "source": StagedSource(bucket="videos", key="work/source"),
            "probed": plan.source,
            "preset": "veryfast",
        }
    )


STAGED = "http://minio.local:9000/videos/work/source?X-Amz-Signature=abc"


def test_a_video_chunk_reads_its_range_and_numbers_its_segments_globally() -> None:
    plan = plan_for()
    args = ffmpeg_command(plan, STAGED, OUT, part=_part(plan))
    # An accurate input seek: -ss and -t before -i.
    assert args.index("-ss") < args.index("-i") and args.index("-t") < args.index("-i")
    assert (value_after(args, "-ss"), value_after(args, "-t")) == ("24.000000", "12.000000")
    assert value_after(args, "-i") == STAGED
    assert value_after(args, "-protocol_whitelist") == "http,https,tcp,tls"
    assert value_after(args, "-start_number") == "4"
    # The chunk's timeline is the source's plus the parts' common lead.
    assert float(value_after(args, "-output_ts_offset")) == 24.0 + PART_TIMELINE_LEAD_SECONDS
    assert "0:a:0" not in args and "-c:a" not in args  # audio is its own part
    assert "agroup" not in value_after(args, "-var_stream_map")
    assert value_after(args, "-c:v") == "libx264"


def test_the_audio_part_encodes_the_whole_audio_alone() -> None:
    plan = plan_for()
    args = ffmpeg_command(plan, STAGED, OUT, part=_part(plan, "audio"))
    assert "-ss" not in args and "-filter_complex" not in args and "-c:v" not in args
    assert value_after(args, "-map") == "0:a:0"
    assert value_after(args, "-var_stream_map") == "a:0,name:audio"
    assert float(value_after(args, "-output_ts_offset")) == PART_TIMELINE_LEAD_SECONDS
    assert "-start_number" not in args


def test_a_part_reads_only_an_http_url() -> None:
    plan = plan_for()
    with pytest.raises(ValueError, match="http"):
        ffmpeg_command(plan, "file:/etc/passwd", OUT, part=_part(plan))
