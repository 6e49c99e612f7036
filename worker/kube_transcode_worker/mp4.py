"""Facts read from fragmented MP4 (CMAF) HLS segments: an init segment's codecs, timescale and
size; a media segment's fragments (decode time, duration, first sample's sync flag and end).

Pure functions on bytes, no FFmpeg. What FFmpeg's HLS muxer writes with
`-hls_segment_type fmp4`: per rendition an init segment (ftyp, moov) and media segments (styp,
sidx, moof(mfhd, traf(tfhd, tfdt, trun)), mdat), one track a file. The "first track" is the
first trak in moov, and in a media segment the track of the first traf.

CODECS strings follow RFC 6381 and ISO/IEC 14496-15 Annex E (avc1, hvc1/hev1), the AV1 ISOBMFF
binding section 5 (av01, short form) and RFC 6381 section 3.3 (mp4a.40.<audio object type>).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

# Hand-written: pymp4 has no hvcC, av1C or esds fields and no RFC 6381 strings, only box walking.

_VISUAL_ENTRY_HEADER = 78  # SampleEntry (8) + VisualSampleEntry fields (70), then its boxes
_AUDIO_ENTRY_HEADER = 28  # SampleEntry (8) + AudioSampleEntry fields (20), then its boxes
_VISUAL_ENTRIES = {b"avc1", b"avc3", b"hvc1", b"hev1", b"av01", b"vp09", b"encv"}
_AUDIO_ENTRIES = {b"mp4a", b"ac-3", b"ec-3", b"Opus", b"fLaC", b"enca"}
_PLAIN_CODECS = {b"ac-3": "ac-3", b"ec-3": "ec-3", b"Opus": "opus", b"fLaC": "flac"}
_AAC_OBJECT_TYPE_INDICATION = 0x40
_PROFILE_SPACE = ("", "A", "B", "C")

_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_COMPOSITION_OFFSET = 0x000800
_SAMPLE_IS_NON_SYNC = 0x00010000


@dataclass(frozen=True)
class Fragment:
    """One movie fragment (moof and its data) of a segment's track."""

    decode_time: int  # tfdt baseMediaDecodeTime, in the track timescale
    duration: int  # the samples' durations summed, in the track timescale
    samples: int
    starts_with_sync: bool  # the first sample's sample_is_non_sync_sample is 0
    # Byte offset from the segment start of the end of the first sample's data: an I-frame
    # playlist's BYTERANGE length@0 must reach it to include the keyframe.
    first_sample_end: int


@dataclass(frozen=True)
class _Box:
    kind: bytes
    start: int  # the box header's first byte
    body: int  # the first byte after the header
    end: int


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[_Box]:
    """The boxes laid one after another in data[start:end]; stops at a malformed header."""
    end = len(data) if end is None else min(end, len(data))
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, position)
        body = position + 8
        if size == 1:
            if body + 8 > end:
                return
            (size,) = struct.unpack_from(">Q", data, body)
            body += 8
        elif size == 0:
            size = end - position
        if size < body - position or position + size > end:
            return
        yield _Box(kind, position, body, position + size)
        position += size


def _find(
    data: bytes, path: tuple[bytes, ...], start: int = 0, end: int | None = None
) -> _Box | None:
    """The first box along path (container names, then the box), searched depth-first."""
    for box in _boxes(data, start, end):
        if box.kind != path[0]:
            continue
        if len(path) == 1:
            return box
        found = _find(data, path[1:], box.body, box.end)
        if found is not None:
            return found
    return None


def _first_trak(init: bytes) -> _Box | None:
    return _find(init, (b"moov", b"trak"))


def _sample_entry(init: bytes) -> _Box | None:
    trak = _first_trak(init)
    if trak is None:
        return None
    stsd = _find(init, (b"mdia", b"minf", b"stbl", b"stsd"), trak.body, trak.end)
    if stsd is None:
        return None
    return next(_boxes(init, stsd.body + 8, stsd.end), None)  # after version, flags, count


