"""HLS output: file layout, bitrate measurement, CODECS from the bitstream and the playlists
we write (through playlists.py, which reads and writes every playlist with the m3u8 library).

The master playlist is written by us, last, from what the encode really produced: peak and
average bitrates measured from the segments (RFC 8216bis definition of the peak) and the
CODECS read from the bitstream: an MPEG-TS rendition's first segment's H.264 SPS, an fMP4
rendition's init segment (avcC, hvcC, av1C, esds: mp4.py), since an encoder may not give what
the plan asked (x264 ultrafast, for one, always yields Constrained Baseline).

fMP4 renditions have an init segment, `init_<rendition>.mp4`, named by EXT-X-MAP; it is not
counted in the segments' bitrates (a player fetches it once).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kube_transcode.codecs import SegmentFormat
from kube_transcode.codecs import planned_codecs as codec_string
from kube_transcode.ladder import AUDIO_RENDITION_NAME, LadderPlan, VideoRendition
from kube_transcode_worker import mp4
from kube_transcode_worker.playlists import (
    AudioGroup,
    IFrameEntry,
    Segment,
    VariantEntry,
    parse_media_playlist,
    write_media_playlist,
)
from kube_transcode_worker.playlists import write_master_playlist as write_master_playlist_text

MASTER_PLAYLIST_NAME = "master.m3u8"
MEDIA_PLAYLIST_NAME = "index.m3u8"
# Beside each video rendition's media playlist: its keyframes only, for scrubbing (trick play).
IFRAME_PLAYLIST_NAME = "iframes.m3u8"
# FFmpeg's pattern for a rendition's init segment (fMP4): %v is the rendition's name.
INIT_PATTERN = "init_%v.mp4"
AUDIO_GROUP_ID = "aud"
AAC_LC_CODECS = "mp4a.40.2"
# RFC 8216 section 7: EXT-X-MAP needs version 6 in a media playlist, 5 in an I-frame one;
# FFmpeg writes 7 for fMP4 (and 3 for MPEG-TS).
FMP4_PLAYLIST_VERSION = 7
FMP4_IFRAME_PLAYLIST_VERSION = 5
TS_IFRAME_PLAYLIST_VERSION = 4


def segment_pattern(segment_format: SegmentFormat) -> str:
    return "seg_%05d.m4s" if segment_format == "fmp4" else "seg_%05d.ts"


_TS_PACKET_SIZE = 188
_TS_SYNC_BYTE = 0x47
_SPS_SEARCH_BYTES = 256 * 1024


@dataclass(frozen=True)
class RenditionStats:
    """Bitrates in bits per second as measured on the produced segments."""

    peak_bps: int
    average_bps: int
    codecs: str | None = field(default=None)
    # Of the I-frame playlist, when every segment's keyframe was found.
    iframe_peak_bps: int | None = field(default=None)
    iframe_average_bps: int | None = field(default=None)


def peak_segment_bitrate(segments: Sequence[tuple[int, float]], target_duration: float) -> int:
    """Peak bit rate of (size_bytes, seconds) segments as RFC 8216bis defines it.

    The largest bit rate of any contiguous run of segments lasting 0.5 to 1.5 target
    durations; a short final segment alone then cannot inflate it. A playlist shorter than
    half a target duration falls back to its average.
    """
    peak = 0.0
    for start in range(len(segments)):
        size = 0
        seconds = 0.0
        for segment_size, segment_seconds in segments[start:]:
            size += segment_size
            seconds += segment_seconds
            if seconds > 1.5 * target_duration:
                break
            if seconds >= 0.5 * target_duration:
                peak = max(peak, size * 8 / seconds)
    if peak == 0.0:
        return average_bitrate(segments)
    return math.ceil(peak)


def average_bitrate(segments: Sequence[tuple[int, float]]) -> int:
    seconds = sum(segment_seconds for _, segment_seconds in segments)
    if seconds <= 0:
        return 0
    return math.ceil(sum(size for size, _ in segments) * 8 / seconds)


def planned_codecs(rendition: VideoRendition) -> str:
    """The CODECS string the plan asks for (used when the bitstream cannot be read)."""
    return codec_string(rendition.codec, rendition.profile, rendition.level)


def _ts_payloads(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(PID, payload) of each MPEG-TS packet, adaptation fields skipped."""
    for offset in range(0, len(data) - _TS_PACKET_SIZE + 1, _TS_PACKET_SIZE):
        packet = data[offset : offset + _TS_PACKET_SIZE]
        if packet[0] != _TS_SYNC_BYTE:
            return
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        adaptation = (packet[3] >> 4) & 0x3
        start = 4
        if adaptation & 0x2:
            start += 1 + packet[4]
        if adaptation & 0x1 and start < _TS_PACKET_SIZE:
            yield pid, packet[start:]


