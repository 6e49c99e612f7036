"""TranscodeJobs through the installed chart, as a user sees them: kubectl, helm and S3 only.

One worker serves every test, so jobs run one at a time: the session's release configures the
chart's fixed worker Deployment with one Pod for this (tests/e2e/conftest.py), not the chart's
default autoscaled WorkerPool. Sources are 640x360 test pictures of 2 to 60 s. The restarts
of the operator and of RabbitMQ come last: they disturb the most.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from kube_transcode.ladder import NAMED_RUNGS, HlsOptions, plan_ladder
from kube_transcode_devstack import release as chart
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME
from kube_transcode_worker.playlists import parse_master_playlist
from kube_transcode_worker.probe import probe_source
from tests.e2e.helpers import (
    OPERATOR_PODS,
    TERMINAL,
    Jobs,
    Sources,
    condition,
    event_count,
    phase,
    ready_pods,
    release_kubectl,
    transcode_job,
    watching,
)
from tests.harness.media import check_ladder, check_media_playlist
from tests.harness.processes import ffmpeg_pids
from tests.harness.storage import download_folder, object_keys

pytestmark = pytest.mark.e2e

BUCKET = chart.DEFAULT_BUCKET
JOB_SECONDS = 90  # one job on a loaded two-core machine, with room to spare


def test_a_job_goes_queued_running_succeeded_and_leaves_a_playable_ladder(
    jobs: Jobs, sources: Sources, output_s3: Any, tmp_path: Path
) -> None:
    rungs = ("360p", "240p")
    with watching(jobs.k) as watch:
        jobs.apply(transcode_job("ladder", sources.long.url, rungs=rungs, segment_seconds=2))
        jobs.k(
            "wait", "transcodejob/ladder", "--for=condition=Succeeded", f"--timeout={JOB_SECONDS}s"
        )
    job = jobs.require("ladder")
    status = job["status"]

    assert watch.phases("ladder")[-3:] == ["Queued", "Running", "Succeeded"], watch.of("ladder")
    running = [s.progress or 0 for s in watch.of("ladder") if s.phase == "Running"]
    assert len(set(running)) >= 2, f"progress while Running: {running}"
    assert running == sorted(running), f"progress went back: {running}"
    print(f"progress seen while Running: {running}")
    assert (status["progress"], status["attempts"]) == (100, 1)
    assert condition(job, "Succeeded")["status"] == "True"
    assert condition(job, "Running")["status"] == "False"
    assert status["completionTime"] >= status["startTime"]

    prefix = f"{jobs.namespace}/ladder"
    assert status["outputs"]["masterPlaylist"] == f"s3://{BUCKET}/{prefix}/{MASTER_PLAYLIST_NAME}"
    assert status["outputs"]["masterPlaylistUrl"].endswith(f"/{BUCKET}/{prefix}/master.m3u8")
    # A player fetches the URL in status without credentials.
    played = requests.get(status["outputs"]["masterPlaylistUrl"], timeout=10)
    assert played.status_code == 200 and played.text.startswith("#EXTM3U")
    assert {r["name"]: r["resolution"] for r in status["outputs"]["renditions"]} == {
        "360p": "640x360",
        "240p": "426x240",
    }

    # `kubectl get tj` alone tells the story. The 60 s source is chunked by default (30 s
    # chunks): 2 video chunks and the audio, 3 parts.
    table = jobs.k("get", "tj")
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert header == [
        "NAME", "PHASE", "PROGRESS", "CHUNKS", "PRIORITY", "POOL", "ATTEMPTS", "AGE"
    ]  # fmt: skip
    assert row[:7] == ["ladder", "Succeeded", "100", "3/3", "normal", "default", "1"]
    wide = jobs.k("get", "tj", "-o", "wide")
    assert "WORKER" in wide and "kube-transcode-worker-default" in wide
    assert "2 renditions at s3://" in wide

    # Every playlist the master names exists, and every segment each of them names.
    keys = set(object_keys(output_s3, BUCKET, f"{prefix}/"))
    master = parse_master_playlist(
        output_s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{MASTER_PLAYLIST_NAME}")["Body"]
        .read()
        .decode()
    )
    assert sorted(v.uri for v in master.variants) == ["240p/index.m3u8", "360p/index.m3u8"]
    for uri in [v.uri for v in master.variants] + [m["URI"] for m in master.media]:
        assert f"{prefix}/{uri}" in keys, uri
    downloaded = download_folder(output_s3, BUCKET, prefix, tmp_path)
    for uri in [v.uri for v in master.variants] + [m["URI"] for m in master.media]:
        playlist = check_media_playlist(tmp_path / uri, 2, 0.1)
        folder = uri.rsplit("/", 1)[0]
        for segment in playlist.segments:
            assert f"{folder}/{segment.uri}" in downloaded
    # And it plays like the ladder planned for this source.
    plan = plan_ladder(
        probe_source(sources.long.path),
        [NAMED_RUNGS[r] for r in rungs],
        hls=HlsOptions(segment_seconds=2),
    )
    check_ladder(tmp_path, plan)


def test_a_high_priority_job_overtakes_the_normal_ones_waiting(
    jobs: Jobs, sources: Sources
) -> None:
    with watching(jobs.k) as watch:
        jobs.apply(transcode_job("busy", sources.long.url, rungs=("360p", "240p")))
        jobs.wait_phase(["busy"], ["Running"], JOB_SECONDS)
        waiting = ["low", "normal-1", "normal-2", "normal-3", "high"]
        priorities = ["low", "normal", "normal", "normal", "high"]
        # One List, created in this order: the high job is the last to arrive.
        jobs.apply(
            *(
                transcode_job(name, sources.tiny.url, priority=priority)
                for name, priority in zip(waiting, priorities, strict=True)
            )
        )
        jobs.wait_for(
            "every waiting job published",
            lambda js: all("published" in js.get(n, {}).get("status", {}) for n in waiting),
            30,
        )
        done = jobs.wait_finished(["busy", *waiting], 2 * JOB_SECONDS + 30 * len(waiting))
    assert {name: phase(job) for name, job in done.items()} == dict.fromkeys(done, "Succeeded")
    last_queued = max(watch.first(name, "Queued") for name in waiting)
    first_started = min(watch.first(name, "Running") for name in waiting)
    assert last_queued < first_started, "the worker must still be busy when all have arrived"
    started = sorted(waiting, key=lambda name: watch.first(name, "Running"))
    assert started[0] == "high", f"order the jobs ran in: {started}"
    assert started[-1] == "low", f"order the jobs ran in: {started}"


SOURCE = {"source": {"url": "s3://sources/video.mp4"}}
INVALID_SPECS = [
    pytest.param(
        {"source": {"url": "http://example.com/video.mp4"}},
        "source.url must start with s3:// or https://",
        id="plain-http-source",
    ),
    pytest.param(
        {"source": {"url": "s3://only-a-bucket"}},
        "source.url must name a host or bucket and an object",
        id="source-without-object",
    ),
    pytest.param({"ladder": {"preset": "mobile"}}, "spec.source: Required value", id="no-source"),
    pytest.param(
        {**SOURCE, "ladder": {"preset": "mobile", "rungs": [{"name": "240p"}]}},
        "exactly one of ladder.preset or ladder.rungs must be set",
        id="preset-and-rungs",
    ),
    pytest.param(
        {**SOURCE, "ladder": {"rungs": [{"name": "360p"}, {"name": "360p"}]}},
        "ladder.rungs names must be unique",
        id="duplicate-rungs",
    ),
    pytest.param(
        {**SOURCE, "ladder": {"rungs": [{"name": "phone", "height": 300}]}},
        "rung phone: height and videoBitrateKbps are required",
        id="custom-rung-without-bitrate",
    ),
    pytest.param(
        {**SOURCE, "ladder": {"rungs": [{"name": "odd", "height": 301, "videoBitrateKbps": 500}]}},
        "rung odd: height must be even",
        id="odd-height",
    ),
    pytest.param(
        {
            **SOURCE,
            "ladder": {"rungs": [{"name": "audio", "height": 240, "videoBitrateKbps": 300}]},
        },
        "rung name 'audio' is reserved",
        id="reserved-rung-name",
    ),
    pytest.param(
        {**SOURCE, "priority": "urgent"},
        'spec.priority: Unsupported value: "urgent": supported values: "low", "normal", "high"',
        id="unknown-priority",
    ),
    pytest.param(
        {**SOURCE, "output": {"prefix": "team/../other"}},
        "output.prefix must not contain '.' or '..' segments",
        id="prefix-escapes",
    ),
    pytest.param(
        {**SOURCE, "retry": {"backoffSeconds": 60, "maxBackoffSeconds": 5}},
        "retry.maxBackoffSeconds must be at least retry.backoffSeconds",
        id="backoff-above-max",
    ),
    pytest.param(
        {**SOURCE, "retry": {"attempts": 0}},
        "spec.retry.attempts: Invalid value: 0: "
        "spec.retry.attempts in body should be greater than or equal to 1",
        id="zero-attempts",
    ),
    pytest.param(
        {**SOURCE, "video": {"codecs": ["hevc"]}},
        "spec.video.codecs: Invalid value: video.codecs hevc and av1 need hls.segmentFormat: "
        "fmp4 (the default is ts; HLS carries them in fragmented MP4 only)",
        id="hevc-without-fmp4",
    ),
    pytest.param(
        {**SOURCE, "video": {"codecs": ["vp9"]}},
        'spec.video.codecs[0]: Unsupported value: "vp9": supported values: "h264", "hevc", "av1"',
        id="unknown-codec",
    ),
    pytest.param(
        {**SOURCE, "video": {"codecs": ["h264", "h264"]}},
        'spec.video.codecs[1]: Duplicate value: "h264"',
        id="duplicate-codecs",
    ),
    pytest.param(
        {**SOURCE, "thumbnails": {"storyboard": {"intervalSeconds": 0}}},
        "spec.thumbnails.storyboard.intervalSeconds in body should be greater than or equal to 1",
        id="storyboard-interval-zero",
    ),
]


@pytest.mark.parametrize(("spec", "message"), INVALID_SPECS)
def test_the_api_server_refuses_an_invalid_spec_with_a_readable_message(
    jobs: Jobs, spec: dict[str, Any], message: str
) -> None:
    manifest = {**transcode_job("bad", "s3://unused/x.mp4"), "spec": spec}
    proc = jobs.k.run("apply", "-f", "-", input=yaml.safe_dump(manifest))
    assert proc.returncode != 0
    assert 'The TranscodeJob "bad" is invalid' in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert jobs.get("bad") is None


def test_the_api_server_accepts_every_codec_in_fmp4(jobs: Jobs) -> None:
    manifest = transcode_job("every-codec", "s3://unused/x.mp4")
    manifest["spec"] |= {
        "video": {"codecs": ["h264", "hevc", "av1"]},
        "hls": {"segmentFormat": "fmp4"},
    }
    proc = jobs.k.run("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(manifest))
    assert proc.returncode == 0, proc.stderr
    assert "transcodejob.kubetranscode.io/every-codec created (server dry run)" in proc.stdout


def test_the_operator_refuses_output_outside_the_namespace_at_once(
    jobs: Jobs, sources: Sources
) -> None:
    jobs.apply(
        transcode_job("elsewhere", sources.tiny.url, output={"prefix": "someone-else/video"})
    )
    job = jobs.wait_finished(["elsewhere"], 30)["elsewhere"]
    failed = condition(job, "Failed")
    assert (phase(job), failed["reason"]) == ("Failed", "OutputNotAllowed")
    assert f"may only write under '{jobs.namespace}/'" in failed["message"]
    assert "published" not in job["status"], "a refused job must never reach the queue"
    assert event_count(jobs.events("elsewhere", "OutputNotAllowed")) == 1


def test_a_missing_and_a_corrupt_source_fail_at_once_with_their_reason(
    jobs: Jobs, sources: Sources
) -> None:
    jobs.apply(
        transcode_job("missing", sources.missing),
        transcode_job("corrupt", sources.corrupt.url),
    )
    done = jobs.wait_finished(["missing", "corrupt"], 2 * JOB_SECONDS)
    expected = {
        "missing": ("SourceNotFound", f"{sources.missing} does not exist"),
        "corrupt": ("UnreadableSource", f"ffprobe cannot read the source: {sources.corrupt.url}"),
    }
    for name, (reason, text) in expected.items():
        job = done[name]
        failed = condition(job, "Failed")
        assert (phase(job), failed["status"], failed["reason"]) == ("Failed", "True", reason)
        assert text in failed["message"], failed["message"]
        # The reason names what the user gave, never the worker's scratch files.
        assert "node-agent" not in failed["message"] and "file:" not in failed["message"]
        # Permanent: not retried, although retry.attempts defaults to 3.
        assert job["status"]["attempts"] == 1, job["status"]
        warnings = jobs.events(name, "Failed")
        assert warnings and warnings[0]["type"] == "Warning" and reason in warnings[0]["message"]


def test_a_transient_failure_is_retried_up_to_retry_attempts(jobs: Jobs, sources: Sources) -> None:
    """FFmpeg killed (as the OOM killer would) is transient: each attempt is killed here, and the
    job gives up after exactly its spec.retry.attempts, not the worker's own limit."""
    with watching(jobs.k) as watch:
        jobs.apply(
            transcode_job("killed", sources.medium.url, retry={"attempts": 2, "backoffSeconds": 1})
        )
        uid = jobs.require("killed")["metadata"]["uid"]
        kills = 0

        def kill_encoders_until_finished() -> bool:
            nonlocal kills
            for pid in encoders_of(uid):
                kill(pid)
                kills += 1
            return phase(jobs.get("killed")) in TERMINAL

        wait_until(
            "every attempt's FFmpeg killed until the job ends",
            kill_encoders_until_finished,
            2 * JOB_SECONDS,
            jobs.table,
            interval=0.1,
        )
    job = jobs.require("killed")
    failed = condition(job, "Failed")
    assert (phase(job), failed["reason"], job["status"]["attempts"]) == (
        "Failed",
        "EncoderKilled",
        2,
    )
    assert "gave up after 2 of 2 attempts" in failed["message"]
    assert kills >= 2
    assert "Retrying" in watch.phases("killed")
    assert event_count(jobs.events("killed", "AttemptFailed")) == 1


