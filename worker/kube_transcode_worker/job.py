"""One delivery's work, end to end, on the worker's job thread; scratch removed after.

A whole job: fetch, probe, plan. A short source (or chunking Off) is encoded in one run:
encode, master playlist, store. A long one is planned into parts (chunked.py) that other
deliveries run; a part encodes its range, stores it, and the last one assembles the ladder.

It raises JobError subclasses for the consumer to settle and never touches the broker
itself: phases and progress go through the reporter, the parts to publish go back in the
TaskResult.

The operator's cancel marker is read before anything starts and again right before the
master playlist (or a part's manifest) is stored: a job cancelled while it waited in the
queue, or whose broadcast cancel this worker missed, produces no outputs
(CancelRequestedError).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from kube_transcode.chunks import plan_chunks
from kube_transcode.messages import JobMessage, Phase
from kube_transcode_worker.chunked import TaskResult, run_part, split
from kube_transcode_worker.errors import JobError, PermanentJobError
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.hls import write_master_playlist
from kube_transcode_worker.probe import probe_source
from kube_transcode_worker.thumbnails import finish as finish_thumbnails
from kube_transcode_worker.thumbnails import plan_thumbnails
from kube_transcode_worker.tools import JobTools, check_not_cancelled, encode, outputs, plan_for
from kube_transcode_worker.workarea import WorkArea

log = logging.getLogger(__name__)

SOURCE_NAME = "source"
LADDER_DIR = "ladder"
THUMBS_DIR = "thumbs"


def run_job(
    message: JobMessage, tools: JobTools, reporter: AttemptReporter, cancel: threading.Event
) -> TaskResult:
    check_not_cancelled(message, tools.store)
    tools.settings.worker_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(
        tempfile.mkdtemp(prefix=f"job-{message.job.uid}-", dir=tools.settings.worker_dir)
    )
    work = WorkArea(tools.store, message.output.bucket, message.job)
    try:
        if message.task is not None:
            return run_part(scratch, message, tools, work, reporter, cancel)
        return _run_in(scratch, message, tools, work, reporter, cancel)
    except JobError as error:
        error.in_user_terms(user_names(scratch, message, work.presigned_urls_given))
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def user_names(scratch: Path, message: JobMessage, presigned: Sequence[str] = ()) -> dict[str, str]:
    """A job's scratch files (and a part's presigned source URL) as its user knows them."""
    names: dict[str, str] = {}
    for path, known_as in (
        (scratch / SOURCE_NAME, message.source),
        (scratch / LADDER_DIR, message.output.uri().rstrip("/")),
        (scratch, "the worker's scratch space"),
    ):
        names[str(path)] = known_as
        names[str(path.resolve())] = known_as
    names.update(dict.fromkeys(presigned, message.source))
    return names


def _run_in(
    scratch: Path,
    message: JobMessage,
    tools: JobTools,
    work: WorkArea,
    reporter: AttemptReporter,
    cancel: threading.Event,
) -> TaskResult:
    settings, metrics = tools.settings, tools.metrics
    reporter.phase(Phase.fetching)
    fetched = tools.fetcher.fetch(message.source, scratch / SOURCE_NAME, cancel)
    metrics.fetch_seconds.observe(fetched.seconds)
    metrics.fetched_bytes.inc(fetched.size_bytes)
    log.info("fetched %d bytes in %.1f s", fetched.size_bytes, fetched.seconds)

    reporter.phase(Phase.probing)
    source = probe_source(fetched.path, settings.probe_limits)
    plan = plan_for(message, source)
    try:
        ranges = plan_chunks(source.duration_seconds, message.hls.segment_seconds, message.chunking)
    except ValueError as exc:
        raise PermanentJobError("InvalidChunking", str(exc)) from None
    if ranges:
        return split(message, fetched.path, source, ranges, work, settings.ffmpeg_preset, cancel)

    reporter.phase(Phase.transcoding)
    ladder = scratch / LADDER_DIR
    thumbs = scratch / THUMBS_DIR
    encode(
        tools,
        plan,
        fetched.path,
        ladder,
        reporter,
        cancel,
        preset=settings.ffmpeg_preset,
        thumbnails=plan_thumbnails(message.thumbnails, source),
        thumbs_dir=thumbs,
    )
    finish_thumbnails(message.thumbnails, source, thumbs, ladder, settings.ffmpeg_binary)
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
    return TaskResult(outputs=outputs(message, plan, master.read_text()))
