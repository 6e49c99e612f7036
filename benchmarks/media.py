"""Benchmark sources, generated with FFmpeg at bench time and cached by their parameters."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kube_transcode_worker.ffmpeg_build import default_ffmpeg

# The FFmpeg the worker encodes with: every variant of a benchmark uses the same build.
FFMPEG = default_ffmpeg()


def test_pattern(
    cache_dir: Path, seconds: int, width: int = 1920, height: int = 1080, fps: int = 30
) -> Path:
    """testsrc2 picture (moving, detailed: not trivially compressible) with a sine tone.

    Encoded as a camera or an upload would deliver it: H.264 at a moderate quality with AAC,
    so decoding costs what it costs on real sources.
    """
    path = cache_dir / f"testsrc2-{width}x{height}-{fps}fps-{seconds}s.mp4"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    subprocess.run(
        [
            FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
            str(partial),
        ],
        check=True,
    )  # fmt: skip
    # Renamed only when complete, so an interrupted run never leaves a short source cached.
    partial.rename(path)
    return path