def encoders_of(uid: str) -> list[int]:
    """The FFmpeg processes of the job with this uid: its scratch folder names the uid."""
    return ffmpeg_pids(argument=f"job-{uid}-")


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # finished meanwhile
        os.kill(pid, signal.SIGKILL)


def test_deleting_a_running_job_stops_its_ffmpeg_and_removes_its_outputs(
    jobs: Jobs, sources: Sources, output_s3: Any
) -> None:
    jobs.apply(transcode_job("doomed", sources.long.url, rungs=("360p", "240p")))
    jobs.apply(transcode_job("next", sources.tiny.url))
    uid = jobs.require("doomed")["metadata"]["uid"]
    wait_until(
        "the job Running and its FFmpeg",
        lambda: phase(jobs.get("doomed")) == "Running" and encoders_of(uid),
        JOB_SECONDS,
        jobs.table,
    )
    prefix = f"{jobs.namespace}/doomed/"
    # What an upload cut short would leave behind.
    output_s3.put_object(Bucket=BUCKET, Key=f"{prefix}360p/segment-00000.ts", Body=b"partial")

    started = time.monotonic()
    jobs.k("delete", "transcodejob", "doomed", "--wait=false")
    wait_until("FFmpeg to stop", lambda: not encoders_of(uid), 10, jobs.table)
    stopped = time.monotonic() - started
    jobs.wait_gone("doomed", 60)
    gone = time.monotonic() - started
    assert object_keys(output_s3, BUCKET, prefix) == []
    # The worker is free at once: the next job does not wait for the deleted one's encode.
    job = jobs.wait_finished(["next"], JOB_SECONDS)["next"]
    assert phase(job) == "Succeeded", job["status"]
    assert object_keys(output_s3, BUCKET, prefix) == [], "the cancelled worker uploaded afterwards"
    print(f"FFmpeg stopped {stopped:.1f}s and the job was gone {gone:.1f}s after kubectl delete")
    # Not the operator's cancel grace period (30 s): the worker confirmed it had stopped.
    assert gone < 25, f"deletion took {gone:.1f}s"


