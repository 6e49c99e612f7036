"""Ladder planning: what renditions a viewer gets for a given source."""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import ValidationError

from kube_transcode.codecs import h264_level
from kube_transcode.ladder import (
    DEFAULT_LADDER,
    AudioOptions,
    HlsOptions,
    LadderPlan,
    Rung,
    SourceInfo,
    plan_ladder,
    rung_by_name,
)

pytestmark = pytest.mark.unit


def source(
    width: int, height: int, *, fps: Fraction = Fraction(30), has_audio: bool = True
) -> SourceInfo:
    return SourceInfo(
        width=width,
        height=height,
        duration_seconds=10.0,
        fps=fps,
        has_audio=has_audio,
        video_codec="h264",
        audio_codec="aac" if has_audio else None,
        container="mov,mp4,m4a,3gp,3g2,mj2",
    )


def sizes(plan: LadderPlan) -> dict[str, tuple[int, int]]:
    return {r.name: (r.width, r.height) for r in plan.renditions}


def test_1080p_landscape_gets_every_rung_up_to_1080p_tallest_first() -> None:
    plan = plan_ladder(source(1920, 1080))
    assert sizes(plan) == {
        "1080p": (1920, 1080),
        "720p": (1280, 720),
        "480p": (854, 480),
        "360p": (640, 360),
        "240p": (426, 240),
    }
    assert [r.name for r in plan.renditions] == ["1080p", "720p", "480p", "360p", "240p"]


def test_720p_source_is_never_upscaled_to_1080p() -> None:
    plan = plan_ladder(source(1280, 720))
    assert list(sizes(plan)) == ["720p", "480p", "360p", "240p"]
    assert sizes(plan)["720p"] == (1280, 720)


def test_portrait_rung_height_is_the_short_side() -> None:
    plan = plan_ladder(source(1080, 1920))
    assert sizes(plan)["720p"] == (720, 1280)
    assert sizes(plan)["1080p"] == (1080, 1920)
    assert sizes(plan)["240p"] == (240, 426)


def test_odd_source_gets_even_dimensions_and_its_own_top_rung() -> None:
    plan = plan_ladder(source(1278, 719))
    assert sizes(plan) == {
        "718p": (1276, 718),
        "480p": (854, 480),
        "360p": (640, 360),
        "240p": (426, 240),
    }
    assert all(w % 2 == 0 and h % 2 == 0 for w, h in sizes(plan).values())


def test_source_between_rungs_tops_out_at_its_own_height_with_interpolated_bitrate() -> None:
    plan = plan_ladder(source(1920, 800))
    top, below = plan.renditions[0], plan.renditions[1]
    assert (top.name, top.width, top.height) == ("800p", 1920, 800)
    assert (below.name, below.width, below.height) == ("720p", 1728, 720)
    # 800 lies 80/360 of the way from the 720p rung (3000 kbps) to the 1080p rung (6000 kbps).
    assert top.video_kbps == 3667
    assert below.video_kbps < top.video_kbps < rung_by_name("1080p").video_kbps


def test_source_just_above_a_rung_gets_no_near_duplicate_rung() -> None:
    plan = plan_ladder(source(1284, 724))
    assert plan.renditions[0].name == "720p"
    assert plan.renditions[0].height == 720


def test_source_below_every_rung_gets_one_rung_at_its_own_size() -> None:
    plan = plan_ladder(source(320, 180))
    assert sizes(plan) == {"180p": (320, 180)}
    assert plan.renditions[0].video_kbps == 300  # 180/240 of the 240p rung's 400 kbps


def test_explicit_rungs_replace_the_default_ladder_and_still_never_upscale() -> None:
    requested = [
        Rung(name="small", height=288, video_kbps=500),
        Rung(name="hd", height=720, video_kbps=2500, maxrate_kbps=3000, bufsize_kbps=5000),
        Rung(name="uhd", height=2160, video_kbps=15000),
    ]
    plan = plan_ladder(source(1920, 1080), requested)
    assert sizes(plan) == {"1080p": (1920, 1080), "hd": (1280, 720), "small": (512, 288)}
    hd = plan.renditions[1]
    assert (hd.video_kbps, hd.maxrate_kbps, hd.bufsize_kbps) == (2500, 3000, 5000)
    small = plan.renditions[2]
    assert (small.maxrate_kbps, small.bufsize_kbps) == (750, 1000)  # 1.5x and 2x by default


@pytest.mark.parametrize(
    ("width", "height"),
    [(1920, 1080), (1080, 1920), (1278, 719), (3840, 1600), (640, 480), (720, 1280), (333, 201)],
)
def test_no_rendition_is_larger_than_the_source_and_all_sizes_are_even(
    width: int, height: int
) -> None:
    plan = plan_ladder(source(width, height))
    assert plan.renditions
    for rendition in plan.renditions:
        assert rendition.width <= width and rendition.height <= height
        assert rendition.width % 2 == 0 and rendition.height % 2 == 0
        assert abs(rendition.width / rendition.height - width / height) < 0.02


