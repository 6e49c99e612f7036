"""A checker of Apple's HLS authoring rules on a produced ladder, measured from its bytes.

It reads a ladder as relative path -> bytes (a folder: `check_folder`) and returns the
violations; an empty list passes. The rules, each a `Rule`:

- master: `EXT-X-INDEPENDENT-SEGMENTS`; every `EXT-X-STREAM-INF` has BANDWIDTH,
  AVERAGE-BANDWIDTH, RESOLUTION, FRAME-RATE and CODECS; an AUDIO group it names exists as
  `EXT-X-MEDIA`; every playlist and segment it names exists.
- measured: BANDWIDTH (peak, RFC 8216bis as `hls.peak_segment_bitrate` defines it) and
  AVERAGE-BANDWIDTH within 10 % of the segments' (video plus the group's largest audio
  rendition); CODECS are the first segment's SPS (`hls.h264_codecs_from_ts`) and the audio's
  ADTS object type (mp4a.40.2 for AAC-LC); RESOLUTION is the SPS's cropped size; FRAME-RATE
  the PES timestamps' mean frame rate.
- media playlists: VOD with ENDLIST; TARGETDURATION >= every EXTINF rounded; no segment (its
  EXTINF, and for all but the last the distance between its first timestamp and the next
  segment's) longer than the target by more than 0.5 s; every video segment starts with a
  keyframe (its first video PES is an IDR, or has the random-access indicator); the video
  renditions have the same segment count and boundaries.
- I-frame playlists (`EXT-X-I-FRAME-STREAM-INF`): the attributes, `EXT-X-I-FRAMES-ONLY`, VOD,
  a BYTERANGE on every entry inside its segment, starting on a packet with a keyframe's PES,
  and the bandwidths measured from the byte ranges.
- fMP4 (CMAF) renditions, the same rules measured from boxes (`kube_transcode_worker.mp4`):
  `EXT-X-MAP` names an init segment that exists, with `EXT-X-VERSION` >= 6 (>= 5 in an I-frame
  playlist: RFC 8216 section 7); CODECS are each init's sample entry (avc1, hvc1, av01,
  mp4a); RESOLUTION the visual sample entry's size; FRAME-RATE the samples' mean duration;
  segment start and length are the fragments' decode time and durations (as PES timestamps for
  TS); every video segment's first sample is a sync sample. Bitrates count media segments
  only: the init segment is fetched once, not with every segment. An fMP4 I-frame entry is
  `EXT-X-MAP` plus a BYTERANGE from byte 0 to at least the first sample's end.
- Several codecs (H.264, HEVC, AV1 variants of the same rungs, fMP4 only): every video
  rendition, whatever its codec, has the same segment boundaries.

MPEG-TS with H.264 and AAC (ADTS), and fMP4 with H.264, HEVC, AV1 and AAC, parsed here without
FFmpeg. A rendition is fMP4 when its playlist has `EXT-X-MAP` or its first segment is not TS.
TS streams are told apart by PES stream_id (0xE0-0xEF video, 0xC0-0xDF audio), which is what
FFmpeg's muxer writes; an fMP4 segment holds one track.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from kube_transcode_worker import mp4
from kube_transcode_worker.hls import (
    MASTER_PLAYLIST_NAME,
    average_bitrate,
    h264_codecs_from_ts,
    peak_segment_bitrate,
)
from kube_transcode_worker.playlists import (
    MediaPlaylist,
    Variant,
    parse_master_playlist,
    parse_media_playlist,
)

BANDWIDTH_TOLERANCE = 0.10
SEGMENT_OVERRUN_SECONDS = 0.5
FRAME_RATE_TOLERANCE = 0.005
BOUNDARY_TOLERANCE_SECONDS = 0.01
# RFC 8216 section 7: the lowest EXT-X-VERSION for EXT-X-MAP (media, I-frames-only playlists).
MAP_VERSION = 6
I_FRAME_MAP_VERSION = 5
REQUIRED_STREAM_INF = ("BANDWIDTH", "AVERAGE-BANDWIDTH", "RESOLUTION", "FRAME-RATE", "CODECS")
# RFC 8216bis: BANDWIDTH, URI; Apple: CODECS, RESOLUTION. AVERAGE-BANDWIDTH is checked if there.
REQUIRED_I_FRAME_STREAM_INF = ("BANDWIDTH", "RESOLUTION", "CODECS", "URI")

_TS_PACKET_SIZE = 188
_TS_SYNC_BYTE = 0x47
_PTS_HZ = 90_000
_NAL_IDR = 5
_NAL_SPS = 7
_START_CODE = re.compile(b"\x00\x00\x01")
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


class Rule(StrEnum):
    MISSING = "missing"  # a playlist or segment that is named is not in the ladder
    SYNTAX = "syntax"  # a playlist that does not parse
    INDEPENDENT_SEGMENTS = "independent-segments"
    ATTRIBUTE = "attribute"  # a required attribute is absent
    AUDIO_GROUP = "audio-group"
    PEAK_BANDWIDTH = "peak-bandwidth"
    AVERAGE_BANDWIDTH = "average-bandwidth"
    CODECS = "codecs"
    RESOLUTION = "resolution"
    FRAME_RATE = "frame-rate"
    VOD = "vod"
    TARGET_DURATION = "target-duration"
    SEGMENT_DURATION = "segment-duration"
    KEYFRAME = "keyframe"
    ALIGNED = "aligned"
    I_FRAMES_ONLY = "i-frames-only"
    BYTE_RANGE = "byte-range"
    MAP = "map"  # an fMP4 playlist without EXT-X-MAP, or an init segment that does not parse
    VERSION = "version"  # EXT-X-VERSION too low for a tag the playlist uses


@dataclass(frozen=True)
class Violation:
    rule: Rule
    where: str  # the playlist or segment, relative to the ladder
    declared: str
    measured: str

    def __str__(self) -> str:
        return f"{self.rule} in {self.where}: declared {self.declared}, measured {self.measured}"


@dataclass(frozen=True)
class TsFacts:
    """What one MPEG-TS segment (or byte range of one) shows."""

    video_pts: tuple[int, ...] = ()
    audio_pts: tuple[int, ...] = ()
    first_video_keyframe: bool | None = None  # None: no video in it
    resolution: tuple[int, int] | None = None  # from the first SPS, cropped
    audio_codecs: str | None = None  # mp4a.40.<object type> from the first ADTS header


@dataclass
class _Pes:
    pid: int
    stream_id: int
    random_access: bool
    data: bytearray = field(default_factory=bytearray)

    def pts(self) -> int | None:
        if len(self.data) < 14 or not self.data[7] & 0x80:
            return None
        b = self.data
        return (
            ((b[9] >> 1) & 0x07) << 30 | b[10] << 22 | (b[11] >> 1) << 15 | b[12] << 7 | b[13] >> 1
        )

    def payload(self) -> bytes:
        return bytes(self.data[9 + self.data[8] :]) if len(self.data) > 9 else b""

    @property
    def video(self) -> bool:
        return self.stream_id & 0xF0 == 0xE0

    @property
    def audio(self) -> bool:
        return 0xC0 <= self.stream_id <= 0xDF


def _pes_units(data: bytes) -> tuple[list[_Pes], set[int]]:
    """The PES packets in data, and the PIDs whose first packet continues an earlier PES."""
    units: list[_Pes] = []
    current: dict[int, _Pes] = {}
    headless: set[int] = set()
    seen: set[int] = set()
    for offset in range(0, len(data) - _TS_PACKET_SIZE + 1, _TS_PACKET_SIZE):
        packet = data[offset : offset + _TS_PACKET_SIZE]
        if packet[0] != _TS_SYNC_BYTE:
            break
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        unit_start = bool(packet[1] & 0x40)
        adaptation = (packet[3] >> 4) & 0x3
        start, random_access = 4, False
        if adaptation & 0x2:
            random_access = packet[4] > 0 and bool(packet[5] & 0x40)
            start += 1 + packet[4]
        payload = packet[start:] if adaptation & 0x1 and start < _TS_PACKET_SIZE else b""
        first_of_pid = pid not in seen
        seen.add(pid)
        if unit_start and payload[:3] == b"\x00\x00\x01" and len(payload) > 3:
            current[pid] = _Pes(pid, payload[3], random_access, bytearray(payload))
            units.append(current[pid])
        elif unit_start:
            current.pop(pid, None)  # a table (PAT, PMT), not a PES
        elif pid in current:
            current[pid].data.extend(payload)
        elif first_of_pid:
            headless.add(pid)
    return units, headless


def _nal_units(stream: bytes) -> Iterator[bytes]:
    """The NAL units of an H.264 Annex B byte stream (trailing zero bytes kept)."""
    starts = [match.end() for match in _START_CODE.finditer(stream)]
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(stream)
        if start < end:
            yield stream[start:end]


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = re.sub(b"\x00\x00\x03", b"\x00\x00", data)  # emulation prevention
        self.position = 0

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self.data[self.position >> 3]
            value = (value << 1) | ((byte >> (7 - (self.position & 7))) & 1)
            self.position += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def sps_resolution(sps: bytes) -> tuple[int, int]:
    """(width, height) a decoder outputs for this SPS NAL unit (header byte included).

    Raises IndexError when the NAL unit is cut short.
    """
    bits = _Bits(sps[1:])
    profile_idc = bits.bits(8)
    bits.bits(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            bits.bits(1)  # separate_colour_plane_flag
        bits.ue(), bits.ue()  # bit depths
        bits.bits(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.bits(1):  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if bits.bits(1):
                    last = following = 8
                    for _ in range(16 if index < 6 else 64):
                        if following:
                            following = (last + bits.se() + 256) % 256
                        last = following or last
    bits.ue()  # log2_max_frame_num_minus4
    pic_order_cnt_type = bits.ue()
    if pic_order_cnt_type == 0:
        bits.ue()
    elif pic_order_cnt_type == 1:
        bits.bits(1)
        bits.se(), bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue(), bits.bits(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.bits(1)
    if not frame_mbs_only:
        bits.bits(1)  # mb_adaptive_frame_field_flag
    bits.bits(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if bits.bits(1):
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    sub_width, sub_height = {0: (1, 1), 1: (2, 2), 2: (2, 1)}.get(chroma_format_idc, (1, 1))
    crop_x, crop_y = sub_width, sub_height * (2 - frame_mbs_only)
    if chroma_format_idc == 0:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = height_map_units * 16 * (2 - frame_mbs_only) - crop_y * (crop[2] + crop[3])
    return width, height


def _is_keyframe(unit: _Pes) -> bool:
    return unit.random_access or any(
        nal[0] & 0x1F == _NAL_IDR for nal in _nal_units(unit.payload()) if nal
    )


def _first_resolution(units: Sequence[_Pes]) -> tuple[int, int] | None:
    for unit in units:
        for nal in _nal_units(unit.payload()):
            if nal and nal[0] & 0x1F == _NAL_SPS:
                try:
                    return sps_resolution(nal)
                except IndexError:
                    return None
    return None


def _adts_codecs(units: Sequence[_Pes]) -> str | None:
    for unit in units:
        payload = unit.payload()
        if len(payload) >= 3 and payload[0] == 0xFF and payload[1] & 0xF0 == 0xF0:
            return f"mp4a.40.{((payload[2] >> 6) & 0x3) + 1}"
    return None


def ts_facts(data: bytes) -> TsFacts:
    units, headless = _pes_units(data)
    video = [unit for unit in units if unit.video]
    audio = [unit for unit in units if unit.audio]
    keyframe: bool | None = None
    if video:
        keyframe = video[0].pid not in headless and _is_keyframe(video[0])
    return TsFacts(
        video_pts=tuple(pts for unit in video if (pts := unit.pts()) is not None),
        audio_pts=tuple(pts for unit in audio if (pts := unit.pts()) is not None),
        first_video_keyframe=keyframe,
        resolution=_first_resolution(video[:8]),
        audio_codecs=_adts_codecs(audio[:1]),
    )


@dataclass(frozen=True)
class _Segment:
    path: str
    duration: float
    size: int
    facts: TsFacts
    data: bytes
    fragments: tuple[mp4.Fragment, ...] = ()  # fMP4 only


@dataclass(frozen=True)
class _Init:
    """An fMP4 rendition's init segment, what its sample entry says."""

    path: str
    data: bytes
    timescale: int

    @property
    def codecs(self) -> str | None:
        codecs = mp4.codecs_from_init(self.data)
        return codecs.lower() if codecs else None

    @property
    def resolution(self) -> tuple[int, int] | None:
        return mp4.resolution(self.data)


