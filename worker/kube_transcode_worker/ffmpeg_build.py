"""Which FFmpeg encodes.

The imageio-ffmpeg wheel (pinned in requirements/) carries a static FFmpeg 9.0.2. Measured on
this project's 2-core machines with the worker's own 5-rung ladder command (veryfast), it took
0.91x the wall time and 0.92-0.96x the CPU of Debian's FFmpeg 5.1: FFmpeg >= 7 runs demuxing,
decoding, filtering, encoding and muxing in threads of their own, a gap that grows with cores.
For HEVC and AV1 (`python -m benchmarks codecs`): x265 writes the same bytes on either build
in about the same time, the bundled SVT-AV1 4.2 the AV1 top rung in half the time of Debian's
1.4.1; libsvtav1 rather than libaom-av1 (7.1x slower for a little more SSIM). It has no
ffprobe, so probing stays with the system's ffprobe. KT_FFMPEG_BINARY overrides.
"""

from __future__ import annotations


def bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:  # no binary for this platform in the wheel
        return None


def default_ffmpeg() -> str:
    return bundled_ffmpeg() or "ffmpeg"
