"""Codecs of a ladder: names, bitrate shares, levels and the CODECS a plan promises."""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import ValidationError

from kube_transcode.codecs import (
    av1_level,
    check_codecs_fit,
    hevc_level,
    planned_codecs,
    rendition_name,
)
from kube_transcode.ladder import HlsOptions, SourceInfo, VideoOptions, plan_ladder, rung_by_name

pytestmark = pytest.mark.unit

SOURCE = SourceInfo(
    width=1920,
    height=1080,
    duration_seconds=60.0,
    fps=Fraction(30),
    has_audio=True,
    video_codec="h264",
    container="mov,mp4,m4a,3gp,3g2,mj2",
)
FMP4 = HlsOptions(segment_format="fmp4")


def test_every_rung_exists_once_per_codec_at_its_codecs_share_of_the_bitrate() -> None:
    rungs = [rung_by_name("1080p"), rung_by_name("720p")]
    plan = plan_ladder(SOURCE, rungs, hls=FMP4, video=VideoOptions(codecs=("h264", "hevc", "av1")))
    by_name = {r.name: r for r in plan.renditions}
    assert list(by_name) == ["1080p", "720p", "1080p-hevc", "720p-hevc", "1080p-av1", "720p-av1"]
    assert [by_name[n].video_kbps for n in ("1080p", "1080p-hevc", "1080p-av1")] == [
        6000,
        4200,
        3600,
    ]
    assert [by_name[n].maxrate_kbps for n in ("720p", "720p-hevc", "720p-av1")] == [
        4500,
        3150,
        2700,
    ]
    assert {r.codec for r in plan.renditions if r.name.endswith("-av1")} == {"av1"}
    # Same picture size whatever the codec.
    assert (by_name["720p-av1"].width, by_name["720p-av1"].height) == (1280, 720)
    assert by_name["1080p-hevc"].profile == by_name["1080p-av1"].profile == "main"


def test_the_default_is_h264_alone_with_the_rungs_own_names() -> None:
    plan = plan_ladder(SOURCE, [rung_by_name("720p")])
    assert [(r.name, r.codec) for r in plan.renditions] == [("720p", "h264")]
    assert rendition_name("720p", "h264") == "720p"
    assert rendition_name("720p", "av1") == "720p-av1"


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_hevc_and_av1_are_refused_in_mpeg_ts_with_the_field_to_change(codec: str) -> None:
    with pytest.raises(ValueError, match=rf"video codec {codec} needs hls\.segmentFormat fmp4"):
        check_codecs_fit(("h264", codec), "ts")  # type: ignore[arg-type]
    check_codecs_fit(("h264", codec), "fmp4")  # type: ignore[arg-type]
    check_codecs_fit(("h264",), "ts")


def test_codec_lists_are_non_empty_unique_and_known() -> None:
    with pytest.raises(ValidationError, match="unique"):
        VideoOptions(codecs=("h264", "h264"))
    with pytest.raises(ValidationError):
        VideoOptions(codecs=())
    with pytest.raises(ValidationError):
        VideoOptions(codecs=("vp9",))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("width", "height", "fps", "maxrate", "level"),
    [
        (426, 240, Fraction(30), 420, "2.0"),
        (640, 360, Fraction(30), 840, "2.1"),
        (1280, 720, Fraction(30), 3150, "3.1"),
        (1920, 1080, Fraction(30), 6300, "4.0"),
        (1920, 1080, Fraction(60), 6300, "4.1"),
        (3840, 2160, Fraction(30), 18900, "5.0"),
        (1280, 720, Fraction(30), 11000, "4.0"),  # the bitrate, not the size, sets it
    ],
)
def test_hevc_level_is_the_lowest_main_tier_level_that_fits(
    width: int, height: int, fps: Fraction, maxrate: int, level: str
) -> None:
    assert hevc_level(width, height, fps, maxrate, maxrate) == level


@pytest.mark.parametrize(
    ("width", "height", "fps", "maxrate", "level"),
    [
        (426, 240, Fraction(30), 360, "2.0"),
        (640, 360, Fraction(30), 720, "2.1"),
        (1280, 720, Fraction(30), 2700, "3.1"),
        (1920, 1080, Fraction(30), 5400, "4.0"),
        (1920, 1080, Fraction(60), 5400, "4.1"),
        (3840, 2160, Fraction(30), 16200, "5.0"),
    ],
)
def test_av1_level_is_the_lowest_main_tier_level_that_fits(
    width: int, height: int, fps: Fraction, maxrate: int, level: str
) -> None:
    assert av1_level(width, height, fps, maxrate) == level


def test_a_picture_beyond_every_level_is_refused_readably() -> None:
    with pytest.raises(ValueError, match="exceeds every AV1 level"):
        av1_level(16384, 8704, Fraction(240), 1000)


@pytest.mark.parametrize(
    ("codec", "profile", "level", "codecs"),
    [
        ("h264", "high", "4.0", "avc1.640028"),
        ("h264", "main", "3.0", "avc1.4d401e"),
        ("hevc", "main", "3.1", "hvc1.1.6.L93.B0"),
        ("hevc", "main", "2.1", "hvc1.1.6.L63.B0"),
        ("av1", "main", "4.0", "av01.0.08M.08"),
        ("av1", "main", "2.1", "av01.0.01M.08"),
    ],
)
def test_planned_codecs_follow_each_codecs_rfc6381_form(
    codec: str, profile: str, level: str, codecs: str
) -> None:
    assert planned_codecs(codec, profile, level) == codecs  # type: ignore[arg-type]
