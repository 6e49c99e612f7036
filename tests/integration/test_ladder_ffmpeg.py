"""Real FFmpeg: sources made at test time become ladders a player can use, or clear errors."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from kube_transcode.ladder import HlsOptions, Rung
from kube_transcode_worker.errors import PermanentJobError
from kube_transcode_worker.probe import ProbeLimits, probe_source
from kube_transcode_worker.transcode_local import TranscodeResult, transcode_file
from tests.harness.media import (
    check_ladder,
    ffmpeg,
    make_audio_only,
    make_source,
    set_rotation,
)

pytestmark = pytest.mark.integration


def transcode(
    source: Path,
    dest: Path,
    segment_seconds: int = 1,
    *,
    on_progress: Callable[[float], None] | None = None,
    limits: ProbeLimits | None = None,
    overwrite: bool = False,
) -> TranscodeResult:
    return transcode_file(
        source,
        dest,
        hls=HlsOptions(segment_seconds=segment_seconds),
        preset="ultrafast",
        on_progress=on_progress,
        limits=limits,
        overwrite=overwrite,
    )


def names(result: TranscodeResult) -> list[str]:
    return [rendition.name for rendition in result.plan.renditions]


def assert_no_leftovers(parent: Path) -> None:
    hidden = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    assert hidden == [], "partial output left behind"


def test_1080p30_with_audio_becomes_a_five_rung_ladder(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mp4", width=1920, height=1080, seconds=3)
    progress: list[float] = []

    result = transcode(source, tmp_path / "out", on_progress=progress.append)

    assert names(result) == ["1080p", "720p", "480p", "360p", "240p"]
    master = check_ladder(tmp_path / "out", result.plan)
    assert len(master.variants) == 5
    assert progress and progress[-1] == 100.0
    assert progress == sorted(progress)
    assert result.encoded_seconds == pytest.approx(3.0, abs=0.1)
    assert_no_leftovers(tmp_path)


def test_720p_without_audio_has_no_audio_rendition_and_no_1080p(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mp4", width=1280, height=720, seconds=2, audio=False)

    result = transcode(source, tmp_path / "out")

    assert names(result) == ["720p", "480p", "360p", "240p"]
    assert result.plan.audio is None
    check_ladder(tmp_path / "out", result.plan)


def test_portrait_9_16_keeps_its_orientation(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mp4", width=360, height=640, seconds=2)

    result = transcode(source, tmp_path / "out")

    sizes = {r.name: (r.width, r.height) for r in result.plan.renditions}
    assert sizes == {"360p": (360, 640), "240p": (240, 426)}
    check_ladder(tmp_path / "out", result.plan)


def test_odd_sized_1278x719_source_gets_even_sizes_and_its_own_top_rung(tmp_path: Path) -> None:
    source = make_source(
        tmp_path / "src.mp4",
        width=1278,
        height=720,
        seconds=2,
        audio=False,
        video_filter="format=yuv444p,crop=1278:719:0:0",
    )

    result = transcode(source, tmp_path / "out")

    assert (result.plan.source.width, result.plan.source.height) == (1278, 719)
    sizes = {r.name: (r.width, r.height) for r in result.plan.renditions}
    assert sizes == {
        "718p": (1276, 718),
        "480p": (854, 480),
        "360p": (640, 360),
        "240p": (426, 240),
    }
    check_ladder(tmp_path / "out", result.plan)


def test_23_976_fps_segments_stay_aligned_across_rungs(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mp4", width=640, height=360, seconds=5, fps="24000/1001")

    result = transcode(source, tmp_path / "out", segment_seconds=2)

    assert result.plan.source.fps == Fraction(24000, 1001)
    master = check_ladder(tmp_path / "out", result.plan)
    assert {v.attributes["FRAME-RATE"] for v in master.variants} == {"23.976"}


def test_one_second_clip_fits_in_one_segment(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mp4", width=320, height=180, seconds=1)

    result = transcode(source, tmp_path / "out", segment_seconds=6)

    assert names(result) == ["180p"]  # below the smallest rung: encoded at its own size
    check_ladder(tmp_path / "out", result.plan)


def test_rotated_phone_video_is_planned_as_it_is_displayed(tmp_path: Path) -> None:
    coded = make_source(tmp_path / "coded.mp4", width=320, height=180, seconds=1, audio=False)
    source = set_rotation(coded, tmp_path / "rotated.mp4", 90)

    result = transcode(source, tmp_path / "out")

    assert (result.plan.source.width, result.plan.source.height) == (180, 320)
    assert {(r.width, r.height) for r in result.plan.renditions} == {(180, 320)}
    check_ladder(tmp_path / "out", result.plan)


def test_explicit_rungs_are_encoded_exactly(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mp4", width=640, height=360, seconds=1, audio=False)
    rungs = [
        Rung(name="small", height=144, video_kbps=150),
        Rung(name="big", height=1080, video_kbps=5000),
    ]

    result = transcode_file(source, tmp_path / "out", rungs, preset="ultrafast")

    assert names(result) == ["360p", "small"]  # 1080p would upscale: the source height instead
    check_ladder(tmp_path / "out", result.plan)


def test_an_existing_ladder_is_kept_unless_overwrite_is_asked(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mp4", width=320, height=180, seconds=1, audio=False)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale.txt").write_text("from an earlier run")

    with pytest.raises(FileExistsError):
        transcode(source, dest)
    assert (dest / "stale.txt").exists()

    result = transcode(source, dest, overwrite=True)

    assert not (dest / "stale.txt").exists()
    check_ladder(dest, result.plan)
    assert_no_leftovers(tmp_path)


def expect_failure(
    source: Path, dest: Path, reason: str, limits: ProbeLimits | None = None
) -> PermanentJobError:
    with pytest.raises(PermanentJobError) as failure:
        transcode(source, dest, limits=limits)
    assert failure.value.reason == reason, failure.value.message
    assert not dest.exists()
    assert_no_leftovers(dest.parent)
    return failure.value


def test_a_text_file_is_an_unreadable_source(tmp_path: Path) -> None:
    source = tmp_path / "notes.mp4"
    source.write_text("this is not a video, just text pretending to be one\n" * 20)
    expect_failure(source, tmp_path / "out", "UnreadableSource")


def test_an_image_is_an_unsupported_format(tmp_path: Path) -> None:
    image = tmp_path / "still.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(image))
    expect_failure(image, tmp_path / "out", "UnsupportedFormat")


def test_a_playlist_posing_as_a_video_cannot_make_ffmpeg_read_local_files(tmp_path: Path) -> None:
    source = tmp_path / "innocent.mp4"
    source.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n")
    expect_failure(source, tmp_path / "out", "UnsupportedFormat")


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    source = make_audio_only(tmp_path / "song.m4a")
    failure = expect_failure(source, tmp_path / "out", "NoVideoStream")
    assert "no video stream" in failure.message


def test_a_file_cut_before_its_index_is_unreadable(tmp_path: Path) -> None:
    whole = make_source(tmp_path / "whole.mp4", width=320, height=180, seconds=2, faststart=False)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    failure = expect_failure(cut, tmp_path / "out", "UnreadableSource")
    assert "moov atom not found" in failure.message


def test_a_file_cut_in_the_middle_of_its_media_is_a_truncated_source(tmp_path: Path) -> None:
    whole = make_source(tmp_path / "whole.mp4", width=320, height=180, seconds=4)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert probe_source(cut).duration_seconds == pytest.approx(4.0, abs=0.1)  # index intact
    failure = expect_failure(cut, tmp_path / "out", "TruncatedSource")
    assert "of 4.0 s could be decoded" in failure.message


def test_sources_beyond_the_limits_are_refused_before_encoding(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.mp4", width=320, height=180, seconds=2, audio=False)
    expect_failure(
        source, tmp_path / "out", "SourceTooLong", limits=ProbeLimits(max_duration_seconds=1)
    )
    expect_failure(
        source, tmp_path / "out", "SourceTooLarge", limits=ProbeLimits(max_long_side=256)
    )
    expect_failure(source, tmp_path / "out", "FrameRateTooHigh", limits=ProbeLimits(max_fps=25))


def test_a_missing_source_is_reported_as_such(tmp_path: Path) -> None:
    expect_failure(tmp_path / "nowhere.mp4", tmp_path / "out", "SourceNotFound")
