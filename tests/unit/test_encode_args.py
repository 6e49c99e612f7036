"""The FFmpeg command for a ladder: one decode, aligned keyframes, one audio rendition."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from kube_transcode.codecs import SegmentFormat, VideoCodec
from kube_transcode.ladder import (
    HlsOptions,
    LadderPlan,
    SourceInfo,
    VideoOptions,
    plan_ladder,
    rung_by_name,
)
from kube_transcode.messages import ChunkTask, StagedSource
from kube_transcode_worker.encode import (
    PART_TIMELINE_LEAD_SECONDS,
    SVT_AV1_PRESETS,
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
    assert value_after(args, "-g") == "120"
    # One set of GOP options without a stream specifier applies to every video encoder;
    # x264's scene-cut keyframes are off on each.
    for index in range(4):
        assert value_after(args, f"-c:v:{index}") == "libx264"
        assert value_after(args, f"-sc_threshold:v:{index}") == "0"


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
    assert value_after(args, "-preset:v:0") == "ultrafast"
    assert value_after(args, "-hls_time") == "6"
    assert value_after(args, "-hls_segment_type") == "mpegts"
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
    assert value_after(args, "-preset:v:0") == "veryfast"
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
    assert value_after(args, "-c:v:0") == "libx264"


def test_the_audio_part_encodes_the_whole_audio_alone() -> None:
    plan = plan_for()
    args = ffmpeg_command(plan, STAGED, OUT, part=_part(plan, "audio"))
    assert "-ss" not in args and "-filter_complex" not in args
    assert not any(arg.startswith("-c:v") for arg in args)
    assert value_after(args, "-map") == "0:a:0"
    assert value_after(args, "-var_stream_map") == "a:0,name:audio"
    assert float(value_after(args, "-output_ts_offset")) == PART_TIMELINE_LEAD_SECONDS
    assert "-start_number" not in args


def test_a_part_reads_only_an_http_url() -> None:
    plan = plan_for()
    with pytest.raises(ValueError, match="http"):
        ffmpeg_command(plan, "file:/etc/passwd", OUT, part=_part(plan))


def _codec_plan(*codecs: VideoCodec, segment_format: SegmentFormat = "fmp4") -> LadderPlan:
    return plan_ladder(
        plan_for().source,
        [rung_by_name("720p"), rung_by_name("360p")],
        hls=HlsOptions(segment_format=segment_format),
        video=VideoOptions(codecs=codecs),
    )


def test_each_codec_gets_its_encoder_and_a_size_is_scaled_once_for_all_codecs() -> None:
    plan = _codec_plan("h264", "hevc", "av1")
    args = ffmpeg_command(plan, Path("/in/src.mp4"), OUT)
    names = [r.name for r in plan.renditions]
    assert names == ["720p", "360p", "720p-hevc", "360p-hevc", "720p-av1", "360p-av1"]
    encoders = [value_after(args, f"-c:v:{i}") for i in range(len(names))]
    assert encoders == ["libx264"] * 2 + ["libx265"] * 2 + ["libsvtav1"] * 2
    graph = value_after(args, "-filter_complex")
    # Two scalers (720p, 360p), each split to its three codecs' encoders (and the next size).
    assert graph.count("scale=") == 2
    assert "scale=w=1280:h=720,setsar=1,format=yuv420p,split=4[v0][v2][v4][d0]" in graph
    assert "scale=w=640:h=360,setsar=1,format=yuv420p,split=3[v1][v3][v5]" in graph
    # HEVC: hvc1, IDR keyframes, closed GOPs; AV1: SVT's preset for the x264 one.
    assert value_after(args, "-tag:v:2") == "hvc1"
    assert value_after(args, "-forced-idr:v:2") == "1"
    assert "open-gop=0" in value_after(args, "-x265-params:v:2")
    assert value_after(args, "-preset:v:4") == str(SVT_AV1_PRESETS["veryfast"])
    # Each codec's own share of the rung's bitrate.
    assert [value_after(args, f"-b:v:{i}") for i in (0, 2, 4)] == ["3000k", "2100k", "1800k"]


def test_fmp4_output_names_an_init_per_rendition_and_keeps_the_timeline_in_the_fragments() -> None:
    args = ffmpeg_command(_codec_plan("av1"), Path("/in/src.mp4"), OUT)
    assert value_after(args, "-hls_segment_type") == "fmp4"
    assert value_after(args, "-hls_fmp4_init_filename") == "init_%v.mp4"
    assert value_after(args, "-hls_segment_filename") == "/work/out/%v/seg_%05d.m4s"
    assert value_after(args, "-hls_segment_options") == "movflags=+frag_discont"


def test_hevc_or_av1_in_mpeg_ts_is_refused_by_the_plan() -> None:
    with pytest.raises(ValueError, match=r"hevc needs hls\.segmentFormat fmp4"):
        _codec_plan("h264", "hevc", segment_format="ts")


def test_a_run_of_one_rendition_names_its_init_itself() -> None:
    """FFmpeg fills in the init name's %v only when a run has several renditions."""
    plan = _codec_plan("h264")
    args = ffmpeg_command(plan, STAGED, OUT, part=_part(plan, "audio"))
    assert value_after(args, "-hls_fmp4_init_filename") == "init_audio.mp4"