def _entry_children(init: bytes, entry: _Box) -> dict[bytes, _Box]:
    header = _VISUAL_ENTRY_HEADER if entry.kind in _VISUAL_ENTRIES else _AUDIO_ENTRY_HEADER
    return {box.kind: box for box in _boxes(init, entry.body + header, entry.end)}


def _original_format(init: bytes, entry: _Box, children: dict[bytes, _Box]) -> bytes:
    """An encrypted entry's (encv, enca) original format from sinf/frma; else its own type."""
    if entry.kind not in (b"encv", b"enca") or b"sinf" not in children:
        return entry.kind
    sinf = children[b"sinf"]
    frma = _find(init, (b"frma",), sinf.body, sinf.end)
    return init[frma.body : frma.body + 4] if frma and frma.end - frma.body >= 4 else entry.kind


def _avc_codecs(kind: str, avcc: bytes) -> str:
    return f"{kind}.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}"


def _reverse_bits32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


def _hevc_codecs(kind: str, hvcc: bytes) -> str:
    """ISO/IEC 14496-15 Annex E.3 from an HEVCDecoderConfigurationRecord."""
    space, tier, profile_idc = hvcc[1] >> 6, (hvcc[1] >> 5) & 1, hvcc[1] & 0x1F
    (compatibility,) = struct.unpack_from(">I", hvcc, 2)
    constraints = bytes(hvcc[6:12]).rstrip(b"\x00")
    level_idc = hvcc[12]
    fields = [
        kind,
        f"{_PROFILE_SPACE[space]}{profile_idc}",
        f"{_reverse_bits32(compatibility):X}",
        f"{'H' if tier else 'L'}{level_idc}",
        *(f"{byte:02X}" for byte in constraints),
    ]
    return ".".join(fields)


def _av1_codecs(av1c: bytes) -> str:
    """The AV1 ISOBMFF binding's short form from an AV1CodecConfigurationRecord."""
    profile, level = av1c[1] >> 5, av1c[1] & 0x1F
    tier = "H" if av1c[2] & 0x80 else "M"
    high_bitdepth, twelve_bit = av1c[2] & 0x40, av1c[2] & 0x20
    depth = (12 if twelve_bit else 10) if high_bitdepth else 8
    return f"av01.{profile}.{level:02d}{tier}.{depth:02d}"


