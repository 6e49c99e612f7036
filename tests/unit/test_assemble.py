"""A chunked ladder's playlists from its parts' manifests: pure, no FFmpeg."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kube_transcode.ladder import HlsOptions, Rung, SourceInfo, plan_ladder
from kube_transcode_worker.assemble import PartManifest, assemble, part_names, segment_keys
from kube_transcode_worker.hls import (
    RenditionPart,
    SegmentEntry,
)
from kube_transcode_worker.playlists import parse_master_playlist, parse_media_playlist

pytestmark = pytest.mark.unit

PLAN = plan_ladder(
    SourceInfo(
        width=640,
        height=360,
        duration_seconds=40.0,
        fps=Fraction(30),
        has_audio=True,
        video_codec="h264",
        container="mov,mp4,m4a,3gp,3g2,mj2",
    ),
    [Rung(name="low", height=180, video_kbps=300), Rung(name="high", height=360, video_kbps=800)],
    hls=HlsOptions(segment_seconds=6),
)


def _part(first: int, durations: list[float], size: int, codecs: str) -> RenditionPart:
    return RenditionPart(
        target_duration=6,
        segments=tuple(
            SegmentEntry(
                uri=f"seg_{first + i:05d}.ts",
                duration=d,
                size=size,
                keyframe_bytes=None if codecs.startswith("mp4a") else size // 10,
            )
            for i, d in enumerate(durations)
        ),
        codecs=codecs,
    )


def _manifests(*, skip: str | None = None) -> dict[str, PartManifest]:
    chunks = [(0, [6.0, 6.0]), (2, [6.0, 6.0]), (4, [6.0, 6.0, 4.0])]
    found = {}
    for index, (first, durations) in enumerate(chunks):
        name = f"chunk-{index:04d}"
        found[name] = PartManifest(
            task=name,
            renditions={
                "low": _part(first, durations, 150_000, "avc1.4d400d"),
                # The middle chunk is heavier: the peak must see it.
                "high": _part(first, durations, 900_000 if index == 1 else 450_000, "avc1.64001e"),
            },
        )
    found["audio"] = PartManifest(
        task="audio",
        renditions={"audio": _part(0, [6.0] * 6 + [4.0], 96_000, "mp4a.40.2")},
    )
    if skip:
        del found[skip]
    return found


def test_media_playlists_are_the_parts_segments_in_order_numbered_from_zero() -> None:
    playlists = assemble(PLAN, _manifests(), chunks=3)
    high = parse_media_playlist(playlists["high/index.m3u8"])
    assert [s.uri for s in high.segments] == [f"seg_{i:05d}.ts" for i in range(7)]
    assert high.duration == pytest.approx(40.0)
    assert (high.playlist_type, high.ended, high.independent_segments) == ("VOD", True, True)
    # Media sequence 0: the tag's default when absent (RFC 8216 4.3.3.2), as the writer leaves it.
    text = playlists["high/index.m3u8"]
    assert "#EXT-X-MEDIA-SEQUENCE" not in text or "#EXT-X-MEDIA-SEQUENCE:0\n" in text
    audio = parse_media_playlist(playlists["audio/index.m3u8"])
    assert audio.duration == pytest.approx(40.0)


def test_the_master_is_measured_over_every_part() -> None:
    master = parse_master_playlist(assemble(PLAN, _manifests(), chunks=3)["master.m3u8"])
    high = next(v for v in master.variants if v.uri == "high/index.m3u8")
    audio_peak = 96_000 * 8 / 4  # its short last segment, same size: the audio's peak
    # The peak is the middle chunk's segments (900 kB per 6 s), not the average.
    assert int(high.attributes["BANDWIDTH"]) == pytest.approx(
        900_000 * 8 / 6 + audio_peak, rel=0.01
    )
    assert int(high.attributes["AVERAGE-BANDWIDTH"]) < int(high.attributes["BANDWIDTH"])
    assert high.attributes["CODECS"] == "avc1.64001e,mp4a.40.2"
    assert [m["URI"] for m in master.media] == ["audio/index.m3u8"]


@pytest.mark.parametrize("missing", ["chunk-0001", "audio"])
def test_a_ladder_with_a_part_missing_is_not_assembled(missing: str) -> None:
    with pytest.raises(ValueError, match=f"parts not stored yet: {missing}"):
        assemble(PLAN, _manifests(skip=missing), chunks=3)


def test_parts_and_their_keys() -> None:
    assert part_names(3, has_audio=True) == ["chunk-0000", "chunk-0001", "chunk-0002", "audio"]
    assert part_names(2, has_audio=False) == ["chunk-0000", "chunk-0001"]
    keys = segment_keys("media/film", _manifests())
    assert "media/film/high/seg_00006.ts" in keys and "media/film/audio/seg_00006.ts" in keys
    assert len(keys) == 7 * 2 + 7


def test_every_video_rendition_gets_an_i_frame_playlist_into_its_segments() -> None:
    playlists = assemble(PLAN, _manifests(), chunks=3)
    text = playlists["high/iframes.m3u8"]
    assert "#EXT-X-I-FRAMES-ONLY" in text and "#EXT-X-VERSION:4" in text
    ranges = [line for line in text.splitlines() if line.startswith("#EXT-X-BYTERANGE:")]
    # One I-frame per segment, from the segment's start through its keyframe.
    assert ranges[:3] == ["#EXT-X-BYTERANGE:45000@0", "#EXT-X-BYTERANGE:45000@0",
                          "#EXT-X-BYTERANGE:90000@0"]  # fmt: skip
    assert len(ranges) == 7 and "audio/iframes.m3u8" not in playlists
    master = parse_master_playlist(playlists["master.m3u8"])
    assert [s["URI"] for s in master.iframe_streams] == ["low/iframes.m3u8", "high/iframes.m3u8"]
    high = master.iframe_streams[1]
    assert (high["RESOLUTION"], high["CODECS"]) == ("640x360", "avc1.64001e")
    assert int(high["BANDWIDTH"]) == 90_000 * 8 // 6
