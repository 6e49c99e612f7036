"""ISO BMFF (fMP4) boxes built by hand, for the unit tests of what reads them.

The shapes FFmpeg's HLS muxer writes: an init segment (ftyp, moov with one track) and media
segments (styp, sidx, moof with mfhd and traf(tfhd, tfdt, trun), mdat).
"""

from __future__ import annotations

import struct

NON_SYNC = 0x00010000
SYNC = 0x02000000  # sample_depends_on 2 (an I-frame), sync


def box(kind: bytes, *children: bytes) -> bytes:
    body = b"".join(children)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *children: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags), *children)


def visual_entry(kind: bytes, config: bytes, width: int = 640, height: int = 360) -> bytes:
    fields = b"\x00" * 6 + struct.pack(">H", 1) + b"\x00" * 16
    fields += struct.pack(">HHIIIH", width, height, 0x00480000, 0x00480000, 0, 1)
    fields += b"\x00" * 32 + struct.pack(">Hh", 0x18, -1)
    return box(kind, fields, config)


def esds(audio_specific_config: bytes, object_type_indication: int = 0x40) -> bytes:
    specific = bytes([0x05, len(audio_specific_config)]) + audio_specific_config
    decoder = bytes([object_type_indication, 0x15]) + b"\x00" * 11 + specific
    es = struct.pack(">HB", 1, 0) + bytes([0x04, len(decoder)]) + decoder + b"\x06\x01\x02"
    return full_box(b"esds", 0, 0, bytes([0x03, 0x80, 0x80, 0x80, len(es)]) + es)


def audio_entry(config: bytes) -> bytes:
    fields = (
        b"\x00" * 6 + struct.pack(">H", 1) + b"\x00" * 8 + struct.pack(">HHHHI", 2, 16, 0, 0, 0)
    )
    return box(b"mp4a", fields, config)


def init_segment(entry: bytes, media_timescale: int = 15360, *, mdhd_version: int = 0) -> bytes:
    times = b"\x00" * (16 if mdhd_version else 8)
    duration = b"\x00" * (8 if mdhd_version else 4)
    mdhd = full_box(b"mdhd", mdhd_version, 0, times, struct.pack(">I", media_timescale), duration)
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry)
    tkhd = full_box(b"tkhd", 0, 3, b"\x00" * 76, struct.pack(">II", 640 << 16, 360 << 16))
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, box(b"minf", box(b"stbl", stsd))))
    return box(b"ftyp", b"iso5\x00\x00\x02\x00iso6mp41") + box(b"moov", trak)


def trun(
    sizes: list[int],
    *,
    durations: list[int] | None = None,
    flags: list[int] | None = None,
    first_flags: int | None = None,
    data_offset: int | None = None,
) -> bytes:
    box_flags = (0x200 if sizes else 0) | (0x100 if durations else 0) | (0x400 if flags else 0)
    head = struct.pack(">I", len(sizes or durations or []))
    if data_offset is not None:
        box_flags |= 0x1
        head += struct.pack(">i", data_offset)
    if first_flags is not None:
        box_flags |= 0x4
        head += struct.pack(">I", first_flags)
    body = b""
    for index in range(len(sizes)):
        if durations:
            body += struct.pack(">I", durations[index])
        body += struct.pack(">I", sizes[index])
        if flags:
            body += struct.pack(">I", flags[index])
    return full_box(b"trun", 0, box_flags, head, body)


def tfhd(
    track: int = 1,
    *,
    duration: int | None = None,
    size: int | None = None,
    flags: int | None = None,
    base: int | None = None,
    base_is_moof: bool = True,
) -> bytes:
    box_flags, body = (0x020000 if base_is_moof else 0), struct.pack(">I", track)
    for bit, value, form in ((0x1, base, ">Q"), (0x8, duration, ">I"), (0x10, size, ">I")):
        if value is not None:
            box_flags |= bit
            body += struct.pack(form, value)
    if flags is not None:
        box_flags |= 0x20
        body += struct.pack(">I", flags)
    return full_box(b"tfhd", 0, box_flags, body)


def bare_trun(count: int) -> bytes:
    """A trun of count samples that leaves sizes, durations and flags to tfhd."""
    return full_box(b"trun", 0, 0, struct.pack(">I", count))


def tfdt(decode_time: int, version: int = 1) -> bytes:
    return full_box(b"tfdt", version, 0, struct.pack(">Q" if version else ">I", decode_time))


def media_segment(
    decode_time: int, sizes: list[int], duration: int = 512, *, sync: bool = True, **run: object
) -> bytes:
    """styp, sidx, moof, mdat as FFmpeg writes them: data offset from the moof start."""
    head = box(b"styp", b"msdh\x00\x00\x00\x00msdhmsix") + full_box(b"sidx", 1, 0, b"\x00" * 32)

    def moof(offset: int) -> bytes:
        traf = box(
            b"traf",
            tfhd(duration=duration, flags=NON_SYNC),
            tfdt(decode_time),
            trun(sizes, first_flags=SYNC if sync else NON_SYNC, data_offset=offset, **run),  # type: ignore[arg-type]
        )
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", 1)), traf)

    fragment = moof(len(moof(0)) + 8)
    return head + fragment + box(b"mdat", bytes(sum(sizes)))
