"""One job, end to end: fetch, probe, plan, encode, master playlist, store; scratch removed.

Runs in the worker's job thread. It raises JobError subclasses for the consumer to settle and
never touches the broker itself: phases and progress go through the reporter.

The operator's cancel marker is read before anything starts and again right before the
master playlist is stored: a job cancelled while it waited in the queue, or whose broadcast
cancel this worker missed, produces no outputs (CancelRequestedError).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from kube_transcode.ladder import AUDIO_RENDITION_NAME, LadderPlan, SourceInfo, plan_ladder
from kube_transcode.messages import JobMessage, JobOutputs, Phase, RenditionOutput
from kube_transcode_worker.encode import run_encode
from kube_transcode_worker.errors import CancelRequestedError, JobError, PermanentJobError
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.fetch import Fetcher
from kube_transcode_worker.hls import (
    MASTER_PLAYLIST_NAME,
    parse_master_playlist,
    write_master_playlist,
)
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.probe import probe_source
from kube_transcode_worker.settings import WorkerSettings
from kube_transcode_worker.store import LadderStore

log = logging.getLogger(__name__)

SOURCE_NAME = "source"
LADDER_DIR = "ladder"


@dataclass(frozen=True)
class JobTools:
    """What every job uses, built once per worker."""

    settings: WorkerSettings
    fetcher: Fetcher
    store: LadderStore
    metrics: WorkerMetrics


def run_job(
    message: JobMessage, tools: JobTools, reporter: AttemptReporter, cancel: threading.Event
) -> JobOutputs:
    check_not_cancelled(message, tools.store)
    tools.settings.worker_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(
        tempfile.mkdtemp(prefix=f"job-{message.job.uid}-", dir=tools.settings.worker_dir)
    )
    try:
        return _run_in(scratch, message, tools, reporter, cancel)
    except JobError as error:
        error.in_user_terms(user_names(scratch, message))
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def user_names(scratch: Path, message: JobMessage) -> dict[str, str]:
    """A job's scratch files as its user knows them: the source URL, the output location."""
    names: dict[str, str] = {}
    for path, known_as in (
        (scratch / SOURCE_NAME, message.source),
        (scratch / LADDER_DIR, message.output.uri().rstrip("/")),
        (scratch, "the worker's scratch space"),
    ):
        names[str(path)] = known_as
        names[str(path.resolve())] = known_as
    return names


def _run_in(
    scratch: Path,
    message: JobMessage,
    tools: JobTools,
    reporter: AttemptReporter,
    cancel: threading.Event,
) -> JobOutputs:
    settings, metrics = tools.settings, tools.metrics
    reporter.phase(Phase.fetching)
    fetched = tools.fetcher.fetch(message.source, scratch / SOURCE_NAME, cancel)
    metrics.fetch_seconds.observe(fetched.seconds)
    metrics.fetched_bytes.inc(fetched.size_bytes)
    log.info("fetched %d bytes in %.1f s", fetched.size_bytes, fetched.seconds)

    reporter.phase(Phase.probing)
    source = probe_source(fetched.path, settings.probe_limits)
    plan = _plan(message, source)

    reporter.phase(Phase.transcoding)
    ladder = scratch / LADDER_DIR
    encoded = run_encode(
        plan,
        fetched.path,
        ladder,
        reporter.progress,
        cancel,
        preset=settings.ffmpeg_preset,
        ffmpeg=settings.ffmpeg_binary,
        allowed_demuxers=settings.probe_limits.allowed_demuxers,
    )
    metrics.encode_seconds.observe(encoded.elapsed_seconds)
    if encoded.elapsed_seconds > 0:
        metrics.encode_speed.observe(encoded.encoded_seconds / encoded.elapsed_seconds)
    master = write_master_playlist(ladder, plan)

    reporter.phase(Phase.uploading)
    out = message.output
    stored = tools.store.publish(
        ladder,
        out.bucket,
        out.prefix,
        cancel,
        before_master=lambda: check_not_cancelled(message, tools.store),
    )
    metrics.upload_seconds.observe(stored.seconds)
    log.info(
        "stored %d objects (%d bytes) in %.1f s, removed %d stale",
        len(stored.keys),
        stored.bytes_uploaded,
        stored.seconds,
        len(stored.removed),
    )
    return outputs(message, plan, master.read_text())


def check_not_cancelled(message: JobMessage, store: LadderStore) -> None:
    """Raises CancelRequestedError when the operator's marker covers this message's job."""
    marker = store.cancel_marker(message.output.bucket, message.job.uid)
    if marker is not None and marker.covers(message.job):
        raise CancelRequestedError(marker.describe())


def _plan(message: JobMessage, source: SourceInfo) -> LadderPlan:
    try:
        return plan_ladder(source, message.ladder.resolve(), hls=message.hls)
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
    return JobOutputs(
        master_uri=message.output.uri(MASTER_PLAYLIST_NAME),
        renditions=tuple(renditions),
        has_audio=plan.audio is not None and AUDIO_RENDITION_NAME in master_text,
    )
