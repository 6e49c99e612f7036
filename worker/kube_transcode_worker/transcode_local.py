"""A local file in, an HLS ladder in a local folder out: probe, plan, encode, master last.

The ladder is built in a hidden sibling folder and renamed into place, so the destination
never holds a half-written ladder, and the partial folder is removed whatever happens. With
thumbnail options the poster and storyboard are made as a worker's whole run makes them
(branches of the one FFmpeg run, then the sheets and VTT) and land beside the master playlist.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from kube_transcode.ladder import (
    DEFAULT_X264_PRESET,
    AudioOptions,
    HlsOptions,
    LadderPlan,
    Rung,
    VideoOptions,
    X264Preset,
    plan_ladder,
)
from kube_transcode.thumbnails import ThumbnailOptions
from kube_transcode_worker.encode import run_encode
from kube_transcode_worker.ffmpeg_build import default_ffmpeg
from kube_transcode_worker.hls import write_master_playlist
from kube_transcode_worker.probe import ProbeLimits, probe_source
from kube_transcode_worker.thumbnails import finish as finish_thumbnails
from kube_transcode_worker.thumbnails import plan_thumbnails


class TranscodeResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    dest_dir: Path
    master_playlist: Path
    plan: LadderPlan
    encoded_seconds: float
    elapsed_seconds: float


def transcode_file(
    source_path: Path,
    dest_dir: Path,
    requested_rungs: list[Rung] | None = None,
    hls: HlsOptions | None = None,
    *,
    audio: AudioOptions | None = None,
    video: VideoOptions | None = None,
    thumbnails: ThumbnailOptions | None = None,
    preset: X264Preset = DEFAULT_X264_PRESET,
    on_progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    limits: ProbeLimits | None = None,
    overwrite: bool = False,
    ffmpeg: str | None = None,
) -> TranscodeResult:
    """Transcode source_path into an HLS ladder at dest_dir (master.m3u8 at its top), with
    poster.jpg and storyboard/ beside it as `thumbnails` asks (None: neither).

    Raises FileExistsError when dest_dir holds files and overwrite is False, and the
    PermanentJobError / TransientJobError of probe and encode.
    """
    dest_dir = dest_dir.resolve()
    if not overwrite and dest_dir.exists() and any(dest_dir.iterdir()):
        raise FileExistsError(f"{dest_dir} is not empty (pass overwrite=True to replace it)")
    source = probe_source(source_path, limits)
    plan = plan_ladder(source, requested_rungs, hls=hls, audio=audio, video=video)
    ffmpeg = ffmpeg or default_ffmpeg()
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    # A sibling of the destination: the final rename stays on one filesystem.
    partial = Path(
        tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".partial", dir=dest_dir.parent)
    )
    partial.chmod(0o755)  # mkdtemp makes it private; the ladder is meant to be published
    try:
        # The run's JPEGs stay outside the ladder: only the poster and the sheets are published.
        with tempfile.TemporaryDirectory(
            prefix=f".{dest_dir.name}.", suffix=".thumbs", dir=dest_dir.parent
        ) as thumbs:
            encoded = run_encode(
                plan,
                source_path,
                partial,
                on_progress or _ignore_progress,
                cancel or threading.Event(),
                preset=preset,
                ffmpeg=ffmpeg,
                allowed_demuxers=(limits or ProbeLimits()).allowed_demuxers,
                thumbnails=None if thumbnails is None else plan_thumbnails(thumbnails, source),
                thumbs_dir=None if thumbnails is None else Path(thumbs),
            )
            if thumbnails is not None:
                finish_thumbnails(thumbnails, source, Path(thumbs), partial, ffmpeg)
        master = write_master_playlist(partial, plan)
        _replace_dir(partial, dest_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return TranscodeResult(
        dest_dir=dest_dir,
        master_playlist=dest_dir / master.name,
        plan=plan,
        encoded_seconds=encoded.encoded_seconds,
        elapsed_seconds=encoded.elapsed_seconds,
    )


def _ignore_progress(_percent: float) -> None:
    return None


def _replace_dir(new: Path, dest: Path) -> None:
    """Move new into dest's place; an old dest is set aside first and removed after."""
    if not dest.exists():
        new.rename(dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    aside = old / dest.name
    try:
        dest.rename(aside)
        try:
            new.rename(dest)
        except OSError:
            aside.rename(dest)
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
