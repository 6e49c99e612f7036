"""One transcode from a terminal: a file or URL in, a ladder in a folder or S3 out, no queue.

The ladder is made the way a worker makes it (probe, plan, one FFmpeg run, master playlist
last; the worker's own fetcher and store for remote ends, built by `wiring`), so what a user
tries here is what the cluster produces: the same video codecs and segment formats, the same
poster and storyboard. `BadRequestError` is input refused before any work.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from kube_transcode.codecs import check_codecs_fit
from kube_transcode.ladder import (
    DEFAULT_X264_PRESET,
    HlsOptions,
    LadderPlan,
    Rung,
    VideoOptions,
    X264Preset,
)
from kube_transcode.messages import OutputLocation
from kube_transcode.thumbnails import (
    POSTER_NAME,
    STORYBOARD_DIR,
    STORYBOARD_VTT_NAME,
    ThumbnailOptions,
    scaled_size,
    sheet_count,
    thumbnail_count,
)
from kube_transcode_worker.errors import JobError, TransientJobError
from kube_transcode_worker.settings import PipelineSettings, SettingsError, load_settings
from kube_transcode_worker.terminal import ProgressReporter
from kube_transcode_worker.transcode_local import TranscodeResult, transcode_file
from kube_transcode_worker.wiring import build_fetcher, build_store, has_s3_credentials, s3_client

REMOTE_SCHEMES = ("s3://", "https://", "http://")
FETCHED_NAME = "source"
LADDER_NAME = "ladder"


class BadRequestError(Exception):
    """Input the CLI refuses before any work starts (not a job failure, so no reason word)."""


@dataclass(frozen=True)
class TranscodeRequest:
    """What `transcode` was asked to do, validated; nothing has been touched yet."""

    source: str
    dest: str
    rungs: list[Rung] | None = None
    hls: HlsOptions = field(default_factory=HlsOptions)
    video: VideoOptions = field(default_factory=VideoOptions)
    # Poster and storyboard on, as in a TranscodeJob that says nothing about them.
    thumbnails: ThumbnailOptions = field(default_factory=ThumbnailOptions)
    preset: X264Preset = DEFAULT_X264_PRESET
    overwrite: bool = False


def is_remote(location: str) -> bool:
    return location.startswith(REMOTE_SCHEMES)


@dataclass(frozen=True)
class Outcome:
    master: str
    plan: LadderPlan
    thumbnails: ThumbnailOptions
    encoded_seconds: float
    elapsed_seconds: float

    def summary_lines(self) -> list[str]:
        plan = self.plan
        lines = [
            f"{len(plan.renditions)} renditions"
            + (" + audio" if plan.audio else "")
            + (", fMP4 segments" if plan.fmp4 else ", MPEG-TS segments")
            + f", {self.encoded_seconds:.1f} s of video in {self.elapsed_seconds:.1f} s:"
        ]
        name_width = max(6, *(len(rendition.name) for rendition in plan.renditions))
        for rendition in plan.renditions:
            lines.append(
                f"  {rendition.name:<{name_width}} {rendition.width}x{rendition.height} "
                f"{rendition.video_kbps} kbps {rendition.codec} "
                f"{rendition.profile}@{rendition.level}"
            )
        return lines + self._thumbnail_lines()

    def _thumbnail_lines(self) -> list[str]:
        source, poster, board = self.plan.source, self.thumbnails.poster, self.thumbnails.storyboard
        lines = []
        if poster.enabled:
            size = scaled_size(poster.width, source.width, source.height)
            lines.append(f"  {POSTER_NAME} {size.width}x{size.height}")
        if board.enabled:
            count = thumbnail_count(source.duration_seconds, board.interval_seconds)
            size = scaled_size(board.width, source.width, source.height)
            sheets = sheet_count(count, board)
            lines.append(
                f"  {STORYBOARD_DIR}/{STORYBOARD_VTT_NAME} {count} thumbnails "
                f"{size.width}x{size.height}, one every {board.interval_seconds} s, "
                f"in {sheets} sheet{'s' if sheets > 1 else ''}"
            )
        return lines


def pipeline_settings() -> PipelineSettings:
    """The worker's pipeline settings from the same KT_ variables; no broker is needed here."""
    try:
        return load_settings(PipelineSettings)
    except SettingsError as error:
        raise BadRequestError(f"invalid settings in the environment: {error}") from None


def output_location(dest: str) -> OutputLocation:
    bucket, _, prefix = dest.removeprefix("s3://").partition("/")
    try:
        return OutputLocation(bucket=bucket, prefix=prefix)
    except ValidationError as error:
        why = "; ".join(err["msg"] for err in error.errors(include_url=False))
        raise BadRequestError(f"DEST {dest!r} is not s3://<bucket>/<prefix>: {why}") from None


