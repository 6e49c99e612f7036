"""One worker job in a process of its own, for the benchmark to measure as a pod would run it.

    python -m benchmarks.worker_job SOURCE_URL BUCKET PREFIX RUNG[,RUNG...] PHASES_JSON

Settings come from the worker's KT_ variables (S3 endpoint and keys, preset, work dir). The
job goes through `run_job` with the worker's own tools (`build_tools`), minus the broker:
events go to a sink that only notes when each phase began. Writes the seconds of each phase
(fetching, probing, transcoding, uploading) and of the whole job to PHASES_JSON, so a slow
run shows where its time went.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from kube_transcode.ladder import HlsOptions
from kube_transcode.messages import JobEvent, JobMessage, JobRef, LadderRequest, OutputLocation
from kube_transcode_worker.events import AttemptReporter
from kube_transcode_worker.job import run_job
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.settings import load_settings
from kube_transcode_worker.wiring import build_tools

SEGMENT_SECONDS = 6


def main(argv: list[str]) -> int:
    source, bucket, prefix, rungs, phases_json = argv
    settings = load_settings()
    tools = build_tools(settings, WorkerMetrics())
    message = JobMessage(
        job=JobRef(uid="bench", namespace="bench", name="worker", generation=1),
        source=source,
        ladder=LadderRequest(rungs=tuple(rungs.split(","))),
        hls=HlsOptions(segment_seconds=SEGMENT_SECONDS),
        output=OutputLocation(bucket=bucket, prefix=prefix),
    )
    began: dict[str, float] = {}

    def note_phase(event: JobEvent) -> None:
        began.setdefault(event.phase.value, time.monotonic())

    reporter = AttemptReporter(message, settings.pod_name, note_phase)
    job_started = time.monotonic()
    run_job(message, tools, reporter, threading.Event())
    finished = time.monotonic()
    starts = sorted(began.items(), key=lambda item: item[1])
    ends = [start for _, start in starts[1:]] + [finished]
    phases = {phase: end - start for (phase, start), end in zip(starts, ends, strict=True)}
    phases["job"] = finished - job_started
    Path(phases_json).write_text(json.dumps(phases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