def test_an_operator_restart_loses_no_job_and_publishes_none_twice(
    jobs: Jobs, sources: Sources, release: Stack
) -> None:
    first = ["r1", "r2", "r3"]
    # r1 takes the only worker first; r2 and r3 then wait in the queue behind it. (Applied
    # together, the three are published in no fixed order.)
    jobs.apply(transcode_job("r1", sources.long.url))
    jobs.wait_phase(["r1"], ["Running"], JOB_SECONDS)
    jobs.apply(transcode_job("r2", sources.tiny.url), transcode_job("r3", sources.tiny.url))
    before = jobs.wait_for(
        "r1 Running, r2 and r3 Queued",
        lambda js: (
            phase(js.get("r1")) == "Running"
            and all(phase(js.get(n)) == "Queued" for n in ("r2", "r3"))
        ),
        JOB_SECONDS,
    )
    keys = {name: before[name]["status"]["published"]["key"] for name in first}

    system = release_kubectl(release)
    old = system(
        "get", "pods", "-l", OPERATOR_PODS, "-o", "jsonpath={.items[*].metadata.name}"
    ).split()
    started = time.monotonic()
    system("delete", "pods", "-l", OPERATOR_PODS, "--wait=false")
    system("wait", "pods", *old, "--for=delete", "--timeout=90s")
    jobs.apply(transcode_job("r4", sources.tiny.url))  # while no operator is Ready
    wait_until(
        "a new operator Pod to be Ready",
        lambda: ready_pods(system, OPERATOR_PODS),
        120,
        lambda: system("get", "pods", "-o", "wide"),
    )
    back = time.monotonic() - started

    done = jobs.wait_finished([*first, "r4"], 4 * JOB_SECONDS)
    for name, job in done.items():
        status = job["status"]
        assert (phase(job), status["attempts"]) == ("Succeeded", 1), (name, status)
        assert event_count(jobs.events(name, "Queued")) == 1, f"{name} published more than once"
        assert status["published"]["key"] == f"{job['metadata']['uid']}/1/1"
    assert {name: done[name]["status"]["published"]["key"] for name in first} == keys
    print(f"operator back {back:.1f}s after its Pod was deleted")


