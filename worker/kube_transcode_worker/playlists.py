"""HLS playlists read and written through the m3u8 library (globocom/m3u8), and only here.

Hand-written, because the library does not do it:
- refusing bad input: it reads any text (no #EXTM3U check), silently drops a URI line that
  has no EXTINF or EXT-X-STREAM-INF before it, and lets EXT-X-TARGETDURATION be missing;
- EXT-X-BYTERANGE as (length, offset): it keeps the tag's text, "length[@offset]";
- attribute dicts under their HLS names with text values: it gives snake_case names and
  typed values (FRAME-RATE comes back as it writes it: 3 decimals, trailing zeros dropped).

Its writer differs from a hand-written one only where RFC 8216 lets it: EXT-X-MEDIA-SEQUENCE:0
is left out (0 is the default), header tags come in its order, EXT-X-MEDIA names URI first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import m3u8

_MEDIA_TAG = "#EXTINF"
_VARIANT_TAG = "#EXT-X-STREAM-INF"


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    # EXT-X-BYTERANGE as (length, offset) in bytes: a part of the file at uri.
    byterange: tuple[int, int] | None = None


@dataclass(frozen=True)
class MediaPlaylist:
    target_duration: int
    segments: tuple[Segment, ...]
    playlist_type: str | None
    ended: bool
    independent_segments: bool
    version: int | None = None
    # EXT-X-MAP's URI: the fragmented MP4 initialization segment every segment needs.
    init_uri: str | None = None
    iframes_only: bool = False

    @property
    def duration(self) -> float:
        return sum(segment.duration for segment in self.segments)


@dataclass(frozen=True)
class Variant:
    uri: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class MasterPlaylist:
    variants: tuple[Variant, ...]
    media: tuple[dict[str, str], ...]
    independent_segments: bool
    # EXT-X-I-FRAME-STREAM-INF attributes (URI among them), one per I-frame playlist.
    iframe_streams: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class AudioGroup:
    """The one audio rendition of a master playlist, default and auto-selected."""

    group_id: str
    name: str
    channels: int
    uri: str


@dataclass(frozen=True, kw_only=True)
class VariantEntry:
    uri: str
    bandwidth: int
    average_bandwidth: int
    width: int
    height: int
    frame_rate: float
    codecs: tuple[str, ...]
    # The AudioGroup's group_id when the variant plays with it.
    audio: str | None = None


@dataclass(frozen=True, kw_only=True)
class IFrameEntry:
    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    width: int
    height: int
    codecs: tuple[str, ...]


def parse_media_playlist(text: str) -> MediaPlaylist:
    data = _parse(text, uri_tag=_MEDIA_TAG, what="segment")
    target_duration = data.get("targetduration")
    if target_duration is None:
        raise ValueError("media playlist has no #EXT-X-TARGETDURATION")
    segments: list[Segment] = []
    for entry in data["segments"]:
        previous = segments[-1] if segments else None
        uri = str(entry["uri"])
        byterange = _byterange(entry.get("byterange"), uri, previous)
        segments.append(Segment(uri=uri, duration=float(entry["duration"]), byterange=byterange))
    init_uris = {segment_map.get("uri") for segment_map in data["segment_map"]}
    if None in init_uris:
        raise ValueError("media playlist has an #EXT-X-MAP without URI")
    if len(init_uris) > 1:
        raise ValueError(f"media playlist has more than one #EXT-X-MAP: {sorted(init_uris)}")
    playlist_type = data.get("playlist_type")
    version = data.get("version")
    return MediaPlaylist(
        target_duration=int(target_duration),
        segments=tuple(segments),
        playlist_type=None if playlist_type is None else str(playlist_type).upper(),
        ended=bool(data["is_endlist"]),
        independent_segments=bool(data["is_independent_segments"]),
        version=None if version is None else int(version),
        init_uri=next((str(uri) for uri in init_uris), None),
        iframes_only=bool(data["is_i_frames_only"]),
    )


def parse_master_playlist(text: str) -> MasterPlaylist:
    data = _parse(text, uri_tag=_VARIANT_TAG, what="variant")
    return MasterPlaylist(
        variants=tuple(
            Variant(uri=str(entry["uri"]), attributes=_attributes(entry["stream_info"]))
            for entry in data["playlists"]
        ),
        media=tuple(_attributes(entry) for entry in data["media"]),
        independent_segments=bool(data["is_independent_segments"]),
        iframe_streams=tuple(
            {**_attributes(entry["iframe_stream_info"]), "URI": str(entry["uri"])}
            for entry in data["iframe_playlists"]
        ),
    )


def write_media_playlist(
    segments: Sequence[Segment],
    *,
    target_duration: int,
    version: int,
    init_uri: str | None = None,
    iframes_only: bool = False,
) -> str:
    """A finished VOD playlist of these segments, numbered from 0, EXTINF to the microsecond."""
    if not segments:
        raise ValueError("a media playlist needs at least one segment")
    playlist = m3u8.M3U8()
    playlist.version = version
    playlist.target_duration = target_duration
    playlist.media_sequence = 0
    playlist.playlist_type = "vod"
    playlist.is_independent_segments = True
    playlist.is_i_frames_only = iframes_only
    playlist.is_endlist = True
    init_section = None if init_uri is None else {"uri": init_uri}
    for segment in segments:
        byterange = None
        if segment.byterange is not None:
            length, offset = segment.byterange
            byterange = f"{length}@{offset}"
        playlist.add_segment(
            m3u8.Segment(
                uri=segment.uri,
                duration=segment.duration,
                byterange=byterange,
                init_section=init_section,
            )
        )
    text: str = playlist.dumps(infspec="microseconds")
    return text


def write_master_playlist(
    *,
    version: int,
    audio: AudioGroup | None,
    variants: Sequence[VariantEntry],
    iframe_streams: Sequence[IFrameEntry],
) -> str:
    """The master playlist: the audio group, then variants and I-frame streams as given."""
    master = m3u8.M3U8()
    master.version = version
    master.is_independent_segments = True
    if audio is not None:
        master.add_media(
            m3u8.Media(
                uri=audio.uri,
                type="AUDIO",
                group_id=audio.group_id,
                name=audio.name,
                default="YES",
                autoselect="YES",
                channels=str(audio.channels),
            )
        )
    for variant in variants:
        stream_info: dict[str, Any] = {
            "bandwidth": variant.bandwidth,
            "average_bandwidth": variant.average_bandwidth,
            "resolution": f"{variant.width}x{variant.height}",
            "frame_rate": variant.frame_rate,
            "codecs": ",".join(variant.codecs),
        }
        if variant.audio is not None:
            # The library writes AUDIO only for a group it holds: naming another is our bug.
            if audio is None or variant.audio != audio.group_id:
                raise ValueError(f"variant {variant.uri!r} names unknown audio {variant.audio!r}")
            stream_info["audio"] = variant.audio
        playlist = m3u8.Playlist(
            uri=variant.uri, stream_info=stream_info, media=master.media, base_uri=None
        )
        master.add_playlist(playlist)
    for stream in iframe_streams:
        # The library leaves out a zero BANDWIDTH, and the attribute is required.
        if stream.bandwidth < 1:
            raise ValueError(f"I-frame stream {stream.uri!r} has no bandwidth")
        master.add_iframe_playlist(
            m3u8.IFramePlaylist(
                base_uri=None,
                uri=stream.uri,
                iframe_stream_info={
                    "bandwidth": stream.bandwidth,
                    "average_bandwidth": stream.average_bandwidth,
                    "resolution": f"{stream.width}x{stream.height}",
                    "codecs": ",".join(stream.codecs),
                },
            )
        )
    text: str = master.dumps()
    return text


def _parse(text: str, *, uri_tag: str, what: str) -> dict[str, Any]:
    """The library's reading of text, after the checks it does not make."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an HLS playlist: the first line must be #EXTM3U")
    pending = False
    for line in lines[1:]:
        if line.startswith(f"{uri_tag}:"):
            pending = True
        elif not line.startswith("#"):
            if not pending:
                raise ValueError(f"{what} {line!r} has no {uri_tag} before it")
            pending = False
    try:
        data: dict[str, Any] = m3u8.parse(text)
    except (KeyError, IndexError) as exc:  # e.g. EXT-X-I-FRAME-STREAM-INF without URI
        raise ValueError(f"malformed playlist: missing {exc}") from exc
    return data


def _byterange(text: str | None, uri: str, previous: Segment | None) -> tuple[int, int] | None:
    if text is None:
        return None
    length, at, offset = str(text).partition("@")
    if at:
        return int(length), int(offset)
    # RFC 8216 4.3.2.2: without an offset the range follows the previous one, in the same file.
    if previous is None or previous.byterange is None or previous.uri != uri:
        raise ValueError(f"segment {uri!r}: a BYTERANGE without @offset follows no range of it")
    return int(length), sum(previous.byterange)


def _attributes(parsed: Mapping[str, Any]) -> dict[str, str]:
    """The library's attributes (group_id: "aud") under their HLS names (GROUP-ID: "aud")."""
    return {name.replace("_", "-").upper(): _text(value) for name, value in parsed.items()}


def _text(value: Any) -> str:
    if isinstance(value, float):  # FRAME-RATE, the one decimal attribute it converts
        return f"{round(value, 3):g}"
    # It unquotes the attributes it knows only; the rest keep their quotes.
    return str(value).strip('"')
