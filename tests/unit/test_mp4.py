"""Facts read from fMP4 boxes built here by hand: CODECS per sample entry, timescale, size, and
the fragments of a media segment (decode time, duration, sync flag, first sample's end)."""

from __future__ import annotations

import struct

import pytest

from kube_transcode_worker.mp4 import (
    Fragment,
    codecs_from_init,
    first_sample_end,
    fragments,
    resolution,
    timescale,
)
from tests.harness.mp4_boxes import (
    NON_SYNC,
    SYNC,
    audio_entry,
    bare_trun,
    box,
    esds,
    full_box,
    init_segment,
    media_segment,
    tfdt,
    tfhd,
    trun,
    visual_entry,
)

pytestmark = pytest.mark.unit


def avc_init(profile: int, compatibility: int, level: int) -> bytes:
    avcc = box(b"avcC", bytes([1, profile, compatibility, level, 0xFF, 0xE0]))
    return init_segment(visual_entry(b"avc1", avcc))


def hvcc(
    *,
    space: int = 0,
    tier: int = 0,
    profile: int = 1,
    compatibility: int = 0x60000000,
    constraints: bytes = bytes([0x90, 0, 0, 0, 0, 0]),
    level: int = 63,
) -> bytes:
    record = bytes([1, space << 6 | tier << 5 | profile]) + struct.pack(">I", compatibility)
    return box(b"hvcC", record + constraints + bytes([level]) + b"\xf0\x00\xfc\xfd\xf8\xf8")


def av1c(profile: int, level: int, *, tier: int = 0, high: int = 0, twelve: int = 0) -> bytes:
    second = tier << 7 | high << 6 | twelve << 5 | 0b0001100  # 4:2:0
    return box(b"av1C", bytes([0x81, profile << 5 | level, second, 0]))


def test_avc1_codecs_are_profile_compatibility_and_level_in_lowercase_hex() -> None:
    assert codecs_from_init(avc_init(0x64, 0x00, 0x1E)) == "avc1.64001e"
    assert codecs_from_init(avc_init(0x42, 0xC0, 0x15)) == "avc1.42c015"


def test_hevc_main_codecs_reverse_the_compatibility_flags_and_drop_zero_constraint_bytes() -> None:
    # Main profile: compatibility flags 1 and 2 are the top bits; reversed, they read 0x6.
    init = init_segment(visual_entry(b"hvc1", hvcc()))
    assert codecs_from_init(init) == "hvc1.1.6.L63.90"


def test_hevc_codecs_keep_inner_zero_constraint_bytes_and_show_space_and_tier() -> None:
    record = hvcc(
        space=1,
        tier=1,
        profile=4,
        compatibility=0x82000000,  # flags 0 and 6: reversed 0x41
        constraints=bytes([0xB0, 0x00, 0x23, 0, 0, 0]),
        level=120,
    )
    assert (
        codecs_from_init(init_segment(visual_entry(b"hev1", record))) == "hev1.A4.41.H120.B0.00.23"
    )


def test_hevc_main10_codecs() -> None:
    record = hvcc(profile=2, compatibility=0x20000000, constraints=bytes([0xB0, 0, 0, 0, 0, 0]))
    assert codecs_from_init(init_segment(visual_entry(b"hvc1", record))) == "hvc1.2.4.L63.B0"


@pytest.mark.parametrize(
    ("config", "codecs"),
    [
        (av1c(0, 1), "av01.0.01M.08"),
        (av1c(0, 8, tier=1, high=1), "av01.0.08H.10"),
        (av1c(2, 13, high=1, twelve=1), "av01.2.13M.12"),
    ],
)
def test_av01_codecs_give_profile_level_tier_and_bit_depth(config: bytes, codecs: str) -> None:
    assert codecs_from_init(init_segment(visual_entry(b"av01", config))) == codecs


def test_mp4a_codecs_name_the_audio_object_type_of_the_decoder_specific_info() -> None:
    lc = bytes([0x12, 0x10])  # object type 2, 44.1 kHz, 2 channels
    he = bytes([0x2B, 0x92, 0x08, 0x00])  # object type 5 (SBR)
    escaped = bytes([0xF8, 0x40, 0x00])  # 31: escape, then 6 bits 2 -> 34
    assert codecs_from_init(init_segment(audio_entry(esds(lc)), 44100)) == "mp4a.40.2"
    assert codecs_from_init(init_segment(audio_entry(esds(he)), 44100)) == "mp4a.40.5"
    assert codecs_from_init(init_segment(audio_entry(esds(escaped)), 44100)) == "mp4a.40.34"
    assert codecs_from_init(init_segment(audio_entry(esds(b"", 0x6B)), 44100)) == "mp4a.6b"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x00\x08moov", avc_init(0x64, 0, 0x1E)[:-5], box(b"moov", box(b"trak"))],
)
def test_unreadable_inits_have_no_codecs(data: bytes) -> None:
    assert codecs_from_init(data) is None