def test_a_rabbitmq_restart_lets_every_job_finish(
    jobs: Jobs, sources: Sources, release: Stack
) -> None:
    rabbitmq = release.rabbitmq
    names = ["b1", "b2", "b3"]
    with watching(jobs.k) as watch:
        jobs.apply(transcode_job("b1", sources.long.url))  # first on the only worker
        jobs.wait_phase(["b1"], ["Running"], JOB_SECONDS)
        jobs.apply(transcode_job("b2", sources.tiny.url), transcode_job("b3", sources.tiny.url))
        jobs.wait_for(
            "b1 Running, b2 and b3 Queued",
            lambda js: (
                phase(js.get("b1")) == "Running"
                and all(phase(js.get(n)) == "Queued" for n in ("b2", "b3"))
            ),
            JOB_SECONDS,
        )
        started = time.monotonic()
        rabbitmq.proc.stop(grace_seconds=30)
        try:
            jobs.apply(transcode_job("b4", sources.tiny.url))  # nowhere to publish it now
            pending = jobs.wait_for(
                "b4 to say the broker is unavailable",
                lambda js: phase(js.get("b4")) == "Pending",
                30,
            )["b4"]
        finally:
            rabbitmq.up()
        back = time.monotonic() - started
        done = jobs.wait_finished([*names, "b4"], 4 * JOB_SECONDS)
    queued = condition(pending, "Queued")
    assert (queued["status"], queued["reason"]) == ("False", "BrokerUnavailable")
    assert "cannot publish to RabbitMQ" in queued["message"]
    assert {name: phase(job) for name, job in done.items()} == dict.fromkeys(done, "Succeeded")
    assert watch.phases("b4")[-3:] == ["Queued", "Running", "Succeeded"]
    for name in done:
        assert event_count(jobs.events(name, "Queued")) == 1, name
    print(f"RabbitMQ was down for {back:.1f}s")