def _descriptor(data: bytes, position: int) -> tuple[int, int, int]:
    """(tag, body start, body end) of the MPEG-4 descriptor at position (expandable size)."""
    tag, position = data[position], position + 1
    size = 0
    for _ in range(4):
        byte, position = data[position], position + 1
        size = (size << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return tag, position, position + size


def _mp4a_codecs(esds: bytes) -> str | None:
    """RFC 6381 3.3 from an esds body: mp4a.40.<audio object type>, else mp4a.<OTI hex>."""
    tag, position, _ = _descriptor(esds, 4)  # after version and flags
    if tag != 0x03:  # ES_Descriptor
        return None
    flags, position = esds[position + 2], position + 3  # after ES_ID
    if flags & 0x80:  # streamDependenceFlag
        position += 2
    if flags & 0x40:  # URL_Flag
        position += 1 + esds[position]
    if flags & 0x20:  # OCRstreamFlag
        position += 2
    tag, position, end = _descriptor(esds, position)
    if tag != 0x04:  # DecoderConfigDescriptor
        return None
    object_type_indication = esds[position]
    if object_type_indication != _AAC_OBJECT_TYPE_INDICATION:
        return f"mp4a.{object_type_indication:02x}"
    position += 13  # objectTypeIndication, streamType, buffer size, max and average bitrate
    if position >= end:
        return None
    tag, position, _ = _descriptor(esds, position)
    if tag != 0x05:  # DecoderSpecificInfo: an AudioSpecificConfig
        return None
    audio_object_type = esds[position] >> 3
    if audio_object_type == 31:  # escape: 32 + the next six bits
        audio_object_type = 32 + (((esds[position] & 0x07) << 3) | (esds[position + 1] >> 5))
    return f"mp4a.40.{audio_object_type}"


def codecs_from_init(data: bytes) -> str | None:
    """The RFC 6381 CODECS value of the first track's sample entry; None when unreadable."""
    try:
        entry = _sample_entry(data)
        if entry is None:
            return None
        children = _entry_children(data, entry)
        kind = _original_format(data, entry, children)
        name = kind.decode("ascii", errors="replace")
        config = {box_kind: data[box.body : box.end] for box_kind, box in children.items()}
        if kind in (b"avc1", b"avc3") and b"avcC" in config:
            return _avc_codecs(name, config[b"avcC"])
        if kind in (b"hvc1", b"hev1") and b"hvcC" in config:
            return _hevc_codecs(name, config[b"hvcC"])
        if kind == b"av01" and b"av1C" in config:
            return _av1_codecs(config[b"av1C"])
        if kind == b"mp4a" and b"esds" in config:
            return _mp4a_codecs(config[b"esds"])
        return _PLAIN_CODECS.get(kind)
    except (IndexError, struct.error):
        return None


def timescale(init: bytes) -> int | None:
    """The first track's media timescale (mdhd), units a second."""
    trak = _first_trak(init)
    mdhd = _find(init, (b"mdia", b"mdhd"), trak.body, trak.end) if trak else None
    if mdhd is None:
        return None
    offset = mdhd.body + (20 if init[mdhd.body] == 1 else 12)  # after the creation/modification
    if offset + 4 > mdhd.end:
        return None
    (value,) = struct.unpack_from(">I", init, offset)
    return int(value) or None


def resolution(init: bytes) -> tuple[int, int] | None:
    """The first track's (width, height): its visual sample entry's, else tkhd's; None for
    audio."""
    entry = _sample_entry(init)
    if entry is not None and entry.kind in _VISUAL_ENTRIES and entry.end >= entry.body + 28:
        width, height = struct.unpack_from(">HH", init, entry.body + 24)
        if width and height:
            return int(width), int(height)
    trak = _first_trak(init)
    tkhd = _find(init, (b"tkhd",), trak.body, trak.end) if trak else None
    if tkhd is None:
        return None
    offset = tkhd.body + (88 if init[tkhd.body] == 1 else 76)  # width, height: 16.16 fixed
    if offset + 8 > tkhd.end:
        return None
    width, height = struct.unpack_from(">II", init, offset)
    return (width >> 16, height >> 16) if width and height else None


@dataclass(frozen=True)
class _Defaults:
    track_id: int
    base: int  # where data offsets count from
    duration: int | None
    size: int | None
    flags: int | None


def _tfhd(data: bytes, tfhd: _Box, moof_start: int) -> _Defaults:
    flags = int.from_bytes(data[tfhd.body + 1 : tfhd.body + 4], "big")
    (track_id,) = struct.unpack_from(">I", data, tfhd.body + 4)
    position = tfhd.body + 8
    base = moof_start  # the default, and what default-base-is-moof says
    if flags & _TFHD_BASE_DATA_OFFSET:
        (base,) = struct.unpack_from(">Q", data, position)
        position += 8
    if flags & _TFHD_SAMPLE_DESCRIPTION_INDEX:
        position += 4
    values: dict[int, int | None] = {}
    for flag in (_TFHD_DEFAULT_DURATION, _TFHD_DEFAULT_SIZE, _TFHD_DEFAULT_FLAGS):
        values[flag] = None
        if flags & flag:
            (values[flag],) = struct.unpack_from(">I", data, position)
            position += 4
    return _Defaults(
        track_id,
        base,
        values[_TFHD_DEFAULT_DURATION],
        values[_TFHD_DEFAULT_SIZE],
        values[_TFHD_DEFAULT_FLAGS],
    )


@dataclass
class _Run:
    samples: int = 0
    duration: int = 0
    first_flags: int | None = None
    first_start: int | None = None  # byte offset of the first sample's data
    first_size: int | None = None
    data_end: int | None = None  # where the next run's data starts when it gives no offset


def _trun(data: bytes, trun: _Box, defaults: _Defaults, data_start: int | None) -> _Run:
    flags = int.from_bytes(data[trun.body + 1 : trun.body + 4], "big")
    (count,) = struct.unpack_from(">I", data, trun.body + 4)
    position = trun.body + 8
    if flags & _TRUN_DATA_OFFSET:
        (offset,) = struct.unpack_from(">i", data, position)
        data_start = defaults.base + offset
        position += 4
    first_flags: int | None = None
    if flags & _TRUN_FIRST_SAMPLE_FLAGS:
        (first_flags,) = struct.unpack_from(">I", data, position)
        position += 4
    fields = [
        flag
        for flag in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_COMPOSITION_OFFSET)
        if flags & flag
    ]
    run = _Run(samples=count, first_start=data_start)
    total_size: int | None = 0
    for index in range(count):
        sample = dict(
            zip(fields, struct.unpack_from(f">{len(fields)}I", data, position), strict=True)
        )
        position += 4 * len(fields)
        duration = sample.get(_TRUN_DURATION, defaults.duration)
        size = sample.get(_TRUN_SIZE, defaults.size)
        run.duration += duration or 0
        total_size = None if total_size is None or size is None else total_size + size
        if index == 0:
            run.first_size = size
            run.first_flags = (
                first_flags if first_flags is not None else sample.get(_TRUN_FLAGS, defaults.flags)
            )
    if data_start is not None and total_size is not None:
        run.data_end = data_start + total_size
    return run