@dataclass(frozen=True)
class _Rendition:
    path: str
    playlist: MediaPlaylist
    segments: tuple[_Segment, ...]
    init: _Init | None = None  # fMP4 only

    def sizes(self) -> list[tuple[int, float]]:
        return [(segment.size, segment.duration) for segment in self.segments]

    def peak_bps(self) -> int:
        return peak_segment_bitrate(self.sizes(), self.playlist.target_duration)

    def average_bps(self) -> int:
        return average_bitrate(self.sizes())

    def starts(self) -> list[float | None]:
        """Each segment's first timestamp in seconds (video if it has video, else audio; fMP4:
        the first fragment's decode time)."""
        if self.init is not None:
            scale = self.init.timescale
            return [
                s.fragments[0].decode_time / scale if s.fragments else None for s in self.segments
            ]
        return [
            min(s.facts.video_pts or s.facts.audio_pts) / _PTS_HZ
            if s.facts.video_pts or s.facts.audio_pts
            else None
            for s in self.segments
        ]

    def lasted(self, segment: _Segment) -> float:
        """An fMP4 segment's samples' durations in seconds; 0 for TS."""
        if self.init is None:
            return 0.0
        return sum(fragment.duration for fragment in segment.fragments) / self.init.timescale

    def audio_codecs(self) -> str:
        if self.init is not None:
            return self.init.codecs or "no codecs in the init segment"
        return self.segments[0].facts.audio_codecs or "no ADTS"

    def frame_rate(self) -> float | None:
        if self.init is not None:
            samples = sum(f.samples for s in self.segments for f in s.fragments)
            seconds = sum(self.lasted(segment) for segment in self.segments)
            return samples / seconds if samples and seconds else None
        pts = sorted({p for segment in self.segments for p in segment.facts.video_pts})
        if len(pts) < 2 or pts[-1] == pts[0]:
            return None
        return _PTS_HZ * (len(pts) - 1) / (pts[-1] - pts[0])