def test_timescale_is_the_first_tracks_mdhd_of_either_version() -> None:
    entry = visual_entry(b"avc1", box(b"avcC", bytes([1, 0x64, 0, 0x1E])))
    assert timescale(init_segment(entry, 15360)) == 15360
    assert timescale(init_segment(entry, 90000, mdhd_version=1)) == 90000
    assert timescale(b"not an init") is None


def test_resolution_is_the_visual_sample_entrys_and_audio_has_none() -> None:
    entry = visual_entry(b"avc1", box(b"avcC", bytes([1, 0x64, 0, 0x1E])), 1280, 720)
    assert resolution(init_segment(entry)) == (1280, 720)
    assert resolution(init_segment(audio_entry(esds(b"\x12\x10")), 44100)) is None


def test_a_fragment_gives_decode_time_duration_samples_and_a_sync_start() -> None:
    segment = media_segment(61440, [700, 50, 40, 30], duration=512)
    assert fragments(segment) == [
        Fragment(
            decode_time=61440,
            duration=4 * 512,
            samples=4,
            starts_with_sync=True,
            first_sample_end=segment.index(b"mdat") + 4 + 700,
        )
    ]


def test_the_first_sample_end_counts_from_the_segment_start_through_the_keyframe() -> None:
    segment = media_segment(0, [1234, 99])
    mdat_body = segment.index(b"mdat") + 4
    assert first_sample_end(segment) == mdat_body + 1234
    assert first_sample_end(b"") is None


def test_per_sample_durations_and_flags_override_the_defaults() -> None:
    run = trun([100, 10], durations=[1000, 24], flags=[NON_SYNC, 0])
    traf = box(b"traf", tfhd(duration=512, size=5, flags=SYNC), tfdt(7, version=0), run)
    segment = box(b"moof", traf) + box(b"mdat", bytes(110))
    [fragment] = fragments(segment)
    assert (fragment.decode_time, fragment.duration, fragment.samples) == (7, 1024, 2)
    assert fragment.starts_with_sync is False  # the first sample's own flags say non-sync


def test_without_trun_flags_the_tfhd_default_flags_decide_sync() -> None:
    def segment(default: int) -> bytes:
        traf = box(b"traf", tfhd(duration=512, size=20, flags=default), tfdt(0), bare_trun(2))
        return box(b"moof", traf) + box(b"mdat", bytes(40))

    assert fragments(segment(SYNC))[0].starts_with_sync is True
    assert fragments(segment(NON_SYNC))[0].starts_with_sync is False


def test_tfhd_default_sizes_and_durations_serve_when_the_trun_has_none() -> None:
    run = full_box(b"trun", 0, 0x1 | 0x4, struct.pack(">IiI", 3, 0, SYNC))
    traf = box(b"traf", tfhd(duration=1024, size=20), tfdt(2048), run)
    moof = box(b"moof", traf)
    # data_offset 0 from the moof start: the first sample is the moof's first 20 bytes.
    [fragment] = fragments(moof + box(b"mdat", bytes(60)))
    assert (fragment.duration, fragment.samples, fragment.first_sample_end) == (3072, 3, 20)


def test_a_base_data_offset_in_tfhd_counts_from_the_segment_start() -> None:
    traf = box(
        b"traf",
        tfhd(duration=512, base=500, base_is_moof=False),
        tfdt(0),
        trun([64], first_flags=SYNC, data_offset=16),
    )
    assert first_sample_end(box(b"moof", traf) + box(b"mdat", bytes(600))) == 500 + 16 + 64


def test_several_fragments_in_one_segment_are_read_in_order() -> None:
    first, second = media_segment(0, [300, 20]), media_segment(1024, [200, 20])
    moofs = first[first.index(b"moof") - 4 :], second[second.index(b"moof") - 4 :]
    segment = moofs[0] + moofs[1]
    found = fragments(segment)
    assert [(f.decode_time, f.duration) for f in found] == [(0, 1024), (1024, 1024)]
    assert found[0].first_sample_end == moofs[0].index(b"mdat") + 4 + 300
    assert found[1].first_sample_end == len(moofs[0]) + moofs[1].index(b"mdat") + 4 + 200


def test_only_the_first_tracks_fragments_count() -> None:
    video = box(b"traf", tfhd(1, duration=512, size=9, flags=SYNC), tfdt(0), bare_trun(1))
    audio = box(b"traf", tfhd(2, duration=1024, size=9, flags=SYNC), tfdt(0), bare_trun(1))
    found = fragments(box(b"moof", video, audio) + box(b"mdat", bytes(18)))
    assert [(f.duration, f.samples) for f in found] == [(512, 1)]


def test_a_cut_segment_keeps_the_fragments_before_the_cut() -> None:
    segment = media_segment(0, [300]) + media_segment(512, [300])
    assert len(fragments(segment)) == 2
    assert len(fragments(segment[: len(segment) // 2 + 40])) == 1
    assert fragments(b"\x00\x00\x00\x01junk") == []
