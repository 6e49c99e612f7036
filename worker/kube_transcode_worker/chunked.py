"""A chunked job on the worker: planning it into parts, and running one part.

Planning (a whole job whose source is long enough, see kube_transcode.chunks): the fetched
source is staged in the work area (workarea.py) unless it is an s3:// object already, and
one ChunkTask per video chunk plus one for the audio become messages for the job's own
queue, at its priority. The settler publishes them (confirmed) before it acks the job's
delivery: a crash in between plans and publishes again, and a part delivered twice is
stored once (its manifest says so) and encoded at most twice.

A part: unless its manifest is stored already, mark the encode begun, encode its range from
the staged source's presigned URL (a video chunk makes its range's storyboard thumbnails, and
the poster if its range holds the poster's time, in the same run: thumbnails.py), store its
segments at their ladder keys and its thumbnails in the work area, then (if the job is still
wanted) its manifest, which lists them. Whoever then sees every part stored assembles the
playlists, master last (assemble.py), tiles the storyboard's sheets from the thumbnails, and
reports the job succeeded; two parts finishing at once may both assemble, which writes the
same objects twice. A redelivered part that finds its manifest stored skips the encode and
goes straight to that check, so no assembly is lost to a crash after the manifest was written.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from kube_transcode.chunks import PLAN_TASK, ChunkCounts, TimeRange
from kube_transcode.ladder import LadderPlan, SourceInfo, X264Preset
from kube_transcode.messages import (
    ChunkReport,
    ChunkTask,
    JobMessage,
    JobOutputs,
    Phase,
    StagedSource,
)
from kube_transcode_worker.assemble import assemble, manifest_of_folder, segment_keys
from kube_transcode_worker.errors import PermanentJobError
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME
from kube_transcode_worker.thumbnails import finish as finish_thumbnails
from kube_transcode_worker.thumbnails import plan_thumbnails
from kube_transcode_worker.tools import JobTools, check_not_cancelled, encode, outputs, plan_for
from kube_transcode_worker.workarea import WorkArea

log = logging.getLogger(__name__)

PARTS_DIR = "part"
PLAYLISTS_DIR = "playlists"
THUMBS_DIR = "thumbs"


@dataclass(frozen=True)
class TaskResult:
    """How a delivery's work ended well: the job's outputs, or a part stored, or a plan."""

    outputs: JobOutputs | None = None
    chunk: ChunkReport | None = None
    # Parts to publish to the job's queue before the delivery is acked (a plan's result).
    tasks: tuple[JobMessage, ...] = field(default=())


def part_tasks(
    message: JobMessage,
    source: SourceInfo,
    staged: StagedSource,
    ranges: tuple[TimeRange, ...],
    preset: X264Preset,
) -> tuple[JobMessage, ...]:
    """Pure: the messages of a planned job's parts, the audio first, then the video chunks."""
    common = {"chunks": len(ranges), "source": staged, "probed": source, "preset": preset}
    tasks = []
    if source.has_audio:
        # First: for a long source it is the longest single part; started last, it would
        # set the makespan on a pool wide enough for every chunk at once.
        tasks.append(
            ChunkTask(
                kind="audio",
                index=len(ranges),
                start_seconds=0.0,
                duration_seconds=source.duration_seconds,
                first_segment=0,
                **common,  # type: ignore[arg-type]
            )
        )
    tasks += [
        ChunkTask(
            kind="video",
            index=r.index,
            start_seconds=r.start_seconds,
            duration_seconds=r.duration_seconds,
            first_segment=r.first_segment,
            **common,  # type: ignore[arg-type]
        )
        for r in ranges
    ]
    return tuple(message.for_task(task) for task in tasks)


def split(
    message: JobMessage,
    fetched: Path,
    source: SourceInfo,
    ranges: tuple[TimeRange, ...],
    work: WorkArea,
    preset: X264Preset,
    cancel: threading.Event,
) -> TaskResult:
    staged = _staged_source(message, fetched, work, cancel)
    tasks = part_tasks(message, source, staged, ranges, preset)
    total = len(tasks)
    log.info("planned %d parts (%d video chunks) for %s", total, len(ranges), message.job.uid)
    return TaskResult(
        chunk=ChunkReport(task=PLAN_TASK, counts=ChunkCounts(total=total)), tasks=tasks
    )