def check_request(request: TranscodeRequest) -> None:
    """Refuse what would fail anyway, or do harm, before fetching or encoding anything."""
    try:
        check_codecs_fit(request.video.codecs, request.hls.segment_format)
    except ValueError as error:
        raise BadRequestError(f"{error} (here: --segment-format fmp4)") from None
    if not is_remote(request.source) and not Path(request.source).is_file():
        raise BadRequestError(f"SOURCE {request.source} is not a file")
    if is_remote(request.dest):
        if not request.dest.startswith("s3://"):
            raise BadRequestError(
                f"DEST must be a local folder or s3://bucket/prefix, got {request.dest}"
            )
        output_location(request.dest)
        return
    dest = Path(request.dest).resolve()
    if dest.exists() and not dest.is_dir():
        raise BadRequestError(f"DEST {request.dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not request.overwrite:
        raise BadRequestError(f"DEST {request.dest} is not empty; pass --overwrite to replace it")
    # --overwrite replaces DEST as a whole: it must not take the source or the shell's cwd along.
    if not is_remote(request.source) and Path(request.source).resolve().is_relative_to(dest):
        raise BadRequestError(f"SOURCE {request.source} lies inside DEST {request.dest}")
    if Path.cwd().resolve().is_relative_to(dest):
        raise BadRequestError(f"DEST {request.dest} holds the current directory; name a subfolder")


def transcode(
    request: TranscodeRequest, progress: ProgressReporter, cancel: threading.Event | None = None
) -> Outcome:
    """Local or remote source to local or S3 destination, through the worker's modules."""
    cancel = cancel or threading.Event()
    check_request(request)
    started = time.monotonic()
    settings = pipeline_settings()
    with tempfile.TemporaryDirectory(prefix="kube-transcode-") as scratch:
        try:
            result, master = _transcode_in(Path(scratch), request, settings, progress, cancel)
        except JobError as error:
            error.in_user_terms(_user_names(Path(scratch), request))
            raise
    return Outcome(
        master=master,
        plan=result.plan,
        thumbnails=request.thumbnails,
        encoded_seconds=result.encoded_seconds,
        elapsed_seconds=time.monotonic() - started,
    )


def _user_names(work: Path, request: TranscodeRequest) -> dict[str, str]:
    """The paths FFmpeg names, as the user gave them (a fetched source is its URL)."""
    names = {str(work): "the scratch folder", str(work.resolve()): "the scratch folder"}
    names[str(work / LADDER_NAME)] = names[str((work / LADDER_NAME).resolve())] = request.dest
    for path in work.glob(f"{FETCHED_NAME}*"):
        names[str(path)] = names[str(path.resolve())] = request.source
    if not is_remote(request.source):
        names[str(Path(request.source).resolve())] = request.source
    return names


def _transcode_in(
    work: Path,
    request: TranscodeRequest,
    settings: PipelineSettings,
    progress: ProgressReporter,
    cancel: threading.Event,
) -> tuple[TranscodeResult, str]:
    client = checked_s3_client(settings) if is_remote(request.dest) else None
    location = output_location(request.dest) if is_remote(request.dest) else None
    if client is not None and location is not None:
        check_s3_dest(client, location, request.overwrite)
    source = fetch_source(request, work, settings, progress, cancel)
    ladder_dir = work / LADDER_NAME if location else Path(request.dest)
    progress.update("probing")
    result = transcode_file(
        source,
        ladder_dir,
        request.rungs,
        request.hls,
        video=request.video,
        thumbnails=request.thumbnails,
        preset=request.preset,
        on_progress=lambda percent: progress.update("encoding", percent),
        cancel=cancel,
        limits=settings.probe_limits,
        overwrite=request.overwrite,
    )
    master = str(result.master_playlist)
    if client is not None and location is not None:
        master = upload_ladder(result.dest_dir, client, location, settings, progress, cancel)
    return result, master


def checked_s3_client(settings: PipelineSettings) -> Any:
    """The worker's own S3 client, after checking that there are credentials to sign with."""
    # Without any, the first request fails with a "cannot reach" that sends users looking wrongly.
    if not has_s3_credentials(settings):
        raise BadRequestError(
            "no S3 credentials: set KT_S3_ACCESS_KEY_ID and KT_S3_SECRET_ACCESS_KEY "
            "(and KT_S3_ENDPOINT_URL for MinIO)"
        )
    return s3_client(settings)


def fetch_source(
    request: TranscodeRequest,
    work: Path,
    settings: PipelineSettings,
    progress: ProgressReporter,
    cancel: threading.Event,
) -> Path:
    """A local source as it is; a remote one through the worker's guarded fetcher."""
    if not is_remote(request.source):
        return Path(request.source)
    fetcher = build_fetcher(settings, checked_s3_client(settings))
    progress.update("fetching")
    # The demuxer is pinned from the probe, not the name; the suffix only helps a human.
    suffix = PurePosixPath(urlsplit(request.source).path).suffix[:8]
    if not suffix[1:].isalnum():
        suffix = ""
    return fetcher.fetch(request.source, work / f"{FETCHED_NAME}{suffix}", cancel).path


def check_s3_dest(client: Any, location: OutputLocation, overwrite: bool) -> None:
    """The bucket must exist, and the prefix hold no ladder unless --overwrite says replace."""
    try:
        listing = client.list_objects_v2(
            Bucket=location.bucket, Prefix=f"{location.prefix}/", MaxKeys=1
        )
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "?"))
        raise BadRequestError(f"DEST {location.uri()} cannot be written: {code}") from None
    except BotoCoreError as error:
        raise TransientJobError("StorageUnavailable", f"cannot reach S3: {error}") from None
    if listing.get("KeyCount", 0) and not overwrite:
        raise BadRequestError(
            f"DEST {location.uri()} already holds objects; pass --overwrite to replace them"
        )


def upload_ladder(
    ladder_dir: Path,
    client: Any,
    location: OutputLocation,
    settings: PipelineSettings,
    progress: ProgressReporter,
    cancel: threading.Event,
) -> str:
    """The worker's upload: segments, then media playlists, master last, stale objects removed."""
    total = sum(path.stat().st_size for path in ladder_dir.rglob("*") if path.is_file())
    sent = 0
    lock = threading.Lock()

    def on_bytes(count: int) -> None:
        nonlocal sent
        with lock:
            sent += count
            percent = 100 * sent / total if total else 100.0
        progress.update("uploading", percent)

    progress.update("uploading", 0.0)
    store = build_store(settings, client, on_bytes)
    store.publish(ladder_dir, location.bucket, location.prefix, cancel)
    return location.master_playlist_uri