def h264_codecs_from_ts(data: bytes) -> str | None:
    """avc1.PPCCLL from the first H.264 sequence parameter set in MPEG-TS data, if any."""
    elementary: dict[int, bytearray] = {}
    for pid, payload in _ts_payloads(data):
        elementary.setdefault(pid, bytearray()).extend(payload)
    for stream in elementary.values():
        position = stream.find(b"\x00\x00\x01")
        while 0 <= position <= len(stream) - 7:
            header = stream[position + 3]
            if header & 0x80 == 0 and header & 0x1F == 7:
                profile_idc, constraints, level_idc = stream[position + 4 : position + 7]
                return f"avc1.{profile_idc:02x}{constraints:02x}{level_idc:02x}"
            position = stream.find(b"\x00\x00\x01", position + 3)
    return None


def first_frame_bytes(data: bytes) -> int | None:
    """Bytes from a segment's start through its first video frame (whole TS packets).

    A segment starts with the tables (PAT, PMT) and its keyframe; the keyframe's packets end
    where the next video PES begins. That prefix alone decodes to one picture: what an
    I-frame playlist's byte range names. None when the data holds no video PES.
    """
    video_pid: int | None = None
    for offset in range(0, len(data) - _TS_PACKET_SIZE + 1, _TS_PACKET_SIZE):
        packet = data[offset : offset + _TS_PACKET_SIZE]
        if packet[0] != _TS_SYNC_BYTE:
            return None
        if not packet[1] & 0x40:  # payload_unit_start_indicator: a PES (or table) begins
            continue
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        start = 4 + (1 + packet[4] if (packet[3] >> 4) & 0x2 else 0)
        payload = packet[start:]
        is_video_pes = payload[:3] == b"\x00\x00\x01" and 0xE0 <= payload[3] <= 0xEF
        if video_pid is None and is_video_pes:
            video_pid = pid
        elif video_pid is not None and pid == video_pid:
            return offset
    return None if video_pid is None else len(data) - len(data) % _TS_PACKET_SIZE


def _segment_path(rendition_dir: Path, uri: str) -> Path:
    # Our own playlists name plain files beside them; anything else is not ours to read.
    if "/" in uri or "\\" in uri or uri in ("", ".", ".."):
        raise ValueError(f"unexpected segment URI {uri!r} in {rendition_dir}")
    return rendition_dir / uri


class SegmentEntry(BaseModel):
    """A produced segment: its file name beside the playlist, duration and size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    duration: float = Field(gt=0)
    size: int = Field(ge=0)
    # Video: bytes from the start through its first (key)frame, for the I-frame playlist.
    keyframe_bytes: int | None = Field(default=None, gt=0)


class InitSegment(BaseModel):
    """An fMP4 rendition's init segment: its name beside the playlist and its digest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    # Every chunk of a job writes its rendition's init to the same key: the same bytes.
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class RenditionPart(BaseModel):
    """A rendition's segments as one FFmpeg run produced them (a whole run, or a chunk's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_duration: int = Field(ge=1)
    segments: tuple[SegmentEntry, ...]
    codecs: str | None = None
    # fMP4 only.
    init: InitSegment | None = None


def read_rendition(rendition_dir: Path, *, video: bool) -> RenditionPart:
    """A rendition folder's playlist, segment sizes and the CODECS its bitstream shows."""
    playlist = parse_media_playlist((rendition_dir / MEDIA_PLAYLIST_NAME).read_text())
    if not playlist.segments:
        raise ValueError(f"{rendition_dir} has no segments")
    paths = [_segment_path(rendition_dir, segment.uri) for segment in playlist.segments]
    fmp4 = playlist.init_uri is not None
    first_frame = mp4.first_sample_end if fmp4 else first_frame_bytes
    segments = tuple(
        SegmentEntry(
            uri=segment.uri,
            duration=segment.duration,
            size=path.stat().st_size,
            keyframe_bytes=first_frame(path.read_bytes()) if video else None,
        )
        for path, segment in zip(paths, playlist.segments, strict=True)
    )
    init: InitSegment | None = None
    codecs: str | None = AAC_LC_CODECS
    if playlist.init_uri is not None:
        data = _segment_path(rendition_dir, playlist.init_uri).read_bytes()
        init = InitSegment(uri=playlist.init_uri, sha256=hashlib.sha256(data).hexdigest())
        codecs = mp4.codecs_from_init(data)
    elif video:
        with paths[0].open("rb") as first_segment:
            codecs = h264_codecs_from_ts(first_segment.read(_SPS_SEARCH_BYTES))
    return RenditionPart(
        target_duration=playlist.target_duration, segments=segments, codecs=codecs, init=init
    )