def _resolve(base: str, uri: str) -> str | None:
    """uri relative to the playlist at base, as a ladder path; None when it leaves the ladder."""
    if "://" in uri or uri.startswith("/"):
        return None
    path = posixpath.normpath(posixpath.join(posixpath.dirname(base), uri))
    return None if path.startswith("..") else path


def _within(declared: int, measured: int) -> bool:
    return abs(declared - measured) <= BANDWIDTH_TOLERANCE * measured


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


class _Audit:
    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files
        self.found: list[Violation] = []

    def report(self, rule: Rule, where: str, declared: object, measured: object) -> None:
        self.found.append(Violation(rule, where, str(declared), str(measured)))

    def read(self, base: str, uri: str) -> tuple[str, bytes] | None:
        path = _resolve(base, uri)
        if path is None or path not in self.files:
            self.report(Rule.MISSING, base, uri, "not in the ladder")
            return None
        return path, self.files[path]

    def master(self, path: str) -> None:
        if path not in self.files:
            self.report(Rule.MISSING, path, path, "not in the ladder")
            return
        text = self.files[path].decode(errors="replace")
        try:
            master = parse_master_playlist(text)
        except ValueError as error:
            self.report(Rule.SYNTAX, path, "a master playlist", error)
            return
        if not master.independent_segments:
            self.report(Rule.INDEPENDENT_SEGMENTS, path, "absent", "required")
        # A group with an unreadable rendition is None: what it adds cannot be measured.
        audio: dict[str, list[_Rendition] | None] = {}
        for media in (media for media in master.media if media.get("TYPE") == "AUDIO"):
            group_id = media.get("GROUP-ID", "")
            group = audio.setdefault(group_id, [])
            if "URI" in media:  # without one, the audio is in the variants' own segments
                rendition = self.rendition(path, media["URI"], video=False)
                if rendition is None:
                    audio[group_id] = None
                elif group is not None:
                    group.append(rendition)
        videos = [self.variant(path, variant, audio) for variant in master.variants]
        self.aligned([video for video in videos if video is not None])
        for attributes in master.iframe_streams:
            self.i_frame_variant(path, attributes)

    def variant(
        self, master: str, variant: Variant, audio: Mapping[str, Sequence[_Rendition] | None]
    ) -> _Rendition | None:
        attributes = variant.attributes
        where = f"{master} ({variant.uri})"
        for name in REQUIRED_STREAM_INF:
            if name not in attributes:
                self.report(Rule.ATTRIBUTE, where, f"no {name}", "required")
        group: Sequence[_Rendition] | None = ()
        if "AUDIO" in attributes:
            if attributes["AUDIO"] not in audio:
                self.report(Rule.AUDIO_GROUP, where, attributes["AUDIO"], "no such EXT-X-MEDIA")
            group = audio.get(attributes["AUDIO"])
        video = self.rendition(master, variant.uri, video=True)
        if video is None:
            return None
        first = video.segments[0]
        if group is not None:
            self.measured_attributes(where, attributes, video, group)
        resolution = video.init.resolution if video.init else first.facts.resolution
        if "RESOLUTION" in attributes and resolution:
            size = "{}x{}".format(*resolution)
            if attributes["RESOLUTION"] != size:
                self.report(Rule.RESOLUTION, where, attributes["RESOLUTION"], size)
        fps = video.frame_rate()
        if "FRAME-RATE" in attributes and fps is not None:
            declared = attributes["FRAME-RATE"]
            try:
                declared_fps = float(declared)
                declared = f"{declared_fps:.3f}"  # as written: the m3u8 library drops zeros
            except ValueError:
                declared_fps = math.nan
            if not abs(declared_fps - fps) <= FRAME_RATE_TOLERANCE:
                self.report(Rule.FRAME_RATE, where, declared, f"{fps:.3f}")
        return video

    def measured_attributes(
        self,
        where: str,
        attributes: Mapping[str, str],
        video: _Rendition,
        audio: Sequence[_Rendition],
    ) -> None:
        """BANDWIDTH, AVERAGE-BANDWIDTH and CODECS of a variant, its audio group's added."""
        peak = video.peak_bps() + max((a.peak_bps() for a in audio), default=0)
        average = video.average_bps() + max((a.average_bps() for a in audio), default=0)
        self.bandwidths(where, attributes, peak, average)
        first = video.segments[0]
        if video.init is not None:
            measured = [video.init.codecs or "no codecs in the init segment"]
        else:
            measured = [h264_codecs_from_ts(first.data) or "no SPS in the first segment"]
        measured += [a.audio_codecs() for a in audio[:1]]
        if first.facts.audio_codecs:
            measured.append(first.facts.audio_codecs)
        if "CODECS" in attributes:
            declared = [codec.strip().lower() for codec in attributes["CODECS"].split(",")]
            if sorted(declared) != sorted(measured):
                self.report(Rule.CODECS, where, attributes["CODECS"], ",".join(measured))

    def bandwidths(
        self, where: str, attributes: Mapping[str, str], peak: int, average: int
    ) -> None:
        for name, rule, measured in (
            ("BANDWIDTH", Rule.PEAK_BANDWIDTH, peak),
            ("AVERAGE-BANDWIDTH", Rule.AVERAGE_BANDWIDTH, average),
        ):
            if name in attributes:
                declared = attributes[name]
                if not (declared.isdigit() and _within(int(declared), measured)):
                    self.report(rule, where, declared, measured)

    def rendition(self, master: str, uri: str, *, video: bool) -> _Rendition | None:
        found = self.read(master, uri)
        if found is None:
            return None
        path, data = found
        text = data.decode(errors="replace")
        try:
            playlist = parse_media_playlist(text)
        except ValueError as error:
            self.report(Rule.SYNTAX, path, "a media playlist", error)
            return None
        self.vod(path, playlist)
        read: list[tuple[float, str, bytes]] = []
        for entry in playlist.segments:
            segment = self.read(path, entry.uri)
            if segment is None:
                return None
            read.append((entry.duration, *segment))
        fmp4, init = self.init(path, playlist, read[0][2] if read else None, i_frames=False)
        if fmp4 and init is None:
            return None  # reported: without its init segment an fMP4 rendition is unmeasurable
        segments: list[_Segment] = []
        for duration, segment_path, segment_data in read:
            size = len(segment_data)
            if fmp4:
                fragments = tuple(mp4.fragments(segment_data))
                segments.append(
                    _Segment(segment_path, duration, size, TsFacts(), segment_data, fragments)
                )
                keyframe = bool(fragments) and fragments[0].starts_with_sync
            else:
                facts = ts_facts(segment_data)
                segments.append(_Segment(segment_path, duration, size, facts, segment_data))
                keyframe = facts.first_video_keyframe is True
            if video and not keyframe:
                self.report(Rule.KEYFRAME, segment_path, "a segment", "no keyframe first")
        if not segments:
            self.report(Rule.VOD, path, "no segments", "at least one")
            return None
        rendition = _Rendition(path, playlist, tuple(segments), init)
        self.durations(rendition)
        return rendition

    def init(
        self, path: str, playlist: MediaPlaylist, first_segment: bytes | None, *, i_frames: bool
    ) -> tuple[bool, _Init | None]:
        """Whether the playlist at path is fMP4, and its init segment when that is readable."""
        uri = playlist.init_uri
        boxes = first_segment is not None and first_segment[:1] != bytes([_TS_SYNC_BYTE])
        if uri is None and not boxes:
            return False, None
        if uri is None:
            self.report(Rule.MAP, path, "no EXT-X-MAP", "fMP4 segments, which need an init")
            return True, None
        needed = I_FRAME_MAP_VERSION if i_frames else MAP_VERSION
        version = playlist.version or 1  # RFC 8216 4.3.1.2: 1 when absent
        if version < needed:
            self.report(
                Rule.VERSION, path, f"EXT-X-VERSION {version}", f">= {needed} for EXT-X-MAP"
            )
        found = self.read(path, uri)
        if found is None:
            return True, None
        init_path, init_data = found
        scale = mp4.timescale(init_data)
        if scale is None or mp4.codecs_from_init(init_data) is None:
            self.report(Rule.MAP, init_path, "an init segment", "no readable track in it")
            return True, None
        return True, _Init(init_path, init_data, scale)

    def vod(self, path: str, playlist: MediaPlaylist) -> None:
        if playlist.playlist_type != "VOD":
            self.report(Rule.VOD, path, f"PLAYLIST-TYPE {playlist.playlist_type}", "VOD")
        if not playlist.ended:
            self.report(Rule.VOD, path, "no EXT-X-ENDLIST", "required")
        for segment in playlist.segments:
            if _round_half_up(segment.duration) > playlist.target_duration:
                where = f"{path} ({segment.uri})"
                declared = f"TARGETDURATION {playlist.target_duration}"
                self.report(Rule.TARGET_DURATION, where, declared, f"EXTINF {segment.duration}")

    def durations(self, rendition: _Rendition) -> None:
        limit = rendition.playlist.target_duration + SEGMENT_OVERRUN_SECONDS
        starts = rendition.starts()
        for index, segment in enumerate(rendition.segments):
            lasted = max(segment.duration, rendition.lasted(segment))
            if index + 1 < len(starts) and (here := starts[index]) is not None:
                following = starts[index + 1]
                lasted = max(lasted, following - here) if following is not None else lasted
            if lasted > limit:
                declared = f"TARGETDURATION {rendition.playlist.target_duration}"
                self.report(Rule.SEGMENT_DURATION, segment.path, declared, f"{lasted:.3f} s")

    def aligned(self, videos: Sequence[_Rendition]) -> None:
        if len(videos) < 2:
            return
        reference = videos[0]
        for other in videos[1:]:
            if len(other.segments) != len(reference.segments):
                declared = f"{len(other.segments)} segments"
                measured = f"{len(reference.segments)} in {reference.path}"
                self.report(Rule.ALIGNED, other.path, declared, measured)
                continue
            timeline = (reference.starts(), other.starts())
            declared_starts = [_cumulative(r.segments) for r in (reference, other)]
            for index, (ref, got) in enumerate(zip(*declared_starts, strict=True)):
                ref_pts, got_pts = timeline[0][index], timeline[1][index]
                measured_off = (
                    ref_pts is not None
                    and got_pts is not None
                    and abs(ref_pts - got_pts) > BOUNDARY_TOLERANCE_SECONDS
                )
                if abs(ref - got) > BOUNDARY_TOLERANCE_SECONDS or measured_off:
                    self.report(
                        Rule.ALIGNED,
                        other.segments[index].path,
                        f"starts at {got:.3f} s (timestamp {got_pts})",
                        f"{ref:.3f} s (timestamp {ref_pts}) in {reference.segments[index].path}",
                    )
                    break

    def i_frame_variant(self, master: str, attributes: Mapping[str, str]) -> None:
        uri = attributes.get("URI", "")
        where = f"{master} (I-frames {uri})"
        for name in REQUIRED_I_FRAME_STREAM_INF:
            if name not in attributes:
                self.report(Rule.ATTRIBUTE, where, f"no {name}", "required")
        if not uri:
            return
        found = self.read(master, uri)
        if found is None:
            return
        path, data = found
        text = data.decode(errors="replace")
        try:
            playlist = parse_media_playlist(text)
        except ValueError as error:
            self.report(Rule.SYNTAX, path, "an I-frame playlist", error)
            return
        self.vod(path, playlist)
        if "#EXT-X-I-FRAMES-ONLY" not in text.split():
            self.report(Rule.I_FRAMES_ONLY, path, "absent", "required")
        first_uri = _resolve(path, playlist.segments[0].uri) if playlist.segments else None
        first_segment = self.files.get(first_uri) if first_uri else None
        fmp4, init = self.init(path, playlist, first_segment, i_frames=True)
        ranges = _byte_ranges(text)
        sizes: list[tuple[int, float]] = []
        previous: tuple[str, int] | None = None
        first_data: bytes | None = None
        for entry, byte_range in zip(playlist.segments, ranges, strict=True):
            where_entry = f"{path} ({entry.uri})"
            segment = self.read(path, entry.uri)
            if segment is None:
                return
            segment_path, segment_data = segment
            if byte_range is None:
                self.report(Rule.BYTE_RANGE, where_entry, "no EXT-X-BYTERANGE", "required")
                previous = None
                continue
            length, offset = byte_range
            if offset is None:
                offset = previous[1] if previous and previous[0] == segment_path else None
            if offset is None:
                self.report(Rule.BYTE_RANGE, where_entry, f"{length} without @offset", "first")
                continue
            previous = (segment_path, offset + length)
            declared = f"{length}@{offset}"
            piece = segment_data[offset : offset + length]
            if offset + length > len(segment_data):
                self.report(Rule.BYTE_RANGE, where_entry, declared, f"{len(segment_data)} bytes")
            elif fmp4:
                self.fmp4_i_frame(where_entry, (length, offset), segment_data)
            elif offset % _TS_PACKET_SIZE:
                self.report(Rule.BYTE_RANGE, where_entry, declared, "not on a TS packet")
            elif ts_facts(piece).first_video_keyframe is not True:
                self.report(Rule.KEYFRAME, where_entry, declared, "no keyframe first")
            first_data = segment_data if first_data is None else first_data
            sizes.append((length, entry.duration))
        peak = peak_segment_bitrate(sizes, playlist.target_duration) if sizes else 0
        self.bandwidths(where, attributes, peak, average_bitrate(sizes))
        if fmp4:
            if init is not None:
                self.codecs_and_resolution(where, attributes, init.codecs, init.resolution)
        elif first_data is not None:
            facts = ts_facts(first_data)
            codecs = h264_codecs_from_ts(first_data) or "no SPS in the first segment"
            self.codecs_and_resolution(where, attributes, codecs, facts.resolution)

    def fmp4_i_frame(self, where: str, byte_range: tuple[int, int], segment: bytes) -> None:
        """An fMP4 I-frame entry: from byte 0 through the segment's first sample, a sync one."""
        fragments = mp4.fragments(segment)
        end = fragments[0].first_sample_end if fragments else None
        length, offset = byte_range
        declared = f"{length}@{offset}"
        if end is None or offset != 0 or length < end:
            measured = f"0 to {end}, the first sample's end" if end else "no fragment"
            self.report(Rule.BYTE_RANGE, where, declared, measured)
        elif not fragments[0].starts_with_sync:
            self.report(Rule.KEYFRAME, where, declared, "no sync sample first")

    def codecs_and_resolution(
        self,
        where: str,
        attributes: Mapping[str, str],
        codecs: str | None,
        resolution: tuple[int, int] | None,
    ) -> None:
        codecs = codecs or "no codecs in the init segment"
        if "CODECS" in attributes and attributes["CODECS"].lower() != codecs:
            self.report(Rule.CODECS, where, attributes["CODECS"], codecs)
        if "RESOLUTION" in attributes and resolution:
            size = "{}x{}".format(*resolution)
            if attributes["RESOLUTION"] != size:
                self.report(Rule.RESOLUTION, where, attributes["RESOLUTION"], size)


