"""The HLS authoring checker: a hand-made ladder passes, and each broken rule is reported."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from kube_transcode_worker.authoring import (
    REQUIRED_STREAM_INF,
    Rule,
    Violation,
    check_folder,
    check_ladder,
    sps_resolution,
    ts_facts,
)
from kube_transcode_worker.hls import average_bitrate, peak_segment_bitrate
from kube_transcode_worker.mp4 import first_sample_end
from tests.harness.mp4_boxes import (
    audio_entry,
    box,
    esds,
    init_segment,
    media_segment,
    visual_entry,
)

pytestmark = pytest.mark.unit

FPS = 25
TICKS_PER_FRAME = 90_000 // FPS
START_PTS = 126_000  # 1.4 s, where FFmpeg's muxer starts
# SPS NAL units as x264 wrote them (Constrained Baseline 640x360 and 426x240: cropped).
SPS_360P = bytes.fromhex("6742c01eda0280bfe5c044000003000400000300c83c58ba80")
SPS_240P = bytes.fromhex("6742c015da06c7f93c04400000fa40002ee003c58ba8")
PPS = bytes.fromhex("68ce3c80")
VIDEO_PID, AUDIO_PID = 0x100, 0x101
ADTS_LC = bytes.fromhex("fff15080")  # ADTS header start: profile 1, AAC-LC (mp4a.40.2)
RUNGS = {  # lowest first, as our master lists them
    "240p": (SPS_240P, "avc1.42c015", "426x240"),
    "360p": (SPS_360P, "avc1.42c01e", "640x360"),
}


def ts_packets(pid: int, pes: bytes, *, random_access: bool = False) -> bytes:
    """One PES in 188-byte packets; the first may carry the random-access indicator."""
    packets, rest, first = b"", pes, True
    while rest:
        flagged = first and random_access
        if flagged or len(rest) < 184:
            chunk = rest[:182]
            stuffing = 183 - len(chunk)
            adaptation = bytes([stuffing, 0x40 if flagged else 0]) + b"\xff" * (stuffing - 1)
            control = 0x30
        else:
            chunk, adaptation, control = rest[:184], b"", 0x10
        start = 0x40 if first else 0
        packets += bytes([0x47, start | pid >> 8, pid & 0xFF, control]) + adaptation + chunk
        rest, first = rest[len(chunk) :], False
    return packets


def pes(stream_id: int, pts: int, payload: bytes) -> bytes:
    encoded = bytes(
        [
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            ((pts >> 14) & 0xFE) | 1,
            (pts >> 7) & 0xFF,
            ((pts << 1) & 0xFE) | 1,
        ]
    )
    return b"\x00\x00\x01" + bytes([stream_id]) + b"\x00\x00\x80\x80\x05" + encoded + payload


def nal(data: bytes) -> bytes:
    return b"\x00\x00\x00\x01" + data


def video_segment(
    first_frame: int,
    frames: int,
    sps: bytes = SPS_360P,
    *,
    frame_bytes: int = 100,
    idr: bool = True,
    random_access: bool = True,
) -> bytes:
    """frames frames of H.264 from first_frame on, the first a keyframe unless told."""
    data = b""
    for frame in range(first_frame, first_frame + frames):
        aud = nal(b"\x09\xf0")
        if frame == first_frame:
            slice_type = b"\x65" if idr else b"\x41"
            access_unit = aud + nal(sps) + nal(PPS) + nal(slice_type + b"\x88" * 300)
            flagged = random_access
        else:
            access_unit, flagged = aud + nal(b"\x41\x9a" + b"\x11" * frame_bytes), False
        pts = START_PTS + frame * TICKS_PER_FRAME
        data += ts_packets(VIDEO_PID, pes(0xE0, pts, access_unit), random_access=flagged)
    return data


def audio_segment(start_seconds: float, seconds: float, adts: bytes = ADTS_LC) -> bytes:
    data = b""
    for tenth in range(round(seconds * 10)):
        pts = START_PTS + round((start_seconds + tenth / 10) * 90_000)
        data += ts_packets(AUDIO_PID, pes(0xC0, pts, adts + b"\x00" * 150))
    return data


def media_playlist(durations: list[float], target: int = 2, *, ended: bool = True) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{target}"]
    lines += ["#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for index, duration in enumerate(durations):
        lines += [f"#EXTINF:{duration:.6f},", f"seg_{index:05d}.ts"]
    return "\n".join([*lines, *(["#EXT-X-ENDLIST"] if ended else [])]).encode() + b"\n"


def add_rendition(files: dict[str, bytes], name: str, segments: list[tuple[bytes, float]]) -> None:
    for index, (data, _) in enumerate(segments):
        files[f"{name}/seg_{index:05d}.ts"] = data
    files[f"{name}/index.m3u8"] = media_playlist([duration for _, duration in segments])


def measured(files: dict[str, bytes], name: str) -> tuple[int, int]:
    """(peak, average) bit rates of a rendition's media segments, as the checker measures
    them (an init segment is not counted)."""
    lines = files[f"{name}/index.m3u8"].decode().splitlines()
    durations = [float(line[8:-1]) for line in lines if line.startswith("#EXTINF:")]
    uris = [line for line in lines if line and not line.startswith("#")]
    pairs = [(len(files[f"{name}/{uri}"]), d) for uri, d in zip(uris, durations, strict=True)]
    return peak_segment_bitrate(pairs, 2), average_bitrate(pairs)


def write_master(
    files: dict[str, bytes],
    extra: str = "",
    *,
    variants: list[tuple[str, str, str]] | None = None,
    version: int = 3,
) -> None:
    """The master of (name, CODECS, RESOLUTION) variants (default: RUNGS) and the audio."""
    if variants is None:
        variants = [(name, codecs, size) for name, (_, codecs, size) in RUNGS.items()]
    audio_peak, audio_average = measured(files, "audio")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    lines.append('#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Audio",URI="audio/index.m3u8"')
    for name, codecs, resolution in variants:
        peak, average = measured(files, name)
        lines += [
            f"#EXT-X-STREAM-INF:BANDWIDTH={peak + audio_peak},"
            f"AVERAGE-BANDWIDTH={average + audio_average},RESOLUTION={resolution},"
            f'FRAME-RATE={FPS:.3f},CODECS="{codecs},mp4a.40.2",AUDIO="aud"',
            f"{name}/index.m3u8",
        ]
    files["master.m3u8"] = ("\n".join(lines) + "\n" + extra).encode()


def ladder(frames: tuple[int, ...] = (50, 50, 25)) -> dict[str, bytes]:
    """Two video rungs and audio, segments of 2 s at 25 fps (the last shorter)."""
    files: dict[str, bytes] = {}
    starts = [sum(frames[:i]) for i in range(len(frames))]
    for frame_bytes, (name, (sps, _, _)) in zip((100, 300), RUNGS.items(), strict=True):
        segments = [
            (video_segment(s, n, sps, frame_bytes=frame_bytes), n / FPS)
            for s, n in zip(starts, frames, strict=True)
        ]
        add_rendition(files, name, segments)
    add_rendition(
        files,
        "audio",
        [(audio_segment(s / FPS, n / FPS), n / FPS) for s, n in zip(starts, frames, strict=True)],
    )
    write_master(files)
    return files


def edit(files: dict[str, bytes], path: str, old: str, new: str) -> dict[str, bytes]:
    text = files[path].decode()
    assert old in text, (old, path)
    return {**files, path: text.replace(old, new).encode()}


def rules(violations: list[Violation]) -> list[tuple[Rule, str]]:
    return [(violation.rule, violation.where) for violation in violations]


def test_a_ladder_that_follows_every_rule_passes() -> None:
    assert check_ladder(ladder()) == []


def test_a_folder_is_checked_like_a_mapping(tmp_path: Path) -> None:
    for path, data in ladder().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    assert check_folder(tmp_path) == []
    (tmp_path / "240p/seg_00001.ts").unlink()
    assert rules(check_folder(tmp_path)) == [(Rule.MISSING, "240p/index.m3u8")]


def test_the_master_must_say_its_segments_are_independent() -> None:
    files = edit(ladder(), "master.m3u8", "#EXT-X-INDEPENDENT-SEGMENTS\n", "")
    assert rules(check_ladder(files)) == [(Rule.INDEPENDENT_SEGMENTS, "master.m3u8")]


def without_attribute(line: str, name: str) -> str:
    tag, _, value = line.partition(":")
    kept = [
        f"{key}={v}"
        for key, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)', value)
        if key != name
    ]
    return f"{tag}:{','.join(kept)}"


@pytest.mark.parametrize("name", REQUIRED_STREAM_INF)
def test_every_variant_carries_the_required_attributes(name: str) -> None:
    files = ladder()
    lines = files["master.m3u8"].decode().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:"))
    lines[first] = without_attribute(lines[first], name)
    files["master.m3u8"] = ("\n".join(lines) + "\n").encode()

    (violation,) = check_ladder(files)

    where = "master.m3u8 (240p/index.m3u8)"
    assert violation == Violation(Rule.ATTRIBUTE, where, f"no {name}", "required")


def test_an_audio_group_a_variant_names_must_exist() -> None:
    files = edit(ladder(), "master.m3u8", 'GROUP-ID="aud"', 'GROUP-ID="audio"')
    violations = check_ladder(files)
    assert [v.rule for v in violations] == [Rule.AUDIO_GROUP] * 2
    assert violations[0] == Violation(
        Rule.AUDIO_GROUP, "master.m3u8 (240p/index.m3u8)", "aud", "no such EXT-X-MEDIA"
    )


def test_bandwidths_off_by_more_than_ten_percent_are_reported_with_the_measured_value() -> None:
    files = ladder()
    peak, average = measured(files, "360p")
    audio_peak, audio_average = measured(files, "audio")
    total_peak, total_average = peak + audio_peak, average + audio_average
    files = edit(
        files, "master.m3u8", f"INF:BANDWIDTH={total_peak},", f"INF:BANDWIDTH={total_peak * 2},"
    )
    low = round(total_average * 0.85)
    files = edit(
        files, "master.m3u8", f"AVERAGE-BANDWIDTH={total_average}", f"AVERAGE-BANDWIDTH={low}"
    )

    where = "master.m3u8 (360p/index.m3u8)"
    assert check_ladder(files) == [
        Violation(Rule.PEAK_BANDWIDTH, where, str(total_peak * 2), str(total_peak)),
        Violation(Rule.AVERAGE_BANDWIDTH, where, str(low), str(total_average)),
    ]


def test_within_ten_percent_is_close_enough() -> None:
    files = ladder()
    peak, _ = measured(files, "360p")
    audio_peak, _ = measured(files, "audio")
    total = peak + audio_peak
    files = edit(files, "master.m3u8", f"BANDWIDTH={total},", f"BANDWIDTH={round(total * 1.09)},")
    assert check_ladder(files) == []


def test_codecs_must_be_the_profile_and_level_the_sps_says() -> None:
    files = edit(ladder(), "master.m3u8", "avc1.42c01e", "avc1.64001f")
    assert check_ladder(files) == [
        Violation(
            Rule.CODECS,
            "master.m3u8 (360p/index.m3u8)",
            "avc1.64001f,mp4a.40.2",
            "avc1.42c01e,mp4a.40.2",
        )
    ]


def test_codecs_must_name_the_audio_object_type_adts_shows() -> None:
    files = edit(ladder(), "master.m3u8", "avc1.42c015,mp4a.40.2", "avc1.42c015,mp4a.40.5")
    assert rules(check_ladder(files)) == [(Rule.CODECS, "master.m3u8 (240p/index.m3u8)")]
    files = edit(ladder(), "master.m3u8", "avc1.42c015,mp4a.40.2", "avc1.42c015")
    assert rules(check_ladder(files)) == [(Rule.CODECS, "master.m3u8 (240p/index.m3u8)")]


def test_he_aac_in_the_audio_rendition_is_not_mp4a_40_2() -> None:
    files = ladder()
    he_aac = bytes.fromhex("fff19080")  # ADTS profile 2: object type 3 (SSR), not LC
    files["audio/seg_00000.ts"] = audio_segment(0, 2, he_aac)
    violations = [v for v in check_ladder(files) if v.rule == Rule.CODECS]
    assert [v.measured for v in violations] == ["avc1.42c015,mp4a.40.3", "avc1.42c01e,mp4a.40.3"]


def test_resolution_must_be_the_size_the_sps_decodes_to() -> None:
    files = edit(ladder(), "master.m3u8", "RESOLUTION=426x240", "RESOLUTION=428x240")
    assert check_ladder(files) == [
        Violation(Rule.RESOLUTION, "master.m3u8 (240p/index.m3u8)", "428x240", "426x240")
    ]


def test_frame_rate_must_be_what_the_timestamps_show() -> None:
    files = ladder()
    text = files["master.m3u8"].decode().replace("FRAME-RATE=25.000", "FRAME-RATE=24.000", 1)
    files["master.m3u8"] = text.encode()
    assert check_ladder(files) == [
        Violation(Rule.FRAME_RATE, "master.m3u8 (240p/index.m3u8)", "24.000", "25.000")
    ]


def test_media_playlists_must_be_finished_vod_playlists() -> None:
    files = edit(ladder(), "audio/index.m3u8", "#EXT-X-ENDLIST", "")
    files = edit(files, "240p/index.m3u8", "PLAYLIST-TYPE:VOD", "PLAYLIST-TYPE:EVENT")
    assert check_ladder(files) == [
        Violation(Rule.VOD, "audio/index.m3u8", "no EXT-X-ENDLIST", "required"),
        Violation(Rule.VOD, "240p/index.m3u8", "PLAYLIST-TYPE EVENT", "VOD"),
    ]


def test_the_target_duration_must_cover_every_rounded_extinf() -> None:
    files = ladder()
    files["audio/index.m3u8"] = media_playlist([2.0, 2.0, 1.0], target=1)
    assert [v for v in check_ladder(files) if v.rule == Rule.TARGET_DURATION] == [
        Violation(
            Rule.TARGET_DURATION,
            f"audio/index.m3u8 (seg_0000{i}.ts)",
            "TARGETDURATION 1",
            "EXTINF 2.0",
        )
        for i in (0, 1)
    ]
    files["audio/index.m3u8"] = media_playlist([1.49, 1.49, 1.0], target=1)
    assert check_ladder(files)[0].rule != Rule.TARGET_DURATION  # 1.49 rounds to 1


def test_a_segment_that_lasts_more_than_half_a_second_over_the_target_is_reported() -> None:
    files = ladder(frames=(65, 35, 25))  # the first segment really lasts 2.6 s
    for name in ("360p", "240p", "audio"):
        files[f"{name}/index.m3u8"] = media_playlist([2.0, 2.0, 1.0])
    violations = [v for v in check_ladder(files) if v.rule == Rule.SEGMENT_DURATION]
    assert [str(v) for v in violations] == [
        f"segment-duration in {name}/seg_00000.ts: declared TARGETDURATION 2, measured 2.600 s"
        for name in ("audio", "240p", "360p")
    ]


def test_a_segment_of_two_and_a_half_seconds_is_within_the_rule() -> None:
    files = ladder(frames=(62, 38, 25))  # 2.48 s
    for name in ("360p", "240p", "audio"):
        files[f"{name}/index.m3u8"] = media_playlist([2.0, 2.0, 1.0])
    assert [v for v in check_ladder(files) if v.rule == Rule.SEGMENT_DURATION] == []


def test_a_segment_that_does_not_start_with_a_keyframe_is_reported() -> None:
    files = ladder()
    files["360p/seg_00001.ts"] = video_segment(
        50, 50, idr=False, random_access=False, frame_bytes=300
    )
    assert check_ladder(files) == [
        Violation(Rule.KEYFRAME, "360p/seg_00001.ts", "a segment", "no keyframe first")
    ]


@pytest.mark.parametrize(("idr", "random_access"), [(True, False), (False, True)])
def test_an_idr_or_the_random_access_indicator_marks_a_keyframe(
    idr: bool, random_access: bool
) -> None:
    segment = video_segment(0, 3, idr=idr, random_access=random_access)
    assert ts_facts(segment).first_video_keyframe is True


def test_a_segment_that_starts_in_the_middle_of_a_frame_does_not_start_with_a_keyframe() -> None:
    segment = video_segment(0, 3)
    assert ts_facts(segment[188:]).first_video_keyframe is False


def test_video_renditions_must_have_the_same_segment_boundaries() -> None:
    files = ladder()
    segments = [(video_segment(0, 45, SPS_240P), 1.8), (video_segment(45, 55, SPS_240P), 2.2)]
    segments.append((video_segment(100, 25, SPS_240P), 1.0))
    add_rendition(files, "240p", segments)
    write_master(files)
    (violation,) = [v for v in check_ladder(files) if v.rule == Rule.ALIGNED]
    assert violation.where == "360p/seg_00001.ts"
    assert violation.declared.startswith("starts at 2.000 s")
    assert violation.measured.startswith("1.800 s") and "240p/seg_00001.ts" in violation.measured


def test_video_renditions_must_have_the_same_segment_count() -> None:
    files = ladder()
    add_rendition(files, "240p", [(video_segment(0, 125, SPS_240P), 5.0)])
    files["240p/index.m3u8"] = media_playlist([5.0], target=5)
    write_master(files)
    (violation,) = [v for v in check_ladder(files) if v.rule == Rule.ALIGNED]
    assert violation == Violation(
        Rule.ALIGNED, "360p/index.m3u8", "3 segments", "1 in 240p/index.m3u8"
    )


def test_a_segment_uri_outside_the_ladder_is_missing() -> None:
    files = edit(ladder(), "audio/index.m3u8", "seg_00002.ts", "../../etc/passwd")
    assert rules(check_ladder(files)) == [(Rule.MISSING, "audio/index.m3u8")]


@pytest.mark.parametrize(
    ("sps", "size"),
    [
        (SPS_360P, (640, 360)),
        (SPS_240P, (426, 240)),
        (bytes.fromhex("6764001facd9405005bb0110000003001000000303c0f1831960"), (1280, 720)),
        (bytes.fromhex("67640028acd940780227e5c044000003000400000300f03c60c658"), (1920, 1080)),
    ],
)
def test_the_sps_gives_the_cropped_picture_size(sps: bytes, size: tuple[int, int]) -> None:
    assert sps_resolution(sps) == size


# I-frame playlists: byte ranges into the video segments, one per keyframe.


def keyframe_length(segment: bytes) -> int:
    """Bytes of the first frame (the keyframe) of a segment made by video_segment."""
    return next(o for o in range(188, len(segment), 188) if segment[o + 1] & 0x40)


def i_frame_playlist(files: dict[str, bytes], name: str, *, offsets: tuple[int, ...] = ()) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:4", "#EXT-X-TARGETDURATION:2"]
    lines += ["#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-I-FRAMES-ONLY"]
    for index, duration in enumerate((2.0, 2.0, 1.0)):
        segment = files[f"{name}/seg_{index:05d}.ts"]
        offset = offsets[index] if offsets else 0
        lines += [
            f"#EXTINF:{duration:.6f},",
            f"#EXT-X-BYTERANGE:{keyframe_length(segment)}@{offset}",
            f"seg_{index:05d}.ts",
        ]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


def with_i_frames(files: dict[str, bytes], playlist: bytes | None = None) -> dict[str, bytes]:
    files = {**files, "360p/iframes.m3u8": playlist or i_frame_playlist(files, "360p")}
    lengths = [keyframe_length(files[f"360p/seg_{i:05d}.ts"]) for i in range(3)]
    pairs = list(zip(lengths, (2.0, 2.0, 1.0), strict=True))
    peak, average = peak_segment_bitrate(pairs, 2), average_bitrate(pairs)
    write_master(
        files,
        f"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},"
        f'RESOLUTION=640x360,CODECS="avc1.42c01e",URI="360p/iframes.m3u8"\n',
    )
    return files


def test_an_i_frame_playlist_of_keyframe_byte_ranges_passes() -> None:
    assert check_ladder(with_i_frames(ladder())) == []


def test_an_i_frame_byte_range_must_start_at_a_keyframe() -> None:
    files = ladder()
    second_frame = keyframe_length(files["360p/seg_00001.ts"])
    playlist = i_frame_playlist(files, "360p", offsets=(0, second_frame, 0))
    (violation,) = check_ladder(with_i_frames(files, playlist))
    assert violation.rule == Rule.KEYFRAME
    assert violation.where == "360p/iframes.m3u8 (seg_00001.ts)"


def test_an_i_frame_playlist_needs_i_frames_only_and_byte_ranges() -> None:
    files = with_i_frames(ladder())
    files = edit(files, "360p/iframes.m3u8", "#EXT-X-I-FRAMES-ONLY\n", "")
    assert rules(check_ladder(files)) == [(Rule.I_FRAMES_ONLY, "360p/iframes.m3u8")]
    text = files["360p/iframes.m3u8"].decode()
    first_range = text[text.index("#EXT-X-BYTERANGE") : text.index("seg_00000.ts")]
    files["360p/iframes.m3u8"] = text.replace(first_range, "", 1).encode()
    assert (Rule.BYTE_RANGE, "360p/iframes.m3u8 (seg_00000.ts)") in rules(check_ladder(files))


def test_an_i_frame_byte_range_must_lie_inside_its_segment() -> None:
    files = ladder()
    size = len(files["360p/seg_00002.ts"])
    playlist = i_frame_playlist(files, "360p", offsets=(0, 0, size - 188))
    violations = check_ladder(with_i_frames(files, playlist))
    assert rules(violations)[0] == (Rule.BYTE_RANGE, "360p/iframes.m3u8 (seg_00002.ts)")
    assert violations[0].measured == f"{size} bytes"


def test_an_i_frame_variant_needs_its_attributes_and_measured_bandwidth() -> None:
    files = with_i_frames(ladder())
    files = edit(files, "master.m3u8", 'RESOLUTION=640x360,CODECS="avc1.42c01e",URI', "URI")
    text = files["master.m3u8"].decode()
    start = text.index("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=") + len("#EXT-X-I-FRAME-STREAM-INF:")
    files["master.m3u8"] = (
        text[:start] + "BANDWIDTH=1," + text[text.index(",", start) + 1 :]
    ).encode()
    where = "master.m3u8 (I-frames 360p/iframes.m3u8)"
    assert rules(check_ladder(files)) == [
        (Rule.ATTRIBUTE, where),
        (Rule.ATTRIBUTE, where),
        (Rule.PEAK_BANDWIDTH, where),
    ]


def test_an_audio_group_without_a_uri_must_be_in_the_variant_segments() -> None:
    files = edit(ladder(), "master.m3u8", ',URI="audio/index.m3u8"', "")
    violations = [v for v in check_ladder(files) if v.rule != Rule.PEAK_BANDWIDTH]
    assert rules(violations) == [
        (Rule.AVERAGE_BANDWIDTH, "master.m3u8 (240p/index.m3u8)"),  # it counted the audio
        (Rule.CODECS, "master.m3u8 (240p/index.m3u8)"),
        (Rule.AVERAGE_BANDWIDTH, "master.m3u8 (360p/index.m3u8)"),
        (Rule.CODECS, "master.m3u8 (360p/index.m3u8)"),
    ]
    assert violations[1].measured == "avc1.42c015"  # no AAC in the segments the variant names


# fMP4 (CMAF) ladders: one rung in three codecs and audio, init segments, fragments.
# The boxes are built here as FFmpeg lays them out; tests/unit/test_mp4.py covers the parsing.

VIDEO_TIMESCALE, TICKS = 12_800, 12_800 // FPS
AUDIO_TIMESCALE, AAC_FRAME = 48_000, 1024
FMP4_RUNGS = {  # name: (sample entry type, configuration box, CODECS)
    "360p": (b"avc1", b"avcC" + bytes([1, 0x64, 0, 0x1E, 0xFF, 0xE0]), "avc1.64001e"),
    "360p-hevc": (
        b"hvc1",
        b"hvcC" + bytes.fromhex("0101600000009000000000003ff000fcfdf8f8"),
        "hvc1.1.6.L63.90",
    ),
    "360p-av1": (b"av01", b"av1C" + bytes([0x81, 0x01, 0x0C, 0]), "av01.0.01M.08"),
}


def video_init(name: str, width: int = 640, height: int = 360) -> bytes:
    kind, config, _ = FMP4_RUNGS[name]
    entry = visual_entry(kind, box(config[:4], config[4:]), width, height)
    return init_segment(entry, VIDEO_TIMESCALE)


def audio_init() -> bytes:
    # AudioSpecificConfig: AAC-LC, 48 kHz, stereo.
    return init_segment(audio_entry(esds(bytes([0x11, 0x90]))), AUDIO_TIMESCALE)


def fragment(decode_time: int, durations: list[int], sizes: list[int], *, sync: bool) -> bytes:
    """A media segment as FFmpeg writes it (default-base-is-moof, first sample flags)."""
    return media_segment(decode_time, sizes, durations=durations, sync=sync)


def fmp4_video(first_frame: int, frames: int, frame_bytes: int, *, sync: bool = True) -> bytes:
    sizes = [frame_bytes * 10] + [frame_bytes] * (frames - 1)  # a large keyframe first
    return fragment(first_frame * TICKS, [TICKS] * frames, sizes, sync=sync)


def fmp4_audio(first_frame: int, frames: int) -> bytes:
    return fragment(first_frame * AAC_FRAME, [AAC_FRAME] * frames, [200] * frames, sync=True)


def fmp4_playlist(name: str, durations: list[float], *, version: int = 7) -> bytes:
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-TARGETDURATION:2"]
    lines += ["#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]
    lines.append(f'#EXT-X-MAP:URI="init_{name}.mp4"')
    for index, duration in enumerate(durations):
        lines += [f"#EXTINF:{duration:.6f},", f"seg_{index:05d}.m4s"]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


def add_fmp4_rendition(
    files: dict[str, bytes], name: str, init: bytes, segments: list[tuple[bytes, float]]
) -> None:
    files[f"{name}/init_{name}.mp4"] = init
    for index, (data, _) in enumerate(segments):
        files[f"{name}/seg_{index:05d}.m4s"] = data
    files[f"{name}/index.m3u8"] = fmp4_playlist(name, [duration for _, duration in segments])


def write_fmp4_master(files: dict[str, bytes], extra: str = "") -> None:
    variants = [(name, codecs, "640x360") for name, (_, _, codecs) in FMP4_RUNGS.items()]
    write_master(files, extra, variants=variants, version=7)


def fmp4_ladder(frames: tuple[int, ...] = (50, 50, 25)) -> dict[str, bytes]:
    """360p in H.264, HEVC and AV1, and AAC: 2 s segments at 25 fps (the last shorter)."""
    files: dict[str, bytes] = {}
    starts = [sum(frames[:i]) for i in range(len(frames))]
    for frame_bytes, name in zip((300, 200, 150), FMP4_RUNGS, strict=True):
        segments = [
            (fmp4_video(s, n, frame_bytes), n / FPS) for s, n in zip(starts, frames, strict=True)
        ]
        add_fmp4_rendition(files, name, video_init(name), segments)
    # AAC frames of 1024 at 48 kHz: each segment from the first frame at or after its start.
    edges = [round(s / FPS * AUDIO_TIMESCALE / AAC_FRAME + 0.4999) for s in [*starts, sum(frames)]]
    audio = [
        (fmp4_audio(a, b - a), (b - a) * AAC_FRAME / AUDIO_TIMESCALE)
        for a, b in itertools.pairwise(edges)
    ]
    add_fmp4_rendition(files, "audio", audio_init(), audio)
    write_fmp4_master(files)
    return files


def test_an_fmp4_ladder_in_three_codecs_that_follows_every_rule_passes() -> None:
    assert check_ladder(fmp4_ladder()) == []


def test_an_fmp4_playlist_must_name_its_init_segment_with_ext_x_map() -> None:
    files = edit(fmp4_ladder(), "360p-av1/index.m3u8", '#EXT-X-MAP:URI="init_360p-av1.mp4"\n', "")
    assert rules(check_ladder(files)) == [(Rule.MAP, "360p-av1/index.m3u8")]


def test_the_init_segment_ext_x_map_names_must_exist() -> None:
    files = fmp4_ladder()
    del files["360p-hevc/init_360p-hevc.mp4"]
    assert rules(check_ladder(files)) == [(Rule.MISSING, "360p-hevc/index.m3u8")]


def test_an_init_segment_without_a_readable_track_is_reported() -> None:
    files = {**fmp4_ladder(), "360p/init_360p.mp4": box(b"ftyp", b"iso6") + box(b"moov")}
    assert rules(check_ladder(files)) == [(Rule.MAP, "360p/init_360p.mp4")]


def test_ext_x_map_needs_version_6_in_a_media_playlist() -> None:
    files = edit(fmp4_ladder(), "360p/index.m3u8", "#EXT-X-VERSION:7", "#EXT-X-VERSION:5")
    assert check_ladder(files) == [
        Violation(Rule.VERSION, "360p/index.m3u8", "EXT-X-VERSION 5", ">= 6 for EXT-X-MAP")
    ]


@pytest.mark.parametrize(
    ("declared", "measured"),
    [
        ("hvc1.1.6.L93.90", "hvc1.1.6.l63.90"),  # another level than the hvcC's
        ("hvc1.1.60000000.L63.90", "hvc1.1.6.l63.90"),  # compatibility flags not bit-reversed
        ("hvc1.1.6.L63.90.00.00.00.00.00", "hvc1.1.6.l63.90"),  # trailing zero bytes kept
    ],
)
def test_fmp4_codecs_must_be_the_init_segments_sample_entry(declared: str, measured: str) -> None:
    files = edit(fmp4_ladder(), "master.m3u8", "hvc1.1.6.L63.90", declared)
    assert check_ladder(files) == [
        Violation(
            Rule.CODECS,
            "master.m3u8 (360p-hevc/index.m3u8)",
            f"{declared},mp4a.40.2",
            f"{measured},mp4a.40.2",
        )
    ]


def test_fmp4_audio_codecs_are_the_audio_init_segments() -> None:
    files = edit(
        fmp4_ladder(),
        "master.m3u8",
        'CODECS="av01.0.01M.08,mp4a.40.2"',
        'CODECS="av01.0.01M.08,mp4a.40.5"',
    )
    (violation,) = check_ladder(files)
    assert (violation.rule, violation.measured) == (Rule.CODECS, "av01.0.01m.08,mp4a.40.2")


def test_fmp4_resolution_is_the_visual_sample_entrys_size() -> None:
    files = {**fmp4_ladder(), "360p-av1/init_360p-av1.mp4": video_init("360p-av1", 640, 352)}
    assert check_ladder(files) == [
        Violation(Rule.RESOLUTION, "master.m3u8 (360p-av1/index.m3u8)", "640x360", "640x352")
    ]


def test_fmp4_frame_rate_is_the_sample_durations_in_the_timescale() -> None:
    text = fmp4_ladder()["master.m3u8"].decode()
    files = {
        **fmp4_ladder(),
        "master.m3u8": text.replace("FRAME-RATE=25.000", "FRAME-RATE=30.000", 1).encode(),
    }
    assert check_ladder(files) == [
        Violation(Rule.FRAME_RATE, "master.m3u8 (360p/index.m3u8)", "30.000", "25.000")
    ]


def test_an_fmp4_segment_must_start_with_a_sync_sample() -> None:
    files = {**fmp4_ladder(), "360p-hevc/seg_00001.m4s": fmp4_video(50, 50, 200, sync=False)}
    assert check_ladder(files) == [
        Violation(Rule.KEYFRAME, "360p-hevc/seg_00001.m4s", "a segment", "no keyframe first")
    ]


def test_an_fmp4_segment_longer_than_its_extinf_says_is_measured_by_its_fragments() -> None:
    files = fmp4_ladder(frames=(65, 35, 25))  # 2.6 s of samples in the first segment
    for name in [*FMP4_RUNGS, "audio"]:
        files[f"{name}/index.m3u8"] = fmp4_playlist(name, [2.0, 2.0, 1.0])
    write_fmp4_master(files)
    violations = [v for v in check_ladder(files) if v.rule == Rule.SEGMENT_DURATION]
    assert [v.where for v in violations] == [
        f"{name}/seg_00000.m4s" for name in ["audio", *FMP4_RUNGS]
    ]
    assert [v.measured for v in violations[1:]] == ["2.600 s"] * 3


def test_every_codecs_renditions_must_have_the_same_segment_boundaries() -> None:
    files = fmp4_ladder()
    segments = [(fmp4_video(0, 48, 150), 1.92), (fmp4_video(48, 52, 150), 2.08)]
    segments.append((fmp4_video(100, 25, 150), 1.0))
    add_fmp4_rendition(files, "360p-av1", video_init("360p-av1"), segments)
    write_fmp4_master(files)
    (violation,) = [v for v in check_ladder(files) if v.rule == Rule.ALIGNED]
    assert violation.where == "360p-av1/seg_00001.m4s"
    assert violation.declared.startswith("starts at 1.920 s")
    assert violation.measured.startswith("2.000 s") and "360p/seg_00001.m4s" in violation.measured


def test_fmp4_bandwidths_do_not_count_the_init_segment() -> None:
    files = fmp4_ladder()
    files["360p/init_360p.mp4"] += box(b"free", bytes(500_000))  # fetched once, not per segment
    assert check_ladder(files) == []


# fMP4 I-frame playlists: EXT-X-MAP, and per segment the bytes from 0 through its keyframe.


def fmp4_i_frame_playlist(
    files: dict[str, bytes], name: str, *, lengths: tuple[int, ...] = (), version: int = 5
) -> bytes:
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-TARGETDURATION:2"]
    lines += [
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-I-FRAMES-ONLY",
        f'#EXT-X-MAP:URI="init_{name}.mp4"',
    ]
    for index, duration in enumerate((2.0, 2.0, 1.0)):
        end = first_sample_end(files[f"{name}/seg_{index:05d}.m4s"])
        lines += [
            f"#EXTINF:{duration:.6f},",
            f"#EXT-X-BYTERANGE:{lengths[index] if lengths else end}@0",
            f"seg_{index:05d}.m4s",
        ]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


def with_fmp4_i_frames(files: dict[str, bytes], playlist: bytes | None = None) -> dict[str, bytes]:
    name = "360p-hevc"
    files = {**files, f"{name}/iframes.m3u8": playlist or fmp4_i_frame_playlist(files, name)}
    text = files[f"{name}/iframes.m3u8"].decode()
    lengths = [
        int(line[17:].split("@")[0])
        for line in text.splitlines()
        if line.startswith("#EXT-X-BYTERANGE:")
    ]
    pairs = list(zip(lengths, (2.0, 2.0, 1.0), strict=True))
    peak, average = peak_segment_bitrate(pairs, 2), average_bitrate(pairs)
    write_fmp4_master(
        files,
        f"#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},"
        f'RESOLUTION=640x360,CODECS="hvc1.1.6.L63.90",URI="{name}/iframes.m3u8"\n',
    )
    return files


def test_an_fmp4_i_frame_playlist_of_ranges_through_each_keyframe_passes() -> None:
    assert check_ladder(with_fmp4_i_frames(fmp4_ladder())) == []


def test_an_fmp4_i_frame_range_must_reach_the_end_of_the_first_sample() -> None:
    files = fmp4_ladder()
    end = first_sample_end(files["360p-hevc/seg_00001.m4s"])
    assert end is not None
    playlist = fmp4_i_frame_playlist(files, "360p-hevc", lengths=(end, end - 1, end))
    files = with_fmp4_i_frames(files, playlist)
    where = "360p-hevc/iframes.m3u8 (seg_00001.m4s)"
    assert [v for v in check_ladder(files) if v.rule == Rule.BYTE_RANGE] == [
        Violation(Rule.BYTE_RANGE, where, f"{end - 1}@0", f"0 to {end}, the first sample's end")
    ]


def test_an_fmp4_i_frame_range_must_start_at_byte_0() -> None:
    files = with_fmp4_i_frames(fmp4_ladder())
    path = "360p-hevc/iframes.m3u8"
    text = files[path].decode()
    first = next(line for line in text.splitlines() if line.startswith("#EXT-X-BYTERANGE:"))
    files[path] = text.replace(first, first.replace("@0", "@8"), 1).encode()
    assert rules(check_ladder(files)) == [(Rule.BYTE_RANGE, f"{path} (seg_00000.m4s)")]


def test_an_fmp4_i_frame_playlist_needs_ext_x_map_at_version_5() -> None:
    files = with_fmp4_i_frames(fmp4_ladder())
    low = edit(files, "360p-hevc/iframes.m3u8", "#EXT-X-VERSION:5", "#EXT-X-VERSION:4")
    assert check_ladder(low) == [
        Violation(Rule.VERSION, "360p-hevc/iframes.m3u8", "EXT-X-VERSION 4", ">= 5 for EXT-X-MAP")
    ]
    unmapped = edit(files, "360p-hevc/iframes.m3u8", '#EXT-X-MAP:URI="init_360p-hevc.mp4"\n', "")
    assert rules(check_ladder(unmapped)) == [(Rule.MAP, "360p-hevc/iframes.m3u8")]
