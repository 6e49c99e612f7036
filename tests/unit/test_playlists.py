"""Playlists written and read back through the library; what bad input gets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kube_transcode_worker.playlists import (
    AudioGroup,
    IFrameEntry,
    MasterPlaylist,
    MediaPlaylist,
    Segment,
    Variant,
    VariantEntry,
    parse_master_playlist,
    parse_media_playlist,
    write_master_playlist,
    write_media_playlist,
)

pytestmark = pytest.mark.unit

TS_SEGMENTS = (
    Segment("seg_00000.ts", 6.006),
    Segment("seg_00001.ts", 6.006),
    Segment("seg_00002.ts", 1.001),
)
AUDIO = AudioGroup(group_id="aud", name="Audio", channels=2, uri="audio/index.m3u8")
VARIANTS = (
    VariantEntry(
        uri="240p/index.m3u8",
        bandwidth=585_000,
        average_bandwidth=520_000,
        width=426,
        height=240,
        frame_rate=24000 / 1001,
        codecs=("avc1.4d4015", "mp4a.40.2"),
        audio="aud",
    ),
    VariantEntry(
        uri="720p/index.m3u8",
        bandwidth=3_535_000,
        average_bandwidth=3_030_000,
        width=1280,
        height=720,
        frame_rate=24000 / 1001,
        codecs=("avc1.64001f", "mp4a.40.2"),
        audio="aud",
    ),
)
IFRAME_STREAMS = (
    IFrameEntry(
        uri="240p/iframes.m3u8",
        bandwidth=90_000,
        average_bandwidth=70_000,
        width=426,
        height=240,
        codecs=("avc1.4d4015",),
    ),
    IFrameEntry(
        uri="720p/iframes.m3u8", bandwidth=400_000, width=1280, height=720, codecs=("avc1.64001f",)
    ),
)
# As FFmpeg's HLS muxer writes a fragmented MP4 rendition.
FFMPEG_FMP4 = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init_av1.mp4"
#EXTINF:4.000000,
seg_00000.m4s
#EXTINF:1.000000,
seg_00001.m4s
#EXT-X-ENDLIST
"""
# As hls.master_playlist wrote it by hand before the library.
HAND_WRITTEN_MASTER = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Audio",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=3535000,AVERAGE-BANDWIDTH=3030000,RESOLUTION=1280x720,FRAME-RATE=23.976,CODECS="avc1.64001f,mp4a.40.2",AUDIO="aud"
720p/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,AVERAGE-BANDWIDTH=300000,RESOLUTION=1280x720,CODECS="avc1.64001f",URI="720p/iframes.m3u8"
"""


def test_a_ts_rendition_reads_back_as_written() -> None:
    text = write_media_playlist(TS_SEGMENTS, target_duration=6, version=6)
    assert parse_media_playlist(text) == MediaPlaylist(
        target_duration=6,
        segments=TS_SEGMENTS,
        playlist_type="VOD",
        ended=True,
        independent_segments=True,
        version=6,
    )
    assert "#EXTINF:6.006000,\nseg_00000.ts\n" in text  # six decimals, as FFmpeg writes them
    assert text.endswith("#EXT-X-ENDLIST\n")


def test_the_written_media_playlist_is_byte_stable() -> None:
    text = write_media_playlist(TS_SEGMENTS[-1:], target_duration=6, version=6)
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:6\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-TARGETDURATION:6\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n"  # MEDIA-SEQUENCE left out: 0 is its default
        "#EXTINF:1.001000,\n"
        "seg_00002.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    assert write_media_playlist(TS_SEGMENTS[-1:], target_duration=6, version=6) == text


def test_an_fmp4_rendition_names_its_init_segment_once() -> None:
    segments = (Segment("seg_00000.m4s", 4.0), Segment("seg_00001.m4s", 1.0))
    text = write_media_playlist(segments, target_duration=4, version=7, init_uri="init_720p.mp4")
    playlist = parse_media_playlist(text)
    assert playlist.init_uri == "init_720p.mp4"
    assert playlist.version == 7
    assert playlist.segments == segments
    assert text.count("#EXT-X-MAP:") == 1
    assert text.index('#EXT-X-MAP:URI="init_720p.mp4"\n') < text.index("#EXTINF")


def test_ffmpegs_fmp4_playlist_parses() -> None:
    playlist = parse_media_playlist(FFMPEG_FMP4)
    assert playlist.init_uri == "init_av1.mp4"
    assert playlist.version == 7
    assert playlist.target_duration == 4
    assert [s.uri for s in playlist.segments] == ["seg_00000.m4s", "seg_00001.m4s"]
    assert playlist.duration == 5.0
    assert playlist.playlist_type == "VOD" and playlist.ended and playlist.independent_segments
    assert not playlist.iframes_only


def test_an_iframe_playlist_keeps_its_byte_ranges() -> None:
    keyframes = (
        Segment("seg_00000.ts", 6.006, (37_412, 0)),
        Segment("seg_00001.ts", 6.006, (20_116, 0)),
        Segment("seg_00002.ts", 1.001, (9_400, 0)),
    )
    text = write_media_playlist(keyframes, target_duration=6, version=4, iframes_only=True)
    playlist = parse_media_playlist(text)
    assert playlist.iframes_only
    assert playlist.segments == keyframes
    assert "#EXTINF:6.006000,\n#EXT-X-BYTERANGE:37412@0\nseg_00000.ts\n" in text


def test_byte_ranges_inside_one_file_and_an_fmp4_iframe_playlist_read_back() -> None:
    ranges = (Segment("video.m4s", 4.0, (1_000, 720)), Segment("video.m4s", 4.0, (900, 5_000)))
    text = write_media_playlist(
        ranges, target_duration=4, version=7, init_uri="init.mp4", iframes_only=True
    )
    playlist = parse_media_playlist(text)
    assert (playlist.segments, playlist.init_uri, playlist.iframes_only) == (
        ranges,
        "init.mp4",
        True,
    )


def test_a_byte_range_without_offset_follows_the_previous_one() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n"
        "#EXTINF:4,\n#EXT-X-BYTERANGE:1000@720\nvideo.m4s\n"
        "#EXTINF:4,\n#EXT-X-BYTERANGE:900\nvideo.m4s\n"
    )
    assert [s.byterange for s in parse_media_playlist(text).segments] == [(1000, 720), (900, 1720)]
    with pytest.raises(ValueError, match="BYTERANGE without @offset"):
        parse_media_playlist(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n#EXT-X-BYTERANGE:9\na.ts\n"
        )


def test_a_master_with_audio_and_iframe_streams_reads_back_under_hls_names() -> None:
    text = write_master_playlist(
        version=3, audio=AUDIO, variants=VARIANTS, iframe_streams=IFRAME_STREAMS
    )
    master = parse_master_playlist(text)
    assert master.independent_segments
    assert [v.uri for v in master.variants] == ["240p/index.m3u8", "720p/index.m3u8"]
    assert master.variants[-1].attributes == {
        "BANDWIDTH": "3535000",
        "AVERAGE-BANDWIDTH": "3030000",
        "RESOLUTION": "1280x720",
        "FRAME-RATE": "23.976",
        "CODECS": "avc1.64001f,mp4a.40.2",
        "AUDIO": "aud",
    }
    assert master.media == (
        {
            "URI": "audio/index.m3u8",
            "TYPE": "AUDIO",
            "GROUP-ID": "aud",
            "NAME": "Audio",
            "DEFAULT": "YES",
            "AUTOSELECT": "YES",
            "CHANNELS": "2",
        },
    )
    assert master.iframe_streams == (
        {
            "BANDWIDTH": "90000",
            "AVERAGE-BANDWIDTH": "70000",
            "RESOLUTION": "426x240",
            "CODECS": "avc1.4d4015",
            "URI": "240p/iframes.m3u8",
        },
        {
            "BANDWIDTH": "400000",
            "RESOLUTION": "1280x720",
            "CODECS": "avc1.64001f",
            "URI": "720p/iframes.m3u8",
        },
    )


def test_the_written_master_is_byte_stable() -> None:
    text = write_master_playlist(
        version=3, audio=AUDIO, variants=VARIANTS[1:], iframe_streams=IFRAME_STREAMS[1:]
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MEDIA:URI="audio/index.m3u8",TYPE=AUDIO,GROUP-ID="aud",NAME="Audio",'
        'DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2"\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=3535000,AVERAGE-BANDWIDTH=3030000,RESOLUTION=1280x720,"
        'FRAME-RATE=23.976,CODECS="avc1.64001f,mp4a.40.2",AUDIO="aud"\n'
        "720p/index.m3u8\n"
        "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=400000,RESOLUTION=1280x720,"
        'CODECS="avc1.64001f",URI="720p/iframes.m3u8"\n'
    )


def test_a_master_without_audio_has_no_audio_group() -> None:
    video_only = VariantEntry(
        uri="1080p/index.m3u8",
        bandwidth=6_000_000,
        average_bandwidth=5_000_000,
        width=1920,
        height=1080,
        frame_rate=30.0,
        codecs=("hvc1.1.6.L120.90",),
    )
    text = write_master_playlist(version=7, audio=None, variants=[video_only], iframe_streams=[])
    master = parse_master_playlist(text)
    assert master.media == () and master.iframe_streams == ()
    assert master.variants == (
        Variant(
            uri="1080p/index.m3u8",
            attributes={
                "BANDWIDTH": "6000000",
                "AVERAGE-BANDWIDTH": "5000000",
                "RESOLUTION": "1920x1080",
                "FRAME-RATE": "30",  # the library drops the trailing zeros
                "CODECS": "hvc1.1.6.L120.90",
            },
        ),
    )
    assert "AUDIO" not in text


def test_a_hand_written_master_reads_as_before() -> None:
    assert parse_master_playlist(HAND_WRITTEN_MASTER) == MasterPlaylist(
        variants=(
            Variant(
                uri="720p/index.m3u8",
                attributes={
                    "BANDWIDTH": "3535000",
                    "AVERAGE-BANDWIDTH": "3030000",
                    "RESOLUTION": "1280x720",
                    "FRAME-RATE": "23.976",
                    "CODECS": "avc1.64001f,mp4a.40.2",
                    "AUDIO": "aud",
                },
            ),
        ),
        media=(
            {
                "TYPE": "AUDIO",
                "GROUP-ID": "aud",
                "NAME": "Audio",
                "DEFAULT": "YES",
                "AUTOSELECT": "YES",
                "CHANNELS": "2",
                "URI": "audio/index.m3u8",
            },
        ),
        independent_segments=True,
        iframe_streams=(
            {
                "BANDWIDTH": "400000",
                "AVERAGE-BANDWIDTH": "300000",
                "RESOLUTION": "1280x720",
                "CODECS": "avc1.64001f",
                "URI": "720p/iframes.m3u8",
            },
        ),
    )


def test_writers_refuse_what_the_library_would_write_wrong() -> None:
    with pytest.raises(ValueError, match="unknown audio 'aac'"):
        write_master_playlist(
            version=3,
            audio=AUDIO,
            variants=[replace(VARIANTS[0], audio="aac")],
            iframe_streams=[],
        )
    with pytest.raises(ValueError, match="unknown audio"):
        write_master_playlist(version=3, audio=None, variants=VARIANTS, iframe_streams=[])
    with pytest.raises(ValueError, match="no bandwidth"):
        write_master_playlist(
            version=3,
            audio=None,
            variants=[],
            iframe_streams=[IFrameEntry(uri="i.m3u8", bandwidth=0, width=1, height=1, codecs=())],
        )
    with pytest.raises(ValueError, match="at least one segment"):
        write_media_playlist([], target_duration=6, version=6)


def test_parsers_reject_what_is_not_a_playlist() -> None:
    with pytest.raises(ValueError, match="#EXTM3U"):
        parse_media_playlist("<html>not found</html>")
    with pytest.raises(ValueError, match="#EXTM3U"):
        parse_master_playlist("")
    with pytest.raises(ValueError, match="no #EXTINF"):
        parse_media_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\nseg.ts\n")
    with pytest.raises(ValueError, match="no #EXTINF"):
        parse_media_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-BYTERANGE:9@0\nseg.ts\n")
    with pytest.raises(ValueError, match="TARGETDURATION"):
        parse_media_playlist("#EXTM3U\n#EXTINF:6,\nseg.ts\n")
    with pytest.raises(ValueError, match="no #EXT-X-STREAM-INF"):
        parse_master_playlist("#EXTM3U\n720p/index.m3u8\n")
    with pytest.raises(ValueError, match="without URI"):
        parse_media_playlist('#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MAP:BYTERANGE="9@0"\n')
    with pytest.raises(ValueError, match="more than one #EXT-X-MAP"):
        parse_media_playlist(
            '#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MAP:URI="a.mp4"\n#EXTINF:6,\na.m4s\n'
            '#EXT-X-MAP:URI="b.mp4"\n#EXTINF:6,\nb.m4s\n'
        )
    with pytest.raises(ValueError, match="malformed"):
        parse_master_playlist("#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1\n")