def rendition_stats(parts: Sequence[RenditionPart]) -> RenditionStats:
    """Bitrates of a rendition made of these parts, in order; CODECS of the first."""
    segments = [s for part in parts for s in part.segments]
    sizes = [(s.size, s.duration) for s in segments]
    target = max(part.target_duration for part in parts)
    keyframes = [(s.keyframe_bytes, s.duration) for s in segments if s.keyframe_bytes]
    every_keyframe = len(keyframes) == len(segments)
    return RenditionStats(
        peak_bps=peak_segment_bitrate(sizes, target),
        average_bps=average_bitrate(sizes),
        codecs=parts[0].codecs,
        iframe_peak_bps=peak_segment_bitrate(keyframes, target) if every_keyframe else None,
        iframe_average_bps=average_bitrate(keyframes) if every_keyframe else None,
    )


def iframe_playlist(parts: Sequence[RenditionPart]) -> str | None:
    """The I-frame playlist of a video rendition: each segment's keyframe as a byte range.

    Every segment starts with a keyframe (forced at every boundary) and holds no other
    (x264's GOP is the segment's length), so a segment's keyframe shows until the next
    segment's: each I-frame lasts its segment. None when a keyframe's extent is unknown.
    """
    segments = [s for part in parts for s in part.segments]
    ranges = [(s.uri, s.duration, s.keyframe_bytes) for s in segments]
    if not ranges or any(length is None for _, _, length in ranges):
        return None
    init = parts[0].init
    return write_media_playlist(
        [Segment(uri, duration, byterange=(length or 0, 0)) for uri, duration, length in ranges],
        target_duration=max(part.target_duration for part in parts),
        version=TS_IFRAME_PLAYLIST_VERSION if init is None else FMP4_IFRAME_PLAYLIST_VERSION,
        init_uri=None if init is None else init.uri,
        iframes_only=True,
    )


def measure_rendition(rendition_dir: Path, *, video: bool) -> RenditionStats:
    """Bitrates of one rendition from its playlist and segment sizes; codecs for video."""
    return rendition_stats([read_rendition(rendition_dir, video=video)])


def master_playlist(plan: LadderPlan, stats: Mapping[str, RenditionStats]) -> str:
    """Pure: the master playlist text, variants listed from the lowest bandwidth up."""
    audio = stats[AUDIO_RENDITION_NAME] if plan.audio else None
    group = None
    if plan.audio:
        group = AudioGroup(
            group_id=AUDIO_GROUP_ID,
            name="Audio",
            channels=plan.audio.channels,
            uri=f"{AUDIO_RENDITION_NAME}/{MEDIA_PLAYLIST_NAME}",
        )
    variants: list[VariantEntry] = []
    for rendition in plan.renditions:
        video = stats[rendition.name]
        codecs = [video.codecs or planned_codecs(rendition)]
        # BANDWIDTH covers every rendition a player fetches at once: video plus its audio.
        peak, average = video.peak_bps, video.average_bps
        if audio:
            codecs.append(audio.codecs or AAC_LC_CODECS)
            peak, average = peak + audio.peak_bps, average + audio.average_bps
        variants.append(
            VariantEntry(
                uri=f"{rendition.name}/{MEDIA_PLAYLIST_NAME}",
                bandwidth=peak,
                average_bandwidth=average,
                width=rendition.width,
                height=rendition.height,
                frame_rate=round(float(rendition.fps), 3),
                codecs=tuple(codecs),
                audio=AUDIO_GROUP_ID if audio else None,
            )
        )
    iframes = [
        IFrameEntry(
            uri=f"{rendition.name}/{IFRAME_PLAYLIST_NAME}",
            bandwidth=stats[rendition.name].iframe_peak_bps or 0,
            average_bandwidth=stats[rendition.name].iframe_average_bps,
            width=rendition.width,
            height=rendition.height,
            codecs=(stats[rendition.name].codecs or planned_codecs(rendition),),
        )
        for rendition in plan.renditions
        if stats[rendition.name].iframe_peak_bps is not None
    ]
    return write_master_playlist_text(
        # The media playlists' version: FFmpeg's 7 for fMP4, 3 for MPEG-TS.
        version=FMP4_PLAYLIST_VERSION if plan.fmp4 else 3,
        audio=group,
        variants=sorted(variants, key=lambda variant: variant.bandwidth),
        iframe_streams=sorted(iframes, key=lambda stream: stream.bandwidth),
    )


def write_master_playlist(out_dir: Path, plan: LadderPlan) -> Path:
    """Measure every rendition under out_dir and write master.m3u8 there (atomically), after
    each video rendition's I-frame playlist."""
    stats = {}
    for rendition in plan.renditions:
        video = read_rendition(out_dir / rendition.name, video=True)
        stats[rendition.name] = rendition_stats([video])
        iframes = iframe_playlist([video])
        if iframes is not None:
            (out_dir / rendition.name / IFRAME_PLAYLIST_NAME).write_text(iframes)
    if plan.audio:
        stats[AUDIO_RENDITION_NAME] = measure_rendition(out_dir / AUDIO_RENDITION_NAME, video=False)
    master = out_dir / MASTER_PLAYLIST_NAME
    partial = master.with_suffix(".m3u8.partial")
    partial.write_text(master_playlist(plan, stats))
    partial.replace(master)
    return master