def _traf_fragment(data: bytes, traf: _Box, moof: _Box, mdat_end: int) -> Fragment | None:
    tfhd = _find(data, (b"tfhd",), traf.body, traf.end)
    if tfhd is None:
        return None
    defaults = _tfhd(data, tfhd, moof.start)
    tfdt = _find(data, (b"tfdt",), traf.body, traf.end)
    decode_time = 0
    if tfdt is not None:
        version = data[tfdt.body]
        decode_time = int.from_bytes(data[tfdt.body + 4 : tfdt.body + (12 if version else 8)])
    runs: list[_Run] = []
    data_start: int | None = defaults.base
    for trun in (box for box in _boxes(data, traf.body, traf.end) if box.kind == b"trun"):
        runs.append(_trun(data, trun, defaults, data_start))
        data_start = runs[-1].data_end
    first = next((run for run in runs if run.samples), None)
    if first is None:
        return Fragment(decode_time, 0, 0, False, 0)
    # Without a known size the first sample is taken to fill the mdat: still a range with it.
    first_end = mdat_end
    if first.first_start is not None and first.first_size is not None:
        first_end = first.first_start + first.first_size
    return Fragment(
        decode_time=decode_time,
        duration=sum(run.duration for run in runs),
        samples=sum(run.samples for run in runs),
        starts_with_sync=first.first_flags is not None
        and not first.first_flags & _SAMPLE_IS_NON_SYNC,
        first_sample_end=first_end,
    )


def fragments(segment: bytes) -> list[Fragment]:
    """The fragments of the segment's track (the first traf's), in order; parsing stops at a
    malformed box."""
    found: list[Fragment] = []
    track_id: int | None = None
    top = list(_boxes(segment))
    for index, moof in enumerate(top):
        if moof.kind != b"moof":
            continue
        mdat_end = next((box.end for box in top[index + 1 :] if box.kind == b"mdat"), moof.end)
        for traf in (box for box in _boxes(segment, moof.body, moof.end) if box.kind == b"traf"):
            try:
                tfhd = _find(segment, (b"tfhd",), traf.body, traf.end)
                this_track = struct.unpack_from(">I", segment, tfhd.body + 4)[0] if tfhd else None
                track_id = this_track if track_id is None else track_id
                if this_track != track_id:
                    continue
                fragment = _traf_fragment(segment, traf, moof, mdat_end)
            except (IndexError, struct.error):
                return found
            if fragment is not None:
                found.append(fragment)
    return found


def first_sample_end(segment: bytes) -> int | None:
    """Where the segment's first sample's data ends (see Fragment); None without fragments."""
    found = fragments(segment)
    return found[0].first_sample_end if found else None
