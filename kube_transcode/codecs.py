"""Video codecs of a ladder: which there are, what each rung costs in each, and its level.

Pure: shared by the operator (validation) and the worker (planning and encoding).

======  =========  ==============  ===================================================
codec   encoder    rung bitrate    carried in
======  =========  ==============  ===================================================
h264    libx264    1.0 x the rung  MPEG-TS or fMP4, CODECS avc1.PPCCLL
hevc    libx265    0.7 x the rung  fMP4 only (Apple: HEVC as hvc1), CODECS hvc1.P.C.TLL.B
av1     libsvtav1  0.6 x the rung  fMP4 only (CMAF), CODECS av01.P.LLT.DD
======  =========  ==============  ===================================================

A rung's bitrates (video, maxrate, bufsize) are H.264's; HEVC and AV1 renditions get the
share above of each: the usual rule of thumb for their efficiency. Measured on the default
ladder at the workers' default preset (`python -m benchmarks codecs`, synthetic 1080p30 test
pattern): 0.71x and 0.64x H.264's bytes at a top-rung SSIM of 0.9905 and 0.9890 against
H.264's 0.9972, so at these fast presets they save bytes at a small loss, not at equal
quality; explicit rungs set their own H.264 bitrate, and the shares follow.

Each codec's level is the lowest whose limits admit the rendition's size, frame rate and VBV
(H.264 Table A-1, HEVC Table A.8 Main tier, AV1 Annex A); the CODECS attribute written in the
master playlist is read from the encoded bitstream, so it stays truthful if an encoder picks
another.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal, get_args

VideoCodec = Literal["h264", "hevc", "av1"]
SegmentFormat = Literal["ts", "fmp4"]

VIDEO_CODECS: tuple[VideoCodec, ...] = get_args(VideoCodec)
DEFAULT_VIDEO_CODECS: tuple[VideoCodec, ...] = ("h264",)
DEFAULT_SEGMENT_FORMAT: SegmentFormat = "ts"
# HLS carries these in fragmented MP4 only: Apple's spec has HEVC as hvc1 in fMP4, AV1 is CMAF.
FMP4_ONLY_CODECS: frozenset[VideoCodec] = frozenset({"hevc", "av1"})
CODEC_BITRATE_SHARE: dict[VideoCodec, float] = {"h264": 1.0, "hevc": 0.7, "av1": 0.6}


def check_codecs_fit(codecs: tuple[VideoCodec, ...], segment_format: SegmentFormat) -> None:
    """A readable ValueError when a codec cannot go in the segment format asked for."""
    misfits = [codec for codec in codecs if codec in FMP4_ONLY_CODECS]
    if segment_format == "ts" and misfits:
        raise ValueError(
            f"video codec {', '.join(misfits)} needs hls.segmentFormat fmp4: "
            "HLS carries HEVC and AV1 in fragmented MP4 only, not MPEG-TS"
        )


def rendition_name(rung: str, codec: VideoCodec) -> str:
    """A rendition's folder: the rung's name for H.264 (as always), `<rung>-<codec>` else."""
    return rung if codec == "h264" else f"{rung}-{codec}"


def scaled_kbps(kbps: int, codec: VideoCodec) -> int:
    return max(1, round(kbps * CODEC_BITRATE_SHARE[codec]))


# (level, MaxMBPS, MaxFS, MaxBR kbps, MaxCPB kbits) from H.264 Table A-1 (level 1b left out).
_H264_LEVELS: tuple[tuple[str, int, int, int, int], ...] = (
    ("1.0", 1485, 99, 64, 175),
    ("1.1", 3000, 396, 192, 500),
    ("1.2", 6000, 396, 384, 1000),
    ("1.3", 11880, 396, 768, 2000),
    ("2.0", 11880, 396, 2000, 2000),
    ("2.1", 19800, 792, 4000, 4000),
    ("2.2", 20250, 1620, 4000, 4000),
    ("3.0", 40500, 1620, 10000, 10000),
    ("3.1", 108000, 3600, 14000, 14000),
    ("3.2", 216000, 5120, 20000, 20000),
    ("4.0", 245760, 8192, 20000, 25000),
    ("4.1", 245760, 8192, 50000, 62500),
    ("4.2", 522240, 8704, 50000, 62500),
    ("5.0", 589824, 22080, 135000, 135000),
    ("5.1", 983040, 36864, 240000, 240000),
    ("5.2", 2073600, 36864, 240000, 240000),
    ("6.0", 4177920, 139264, 240000, 240000),
    ("6.1", 8355840, 139264, 480000, 480000),
    ("6.2", 16711680, 139264, 800000, 800000),
)

# (level, MaxLumaPs, MaxLumaSr, MaxBR kbps, MaxCPB kbits), Main tier: HEVC Tables A.8/A.9
# (CpbBrVclFactor 1000 for the Main profile).
_HEVC_LEVELS: tuple[tuple[str, int, int, int, int], ...] = (
    ("1.0", 36864, 552960, 128, 350),
    ("2.0", 122880, 3686400, 1500, 1500),
    ("2.1", 245760, 7372800, 3000, 3000),
    ("3.0", 552960, 16588800, 6000, 6000),
    ("3.1", 983040, 33177600, 10000, 10000),
    ("4.0", 2228224, 66846720, 12000, 12000),
    ("4.1", 2228224, 133693440, 20000, 20000),
    ("5.0", 8912896, 267386880, 25000, 25000),
    ("5.1", 8912896, 534773760, 40000, 40000),
    ("5.2", 8912896, 1069547520, 60000, 60000),
    ("6.0", 35651584, 1069547520, 60000, 60000),
    ("6.1", 35651584, 2139095040, 120000, 120000),
    ("6.2", 35651584, 4278190080, 240000, 240000),
)

# (level, MaxPicSize, MaxHSize, MaxVSize, MaxDisplayRate, Main tier MaxBitrate kbps): AV1
# Annex A.3 (levels that the spec leaves undefined are not listed).
_AV1_LEVELS: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("2.0", 147456, 2048, 1152, 4423680, 1500),
    ("2.1", 278784, 2816, 1584, 8363520, 3000),
    ("3.0", 665856, 4352, 2448, 19975680, 6000),
    ("3.1", 1065024, 5504, 3096, 31950720, 10000),
    ("4.0", 2359296, 6144, 3456, 70778880, 12000),
    ("4.1", 2359296, 6144, 3456, 141557760, 20000),
    ("5.0", 8912896, 8192, 4352, 267386880, 30000),
    ("5.1", 8912896, 8192, 4352, 534773760, 40000),
    ("5.2", 8912896, 8192, 4352, 1069547520, 60000),
    ("5.3", 8912896, 8192, 4352, 1069547520, 60000),
    ("6.0", 35651584, 16384, 8704, 1069547520, 60000),
    ("6.1", 35651584, 16384, 8704, 2139095040, 100000),
    ("6.2", 35651584, 16384, 8704, 4278190080, 160000),
    ("6.3", 35651584, 16384, 8704, 4278190080, 160000),
)


def h264_level(width: int, height: int, fps: Fraction, maxrate_kbps: int, bufsize_kbps: int) -> str:
    """The lowest H.264 level ("3.1") whose limits admit this picture size, rate and VBV."""
    width_mbs = math.ceil(width / 16)
    height_mbs = math.ceil(height / 16)
    frame_mbs = width_mbs * height_mbs
    for level, max_mbps, max_fs, max_br, max_cpb in _H264_LEVELS:
        # Each side is also bounded, so very long thin pictures need a higher level.
        max_side_mbs = math.isqrt(8 * max_fs)
        fits = (
            frame_mbs <= max_fs
            and width_mbs <= max_side_mbs
            and height_mbs <= max_side_mbs
            and frame_mbs * fps <= max_mbps
            and maxrate_kbps <= max_br
            and bufsize_kbps <= max_cpb
        )
        if fits:
            return level
    raise ValueError(_beyond_every_level("H.264", width, height, fps, maxrate_kbps))


def hevc_level(width: int, height: int, fps: Fraction, maxrate_kbps: int, bufsize_kbps: int) -> str:
    """The lowest HEVC Main-tier level whose limits admit this picture, rate and VBV."""
    samples = width * height
    for level, max_ps, max_sr, max_br, max_cpb in _HEVC_LEVELS:
        max_side = math.isqrt(8 * max_ps)
        fits = (
            samples <= max_ps
            and width <= max_side
            and height <= max_side
            and samples * fps <= max_sr
            and maxrate_kbps <= max_br
            and bufsize_kbps <= max_cpb
        )
        if fits:
            return level
    raise ValueError(_beyond_every_level("HEVC", width, height, fps, maxrate_kbps))


def av1_level(width: int, height: int, fps: Fraction, maxrate_kbps: int) -> str:
    """The lowest AV1 Main-tier level whose limits admit this picture and rate."""
    samples = width * height
    for level, max_pic, max_h, max_v, max_rate, max_br in _AV1_LEVELS:
        fits = (
            samples <= max_pic
            and width <= max_h
            and height <= max_v
            and samples * fps <= max_rate
            and maxrate_kbps <= max_br
        )
        if fits:
            return level
    raise ValueError(_beyond_every_level("AV1", width, height, fps, maxrate_kbps))


def codec_level(
    codec: VideoCodec,
    width: int,
    height: int,
    fps: Fraction,
    maxrate_kbps: int,
    bufsize_kbps: int,
) -> str:
    if codec == "hevc":
        return hevc_level(width, height, fps, maxrate_kbps, bufsize_kbps)
    if codec == "av1":
        return av1_level(width, height, fps, maxrate_kbps)
    return h264_level(width, height, fps, maxrate_kbps, bufsize_kbps)


def _beyond_every_level(
    codec: str, width: int, height: int, fps: Fraction, maxrate_kbps: int
) -> str:
    return (
        f"{width}x{height} at {float(fps):.3f} fps and {maxrate_kbps} kbps "
        f"exceeds every {codec} level"
    )


# profile_idc and the constraint flags byte x264 writes for each profile.
_H264_PROFILE_BYTES: dict[str, tuple[int, int]] = {
    "baseline": (0x42, 0xC0),
    "main": (0x4D, 0x40),
    "high": (0x64, 0x00),
}


def planned_codecs(codec: VideoCodec, profile: str, level: str) -> str:
    """The RFC 6381 string the plan asks for; used only when the bitstream cannot be read.

    HEVC: Main profile (general_profile_idc 1, compatibility flags 0x6 as x265 writes them),
    Main tier, progressive frames (constraint byte 0xB0). AV1: Main profile, Main tier, 8-bit.
    """
    major, minor = (int(part) for part in level.split("."))
    if codec == "hevc":
        return f"hvc1.1.6.L{major * 30 + minor * 3}.B0"
    if codec == "av1":
        return f"av01.0.{(major - 2) * 4 + minor:02d}M.08"
    profile_idc, constraints = _H264_PROFILE_BYTES[profile]
    return f"avc1.{profile_idc:02x}{constraints:02x}{major * 10 + minor:02x}"