def _staged_source(
    message: JobMessage, fetched: Path, work: WorkArea, cancel: threading.Event
) -> StagedSource:
    """Where parts read the source: an s3:// source where it is, any other staged once."""
    scheme, _, rest = message.source.partition("://")
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        return StagedSource(bucket=bucket, key=key)
    return work.stage(fetched, cancel)


def run_part(
    scratch: Path,
    message: JobMessage,
    tools: JobTools,
    work: WorkArea,
    reporter: AttemptReporter,
    cancel: threading.Event,
) -> TaskResult:
    task = message.task
    assert task is not None  # run_job calls this for parts only
    settings, metrics = tools.settings, tools.metrics
    plan = plan_for(message, task.probed)
    total = task.total_tasks
    wanted = partial(check_not_cancelled, message, tools.store)
    if work.finished():
        log.info(
            "%s of %s: the job is assembled already; nothing to do", task.name, message.job.uid
        )
        return TaskResult(
            chunk=ChunkReport(
                task=task.name, counts=ChunkCounts(total=total, done=total), stored=True
            )
        )
    if work.manifest(task.name) is None:
        work.mark_started(task.name, settings.pod_name)
        reporter.chunk = ChunkReport(task=task.name, counts=work.counts(total))
        reporter.phase(Phase.transcoding)
        out = scratch / PARTS_DIR
        thumbs = scratch / THUMBS_DIR
        shots = plan_thumbnails(message.thumbnails, task.probed, task)
        url = work.presigned_url(task.source)
        encoded = encode(
            tools,
            plan,
            url,
            out,
            reporter,
            cancel,
            preset=task.preset,
            part=task,
            thumbnails=None if shots.empty else shots,
            thumbs_dir=None if shots.empty else thumbs,
        )
        reporter.phase(Phase.uploading)
        stored = tools.store.put_segments(out, message.output.bucket, message.output.prefix, cancel)
        metrics.upload_seconds.observe(stored.seconds)
        manifest = manifest_of_folder(task.name, out, plan, audio=task.kind == "audio")
        if not shots.empty:
            manifest = manifest.model_copy(update=work.store_thumbnails(thumbs, cancel))
        wanted()
        work.store_manifest(manifest)
        log.info(
            "%s of %s stored: %d segments in %.1f s of encode",
            task.name,
            message.job.uid,
            len(stored.keys),
            encoded.elapsed_seconds,
        )
    else:
        log.info("%s of %s is stored already; not encoding it again", task.name, message.job.uid)
    counts = work.counts(total)
    report = ChunkReport(task=task.name, counts=counts, stored=True)
    reporter.chunk = report
    if counts.done < total:
        return TaskResult(chunk=report)
    return TaskResult(outputs=_assemble(scratch, message, plan, tools, work), chunk=report)


def _assemble(
    scratch: Path, message: JobMessage, plan: LadderPlan, tools: JobTools, work: WorkArea
) -> JobOutputs:
    """The ladder's playlists from the stored parts, master last; the work area removed."""
    task = message.task
    assert task is not None
    manifests = work.manifests()
    try:
        playlists = assemble(plan, manifests, task.chunks)
    except ValueError as exc:
        raise PermanentJobError("AssemblyFailed", str(exc)) from None
    folder = scratch / PLAYLISTS_DIR
    for relative, text in playlists.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    thumbs = scratch / THUMBS_DIR
    work.fetch_thumbnails(manifests, thumbs)
    finish_thumbnails(message.thumbnails, task.probed, thumbs, folder, tools.settings.ffmpeg_binary)
    out = message.output
    tools.store.publish(
        folder,
        out.bucket,
        out.prefix,
        threading.Event(),  # the parts are stored: finishing is quick, and wanted is checked
        before_master=partial(check_not_cancelled, message, tools.store),
        stored_before=segment_keys(out.prefix, manifests),
    )
    work.remove_generations_up_to_own()
    log.info("assembled %d parts of %s", len(manifests), message.job.uid)
    return outputs(message, plan, playlists[MASTER_PLAYLIST_NAME])