def test_audio_is_planned_once_only_when_the_source_has_audio() -> None:
    assert plan_ladder(source(1280, 720, has_audio=True)).audio == AudioOptions()
    assert plan_ladder(source(1280, 720, has_audio=False)).audio is None
    custom = AudioOptions(bitrate_kbps=96, channels=1)
    assert plan_ladder(source(1280, 720), audio=custom).audio == custom


def test_renditions_keep_the_source_frame_rate_and_hls_options() -> None:
    plan = plan_ladder(
        source(1280, 720, fps=Fraction(24000, 1001)), hls=HlsOptions(segment_seconds=4)
    )
    assert {r.fps for r in plan.renditions} == {Fraction(24000, 1001)}
    assert plan.hls.segment_seconds == 4
    assert plan_ladder(source(1280, 720)).hls.segment_seconds == 6


@pytest.mark.parametrize(
    ("width", "height", "fps", "level"),
    [
        (426, 240, Fraction(30), "2.1"),
        (640, 360, Fraction(30), "3.0"),
        (1280, 720, Fraction(30), "3.1"),
        (1280, 720, Fraction(60), "3.2"),
        (1920, 1080, Fraction(24000, 1001), "4.0"),
        (1920, 1080, Fraction(60), "4.2"),
        (1080, 1920, Fraction(30), "4.0"),
        (3840, 2160, Fraction(30), "5.1"),
        (3840, 2160, Fraction(60), "5.2"),
    ],
)
def test_h264_level_is_the_lowest_that_fits(
    width: int, height: int, fps: Fraction, level: str
) -> None:
    assert h264_level(width, height, fps, maxrate_kbps=1000, bufsize_kbps=1000) == level


def test_h264_level_rises_for_a_high_bitrate() -> None:
    assert h264_level(1920, 1080, Fraction(30), maxrate_kbps=30000, bufsize_kbps=30000) == "4.1"


def test_plan_levels_come_from_each_rendition_size() -> None:
    levels = {r.name: r.level for r in plan_ladder(source(1920, 1080)).renditions}
    # 854x480 at 30 fps is 48,600 macroblocks/s: more than level 3.0 allows (40,500).
    assert levels == {"1080p": "4.0", "720p": "3.1", "480p": "3.1", "360p": "3.0", "240p": "2.1"}


def test_named_rungs_rise_in_size_and_bitrate() -> None:
    assert [r.name for r in DEFAULT_LADDER] == [
        "240p", "360p", "480p", "720p", "1080p", "1440p", "2160p",
    ]  # fmt: skip
    assert [r.height for r in DEFAULT_LADDER] == [240, 360, 480, 720, 1080, 1440, 2160]
    bitrates = [r.video_kbps for r in DEFAULT_LADDER]
    assert bitrates == sorted(bitrates) and len(set(bitrates)) == len(bitrates)
    assert all(r.resolved_maxrate_kbps > r.video_kbps for r in DEFAULT_LADDER)


def test_unknown_rung_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown rung '999p'.*240p, 360p"):
        rung_by_name("999p")


def test_plan_survives_a_json_round_trip() -> None:
    plan = plan_ladder(source(1920, 1080, fps=Fraction(30000, 1001)))
    assert LadderPlan.model_validate_json(plan.model_dump_json()) == plan


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"height": 719}, "height must be even"),
        ({"height": 8}, "greater than or equal to 16"),
        ({"height": 4322}, "less than or equal to 4320"),
        ({"video_kbps": 0}, "greater than 0"),
        ({"maxrate_kbps": 500}, "maxrate_kbps .500. must be >= video_kbps"),
        ({"name": "audio"}, "reserved for the audio rendition"),
        ({"name": "../etc"}, "String should match pattern"),
        ({"name": "a b"}, "String should match pattern"),
        ({"profile": "high10"}, "Input should be 'baseline', 'main' or 'high'"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_rungs_are_rejected_with_a_clear_message(
    fields: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"name": "r", "height": 720, "video_kbps": 1000} | fields
    with pytest.raises(ValidationError, match=message):
        Rung.model_validate(values)


def test_duplicate_and_empty_explicit_ladders_are_rejected() -> None:
    twice = [Rung(name="a", height=240, video_kbps=300), Rung(name="a", height=360, video_kbps=600)]
    with pytest.raises(ValueError, match="repeated: a"):
        plan_ladder(source(1280, 720), twice)
    with pytest.raises(ValueError, match="at least one rung"):
        plan_ladder(source(1280, 720), [])


@pytest.mark.parametrize("seconds", [0, 31])
def test_segment_length_outside_1_to_30_seconds_is_rejected(seconds: int) -> None:
    with pytest.raises(ValidationError, match="segment_seconds"):
        HlsOptions(segment_seconds=seconds)


def test_source_info_rejects_a_zero_frame_rate_and_reads_fraction_strings() -> None:
    with pytest.raises(ValidationError, match="fps must be positive"):
        source(1280, 720, fps=Fraction(0))
    info = SourceInfo.model_validate(source(1280, 720).model_dump() | {"fps": "24000/1001"})
    assert info.fps == Fraction(24000, 1001)
