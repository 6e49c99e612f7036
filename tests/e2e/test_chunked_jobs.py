"""Chunked TranscodeJobs through the installed chart, as a user sees them: kubectl and S3.

The 60 s source with 12 s chunks is 5 video chunks and the audio: 6 parts. The release's
fixed worker Deployment is scaled to two Pods for this module (and back to the session's
one afterwards), so two workers take parts of one job at once. The operator's and
RabbitMQ's restarts mid-job lose no part and store none twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube_transcode.ladder import HlsOptions, plan_ladder, rung_by_name
from kube_transcode.messages import work_area_prefix
from kube_transcode_devstack import release as chart
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from kube_transcode_worker.probe import probe_source
from tests.e2e.helpers import (
    OPERATOR_PODS,
    WORKER,
    WORKERS,
    Job,
    Jobs,
    Sources,
    ensure_ready,
    phase,
    ready_pods,
    release_kubectl,
    transcode_job,
    watching,
)
from tests.harness.media import check_ladder
from tests.harness.processes import ffmpeg_pids
from tests.harness.storage import download_folder, object_keys

pytestmark = pytest.mark.e2e

BUCKET = chart.DEFAULT_BUCKET
RUNGS = ("360p", "240p")
PARTS = 6
JOB_SECONDS = 240  # six parts on two workers of a loaded two-core machine, with room to spare


@pytest.fixture(scope="module")
def two_workers(release: Stack) -> Iterator[None]:
    ensure_ready(release, WORKER, 2)
    yield
    ensure_ready(release, WORKER, WORKERS)


def chunked_job(name: str, sources: Sources) -> Job:
    return transcode_job(name, sources.long.url, rungs=RUNGS, chunking={"chunkSeconds": 12})


def chunks(job: Job | None) -> dict[str, Any]:
    return dict(((job or {}).get("status") or {}).get("chunks") or {})


def parts_stored(jobs: Jobs, name: str, at_least: int) -> None:
    jobs.wait_for(
        f"{name} to have {at_least} parts stored",
        lambda js: chunks(js.get(name)).get("done", 0) >= at_least,
        JOB_SECONDS,
    )


def encoders_of(uid: str) -> list[int]:
    """The job's FFmpeg processes (plan and parts alike): their scratch folders name the uid."""
    return ffmpeg_pids(argument=f"job-{uid}-")


def test_a_long_job_is_encoded_in_parts_by_two_workers_and_shows_its_chunks(
    jobs: Jobs, sources: Sources, output_s3: Any, two_workers: None, tmp_path: Path
) -> None:
    with watching(jobs.k) as watch:
        jobs.apply(chunked_job("film", sources))
        done = jobs.wait_finished(["film"], JOB_SECONDS)["film"]
    status = done["status"]
    assert phase(done) == "Succeeded", status
    assert chunks(done) == {
        "total": PARTS,
        "done": PARTS,
        "running": 0,
        "redone": 0,
        "summary": f"{PARTS}/{PARTS}",
        "workers": [],
    }
    running = [s.progress or 0 for s in watch.of("film") if s.phase == "Running"]
    assert running == sorted(running) and len(set(running)) >= 3, running
    assert "CHUNKS" in jobs.k("get", "tj", "film")
    assert f"{PARTS}/{PARTS}" in jobs.k("get", "tj", "film")
    most_at_once = max(s.chunks_running or 0 for s in watch.of("film"))
    assert most_at_once == 2, "two workers encode parts of the job at once"

    prefix = f"{jobs.namespace}/film"
    dest = tmp_path / "film"
    download_folder(output_s3, BUCKET, prefix, dest)
    info = probe_source(sources.long.path)
    check_ladder(dest, plan_ladder(info, [rung_by_name(r) for r in RUNGS], hls=HlsOptions()))
    uid = done["metadata"]["uid"]
    generation = done["metadata"]["generation"]
    assert object_keys(output_s3, BUCKET, work_area_prefix(uid)) == [
        f"{work_area_prefix(uid)}{generation}.done"
    ]


def test_deleting_a_chunked_job_mid_way_stops_every_part_and_removes_everything(
    jobs: Jobs, sources: Sources, output_s3: Any, two_workers: None
) -> None:
    jobs.apply(chunked_job("doomed", sources))
    uid = jobs.require("doomed")["metadata"]["uid"]
    parts_stored(jobs, "doomed", 1)
    wait_until("its parts encoding", lambda: encoders_of(uid), JOB_SECONDS, jobs.table)

    started = time.monotonic()
    jobs.k("delete", "transcodejob", "doomed", "--wait=false")
    wait_until("every part's FFmpeg to stop", lambda: not encoders_of(uid), 15, jobs.table)
    stopped = time.monotonic() - started
    jobs.wait_gone("doomed", 60)
    assert object_keys(output_s3, BUCKET, f"{jobs.namespace}/doomed/") == []
    assert object_keys(output_s3, BUCKET, work_area_prefix(uid)) == []
    # The parts still queued are dropped unencoded: nothing comes back afterwards.
    jobs.apply(transcode_job("after", sources.tiny.url))
    assert phase(jobs.wait_finished(["after"], JOB_SECONDS)["after"]) == "Succeeded"
    assert not encoders_of(uid)
    assert object_keys(output_s3, BUCKET, f"{jobs.namespace}/doomed/") == []
    print(f"every part's FFmpeg stopped {stopped:.1f}s after kubectl delete")


def test_an_operator_restart_mid_job_loses_no_part_and_redoes_none(
    jobs: Jobs, sources: Sources, release: Stack, two_workers: None
) -> None:
    jobs.apply(chunked_job("steady", sources))
    parts_stored(jobs, "steady", 1)
    system = release_kubectl(release)
    old = system("get", "pods", "-l", OPERATOR_PODS, "-o", "jsonpath={.items[*].metadata.name}")
    system("delete", "pods", "-l", OPERATOR_PODS, "--wait=false")
    system("wait", "pods", *old.split(), "--for=delete", "--timeout=90s")
    wait_until("a new operator Ready", lambda: ready_pods(system, OPERATOR_PODS), 120)

    done = jobs.wait_finished(["steady"], JOB_SECONDS)["steady"]
    assert phase(done) == "Succeeded", done["status"]
    assert (chunks(done)["done"], chunks(done)["redone"]) == (PARTS, 0)
    assert done["status"]["attempts"] == 1


def test_a_rabbitmq_restart_mid_job_loses_no_part_and_redoes_only_those_in_flight(
    jobs: Jobs, sources: Sources, release: Stack, two_workers: None
) -> None:
    jobs.apply(chunked_job("through", sources))
    parts_stored(jobs, "through", 2)
    rabbitmq = release.rabbitmq
    rabbitmq.proc.stop(grace_seconds=30)
    rabbitmq.up()

    done = jobs.wait_finished(["through"], 2 * JOB_SECONDS)["through"]
    assert phase(done) == "Succeeded", done["status"]
    counts = chunks(done)
    # The two workers' parts in flight went back with their connections: at most those
    # two are encoded again; the stored ones never are.
    assert counts["done"] == PARTS and counts["redone"] <= 2, counts
    assert done["status"]["attempts"] == 1
