"""Master playlist content, playlist parsing and bitrate measurement."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from kube_transcode.ladder import LadderPlan, SourceInfo, plan_ladder
from kube_transcode_worker.hls import (
    RenditionStats,
    average_bitrate,
    first_frame_bytes,
    h264_codecs_from_ts,
    master_playlist,
    measure_rendition,
    peak_segment_bitrate,
    planned_codecs,
    write_master_playlist,
)
from kube_transcode_worker.playlists import parse_master_playlist

pytestmark = pytest.mark.unit


def plan_720p(*, has_audio: bool = True) -> LadderPlan:
    info = SourceInfo(
        width=1280,
        height=720,
        duration_seconds=13.0,
        fps=Fraction(24000, 1001),
        has_audio=has_audio,
        video_codec="h264",
        container="mov,mp4,m4a,3gp,3g2,mj2",
    )
    return plan_ladder(info)


STATS = {
    "720p": RenditionStats(peak_bps=3_400_000, average_bps=2_900_000, codecs="avc1.64001f"),
    "480p": RenditionStats(peak_bps=1_600_000, average_bps=1_350_000, codecs="avc1.64001e"),
    "360p": RenditionStats(peak_bps=900_000, average_bps=780_000, codecs="avc1.4d401e"),
    "240p": RenditionStats(peak_bps=450_000, average_bps=390_000, codecs=None),
    "audio": RenditionStats(peak_bps=135_000, average_bps=130_000, codecs="mp4a.40.2"),
}


def test_master_lists_every_rendition_lowest_bandwidth_first_with_audio_group() -> None:
    text = master_playlist(plan_720p(), STATS)
    master = parse_master_playlist(text)
    assert text.startswith("#EXTM3U\n")
    assert master.independent_segments
    assert [v.uri for v in master.variants] == [
        "240p/index.m3u8",
        "360p/index.m3u8",
        "480p/index.m3u8",
        "720p/index.m3u8",
    ]
    top = master.variants[-1].attributes
    assert top == {
        "BANDWIDTH": "3535000",  # video peak plus audio peak: what a player downloads at once
        "AVERAGE-BANDWIDTH": "3030000",
        "RESOLUTION": "1280x720",
        "FRAME-RATE": "23.976",
        "CODECS": "avc1.64001f,mp4a.40.2",
        "AUDIO": "aud",
    }
    assert master.media == (
        {
            "TYPE": "AUDIO",
            "GROUP-ID": "aud",
            "NAME": "Audio",
            "DEFAULT": "YES",
            "AUTOSELECT": "YES",
            "CHANNELS": "2",
            "URI": "audio/index.m3u8",
        },
    )


def test_unmeasured_codecs_fall_back_to_the_planned_profile_and_level() -> None:
    master = parse_master_playlist(master_playlist(plan_720p(), STATS))
    assert master.variants[0].attributes["CODECS"] == "avc1.4d4015,mp4a.40.2"  # main, 2.1


def test_master_without_audio_has_no_audio_group() -> None:
    video_only = {name: stats for name, stats in STATS.items() if name != "audio"}
    text = master_playlist(plan_720p(has_audio=False), video_only)
    master = parse_master_playlist(text)
    assert master.media == ()
    assert "AUDIO" not in text and "mp4a" not in text
    assert master.variants[-1].attributes["CODECS"] == "avc1.64001f"
    assert master.variants[-1].attributes["BANDWIDTH"] == "3400000"


@pytest.mark.parametrize(
    ("profile", "level", "codecs"),
    [
        ("baseline", "3.0", "avc1.42c01e"),
        ("main", "3.1", "avc1.4d401f"),
        ("high", "4.0", "avc1.640028"),
    ],
)
def test_planned_codecs_follow_rfc6381(profile: str, level: str, codecs: str) -> None:
    rendition = plan_720p().renditions[0].model_copy(update={"profile": profile, "level": level})
    assert planned_codecs(rendition) == codecs


def test_peak_is_the_busiest_run_of_half_to_one_and_a_half_target_durations() -> None:
    segments = [(750_000, 6.0), (1_500_000, 6.0), (600_000, 6.0)]
    assert peak_segment_bitrate(segments, 6) == 2_000_000
    assert average_bitrate(segments) == 1_266_667


def test_a_tiny_last_segment_does_not_inflate_the_peak() -> None:
    # 0.023 s of audio in a 1 kB segment alone would be 348 kbps.
    segments = [(96_000, 6.0), (96_000, 6.0), (1_000, 0.023)]
    assert peak_segment_bitrate(segments, 6) == 128_840  # the tail counts with its neighbour


def test_a_playlist_shorter_than_half_a_target_duration_uses_its_average() -> None:
    assert peak_segment_bitrate([(50_000, 1.0)], 6) == 400_000


def ts_packets(pid: int, payload: bytes) -> bytes:
    """Split payload into 188-byte MPEG-TS packets, padding the last with adaptation stuffing."""
    packets = b""
    for start in range(0, len(payload), 184):
        chunk = payload[start : start + 184]
        if len(chunk) == 184:
            header = bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10])
            packets += header + chunk
        else:
            stuffing = 184 - len(chunk) - 1
            header = bytes([0x47, pid >> 8, pid & 0xFF, 0x30, stuffing])
            packets += header + (b"\x00" + b"\xff" * (stuffing - 1) if stuffing else b"") + chunk
    return packets


PES_HEADER = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01"
AUD = b"\x00\x00\x00\x01\x09\xf0"
SPS = b"\x00\x00\x00\x01\x67\x64\x00\x28\xac\xd9\x40\x78"


def test_codecs_are_read_from_the_sps_in_a_ts_segment() -> None:
    pat = ts_packets(0, b"\x00\x00\xb0\x0d\x00\x01\xc1\x00\x00\x00\x01\xf0\x00")
    video = ts_packets(0x100, PES_HEADER + AUD + SPS + b"\x00\x00\x00\x01\x65" + b"\x88" * 50)
    assert h264_codecs_from_ts(pat + video) == "avc1.640028"


def test_an_sps_split_across_ts_packets_is_still_found() -> None:
    filler = b"\x00\x00\x00\x01\x06" + b"\x05" * (184 - len(PES_HEADER) - 5 - 3)
    payload = PES_HEADER + filler + SPS  # the SPS start code ends the first packet
    assert len(PES_HEADER + filler) < 184 < len(PES_HEADER + filler + SPS)
    assert h264_codecs_from_ts(ts_packets(0x100, payload)) == "avc1.640028"


def test_data_without_an_sps_has_no_codecs() -> None:
    assert h264_codecs_from_ts(b"not a transport stream at all" * 10) is None
    assert h264_codecs_from_ts(ts_packets(0x101, b"\xff\xf1\x50\x80" * 40)) is None


def write_rendition(folder: Path, durations: list[float], sizes: list[int], data: bytes) -> None:
    folder.mkdir(parents=True)
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:6", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for index, (duration, size) in enumerate(zip(durations, sizes, strict=True)):
        name = f"seg_{index:05d}.ts"
        (folder / name).write_bytes(data + b"\xff" * (size - len(data)))
        lines += [f"#EXTINF:{duration:.6f},", name]
    (folder / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n")


def test_master_is_written_from_measured_segment_sizes(tmp_path: Path) -> None:
    plan = plan_720p()
    first_segment = ts_packets(0x100, PES_HEADER + AUD + SPS)
    for rendition in plan.renditions:
        size = rendition.video_kbps * 1000 * 6 // 8
        write_rendition(tmp_path / rendition.name, [6.0, 6.0], [size, size], first_segment)
    write_rendition(tmp_path / "audio", [6.0, 6.0], [96_000, 96_000], b"")

    master_path = write_master_playlist(tmp_path, plan)

    assert master_path == tmp_path / "master.m3u8"
    assert not list(tmp_path.glob("*.partial"))
    master = parse_master_playlist(master_path.read_text())
    top = master.variants[-1].attributes
    assert top["BANDWIDTH"] == str(3_000_000 + 128_000)
    assert top["AVERAGE-BANDWIDTH"] == str(3_000_000 + 128_000)
    assert top["CODECS"] == "avc1.640028,mp4a.40.2"


def test_measuring_refuses_segment_uris_outside_the_rendition(tmp_path: Path) -> None:
    folder = tmp_path / "720p"
    folder.mkdir()
    (folder / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\n../../etc/passwd\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(ValueError, match="unexpected segment URI"):
        measure_rendition(folder, video=True)


def _ts_packet(pid: int, *, start: bool, payload: bytes = b"") -> bytes:
    header = bytes([0x47, (0x40 if start else 0) | (pid >> 8), pid & 0xFF, 0x10])
    return (header + payload).ljust(188, b"\xff")


def test_a_segment_s_first_frame_ends_where_the_next_video_pes_begins() -> None:
    video_pes = b"\x00\x00\x01\xe0"
    segment = b"".join(
        [
            _ts_packet(0, start=True, payload=b"\x00PAT"),
            _ts_packet(0x1000, start=True, payload=b"\x00PMT"),
            _ts_packet(0x100, start=True, payload=video_pes),  # the keyframe begins
            _ts_packet(0x100, start=False),
            _ts_packet(0x100, start=True, payload=video_pes),  # the next frame
            _ts_packet(0x100, start=False),
        ]
    )
    assert first_frame_bytes(segment) == 4 * 188
    assert first_frame_bytes(segment[: 4 * 188]) == 4 * 188  # a one-frame segment: all of it
    assert first_frame_bytes(_ts_packet(0, start=True)) is None  # no video at all
