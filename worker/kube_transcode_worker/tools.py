"""What every task of a job uses: the worker's tools, and the steps whole runs and parts share."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from kube_transcode.ladder import (
    AUDIO_RENDITION_NAME,
    LadderPlan,
    SourceInfo,
    X264Preset,
    plan_ladder,
)
from kube_transcode.messages import ChunkTask, JobMessage, JobOutputs, RenditionOutput
from kube_transcode.thumbnails import POSTER_NAME, STORYBOARD_DIR, STORYBOARD_VTT_NAME
from kube_transcode_worker.encode import EncodeInput, EncodeResult, run_encode
from kube_transcode_worker.errors import CancelRequestedError, PermanentJobError
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.fetch import Fetcher
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.playlists import parse_master_playlist
from kube_transcode_worker.settings import WorkerSettings
from kube_transcode_worker.store import LadderStore
from kube_transcode_worker.thumbnails import ThumbnailPlan


@dataclass(frozen=True)
class JobTools:
    """What every job uses, built once per worker."""

    settings: WorkerSettings
    fetcher: Fetcher
    store: LadderStore
    metrics: WorkerMetrics


def encode(
    tools: JobTools,
    plan: LadderPlan,
    source: EncodeInput,
    out: Path,
    reporter: AttemptReporter,
    cancel: threading.Event,
    *,
    preset: X264Preset,
    part: ChunkTask | None = None,
    thumbnails: ThumbnailPlan | None = None,
    thumbs_dir: Path | None = None,
) -> EncodeResult:
    """run_encode with this worker's FFmpeg and limits; its time and speed observed."""
    settings, metrics = tools.settings, tools.metrics
    encoded = run_encode(
        plan,
        source,
        out,
        reporter.progress,
        cancel,
        part=part,
        preset=preset,
        ffmpeg=settings.ffmpeg_binary,
        allowed_demuxers=settings.probe_limits.allowed_demuxers,
        thumbnails=thumbnails,
        thumbs_dir=thumbs_dir,
    )
    metrics.encode_seconds.observe(encoded.elapsed_seconds)
    if encoded.elapsed_seconds > 0:
        metrics.encode_speed.observe(encoded.encoded_seconds / encoded.elapsed_seconds)
    return encoded


def check_not_cancelled(message: JobMessage, store: LadderStore) -> None:
    """Raises CancelRequestedError when the operator's marker covers this message's job."""
    marker = store.cancel_marker(message.output.bucket, message.job.uid)
    if marker is not None and marker.covers(message.job):
        raise CancelRequestedError(marker.describe())


def plan_for(message: JobMessage, source: SourceInfo) -> LadderPlan:
    try:
        return plan_ladder(source, message.ladder.resolve(), hls=message.hls, video=message.video)
    except ValueError as exc:
        raise PermanentJobError("InvalidLadder", str(exc)) from None


def outputs(message: JobMessage, plan: LadderPlan, master_text: str) -> JobOutputs:
    """What the job produced, as the master playlist tells a player."""
    renditions = []
    for variant in parse_master_playlist(master_text).variants:
        attributes = variant.attributes
        width, _, height = attributes["RESOLUTION"].partition("x")
        renditions.append(
            RenditionOutput(
                name=variant.uri.split("/", 1)[0],
                width=int(width),
                height=int(height),
                bandwidth=int(attributes["BANDWIDTH"]),
                average_bandwidth=int(attributes.get("AVERAGE-BANDWIDTH", 0)),
                codecs=attributes.get("CODECS", ""),
                playlist_uri=message.output.uri(variant.uri),
            )
        )
    thumbnails = message.thumbnails
    return JobOutputs(
        master_uri=message.output.uri(MASTER_PLAYLIST_NAME),
        renditions=tuple(renditions),
        has_audio=plan.audio is not None and AUDIO_RENDITION_NAME in master_text,
        poster_uri=message.output.uri(POSTER_NAME) if thumbnails.poster.enabled else None,
        storyboard_uri=(
            message.output.uri(f"{STORYBOARD_DIR}/{STORYBOARD_VTT_NAME}")
            if thumbnails.storyboard.enabled
            else None
        ),
    )