def _cumulative(segments: Sequence[_Segment]) -> list[float]:
    starts, total = [], 0.0
    for segment in segments:
        starts.append(total)
        total += segment.duration
    return starts


def _byte_ranges(text: str) -> list[tuple[int, int | None] | None]:
    """Per segment URI in order, its EXT-X-BYTERANGE (length, offset or None), if it has one."""
    ranges: list[tuple[int, int | None] | None] = []
    pending: tuple[int, int | None] | None = None
    for line in (line.strip() for line in text.splitlines()):
        if line.startswith("#EXT-X-BYTERANGE:"):
            length, _, offset = line.partition(":")[2].partition("@")
            pending = (int(length), int(offset) if offset else None)
        elif line and not line.startswith("#"):
            ranges.append(pending)
            pending = None
    return ranges


def check_ladder(files: Mapping[str, bytes], master: str = MASTER_PLAYLIST_NAME) -> list[Violation]:
    """Pure: the authoring violations of the ladder whose master playlist is files[master]."""
    audit = _Audit(files)
    audit.master(master)
    return audit.found


class _Folder(Mapping[str, bytes]):
    """A folder's files by relative POSIX path, read when asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}

    def __getitem__(self, key: str) -> bytes:
        return self.paths[key].read_bytes()

    def __contains__(self, key: object) -> bool:
        return key in self.paths

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def check_folder(folder: Path, master: str = MASTER_PLAYLIST_NAME) -> list[Violation]:
    """The authoring violations of the ladder stored in folder (a download, or a local run)."""
    return check_ladder(_Folder(folder), master)
