"""The worker benchmark: a whole job against the bare FFmpeg ladder and the naive per-rung way.

On one generated source (1080p30 with audio), 5-rung ladder 240p..1080p, same preset:
  (a) the worker's whole job in its own process: fetch from MinIO, probe, one FFmpeg run,
      master playlist, upload to MinIO (`run_job` with the worker's tools);
  (b) the reference: the same single FFmpeg command (same filter graph) to local disk;
  (c) the naive way: one FFmpeg per rung, one after another, each decoding the source
      (audio encoded once, with the first rung, so the output is the same as (b)'s).
Targets: a/b <= 1.10 (the job's overhead around FFmpeg stays small), a/c <= 0.80 (decoding once
pays off). Rounds rotate the order of a, b, c so a slow spell on a shared machine does not
always land on the same variant.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from benchmarks import media
from benchmarks.measure import run_measured
from benchmarks.registry import Context
from benchmarks.report import Report, Sample, Variant
from kube_transcode.ladder import NAMED_RUNGS, HlsOptions, LadderPlan, plan_ladder
from kube_transcode_devstack.layout import tools_bin
from kube_transcode_devstack.services import MinIO
from kube_transcode_devstack.stack import Stack
from kube_transcode_worker.encode import ffmpeg_command
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME, MEDIA_PLAYLIST_NAME
from kube_transcode_worker.playlists import parse_master_playlist, parse_media_playlist
from kube_transcode_worker.probe import probe_source

RUNGS = ("240p", "360p", "480p", "720p", "1080p")
SEGMENT_SECONDS = 6  # the worker job's (benchmarks/worker_job.py)
TARGET_A_OVER_B = 1.10
TARGET_A_OVER_C = 0.80


class WorkerBenchmark:
    name = "worker"
    summary = "worker job (MinIO in and out) vs one FFmpeg ladder vs one FFmpeg per rung"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--duration",
            type=int,
            default=60,
            metavar="SECONDS",
            help="length of the generated 1080p30 source (default 60)",
        )

    def unavailable(self, context: Context) -> str | None:
        if not (tools_bin() / "minio").is_file():
            return f"no MinIO binary in {tools_bin()} (run `make deps`)"
        if shutil.which(media.FFMPEG) is None:
            return f"no {media.FFMPEG}"
        return None

    def run(self, context: Context) -> Report:
        options = context.options
        source = media.test_pattern(context.cache_dir, options.duration)
        plan = plan_ladder(
            probe_source(source),
            [NAMED_RUNGS[name] for name in RUNGS],
            hls=HlsOptions(segment_seconds=SEGMENT_SECONDS),
        )
        report = Report(
            benchmark=self.name,
            title=f"Worker: {options.duration} s 1080p30 source, {len(RUNGS)}-rung ladder "
            f"{RUNGS[0]}..{RUNGS[-1]}, x264 {options.preset}",
            variants=[
                Variant("a", "worker job: fetch from MinIO, encode, upload to MinIO"),
                Variant("b", "one FFmpeg for the ladder, local disk (reference)"),
                Variant("c", "one FFmpeg per rung, one after another (naive)"),
            ],
            environment=machine(),
        )
        phases: list[dict[str, float]] = []  # of each (a) run: where the job's time went
        stack = Stack.at(context.root / ".local")
        with running_minio(stack.minio) as minio, scratch_bucket(minio) as (client, bucket):
            client.upload_file(str(source), bucket, f"sources/{source.name}")
            url = f"s3://{bucket}/sources/{source.name}"
            with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
                work = Path(tmp)
                runs: dict[str, Callable[[int], Sample]] = {
                    "a": lambda i: whole_job(
                        phases, url, client, bucket, f"out/{i}", minio, work, options
                    ),
                    "b": lambda _i: single_ladder(plan, source, work / "b", options.preset),
                    "c": lambda _i: per_rung(plan, source, work / "c", options.preset),
                }
                for round_ in range(options.repeat):
                    keys = list(runs)
                    # Rotate: a,b,c then b,c,a then c,a,b ...
                    for key in keys[round_ % 3 :] + keys[: round_ % 3]:
                        print(f"  round {round_ + 1}/{options.repeat}: ({key}) ...", flush=True)
                        report.variant(key).samples.append(runs[key](round_))
        report.environment["load average after"] = load_average()
        report.ratio("a/b", TARGET_A_OVER_B, "job overhead over bare FFmpeg")
        report.ratio("a/c", TARGET_A_OVER_C, "job vs naive per-rung FFmpeg")
        # CPU seconds suffer less than wall time from other work on a shared machine.
        report.ratio("a/b", measure="cpu")
        report.ratio("a/c", measure="cpu")
        for number, run in enumerate(phases, 1):
            spent = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in run.items())
            report.notes.append(f"(a) run {number}: {spent}")
        report.notes.append(
            "wall and CPU are medians over the runs, min-max the spread of wall time; peak RSS "
            "is the largest sum over the process tree (Python and FFmpeg), sampled every 50 ms"
        )
        return report


BENCHMARK = WorkerBenchmark()


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "load average before": load_average(),
        "ffmpeg": ffmpeg_version(media.FFMPEG),
    }


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def ffmpeg_version(ffmpeg: str) -> str:
    import subprocess

    out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True).stdout
    return out.split("\n", 1)[0].removeprefix("ffmpeg version ").split(" Copyright")[0]


@contextmanager
def running_minio(minio: MinIO) -> Iterator[MinIO]:
    """MinIO as the tests' fixtures have it: reused when running, else started and stopped."""
    was_running = minio.proc.running()
    minio.up()
    try:
        yield minio
    finally:
        if not was_running:
            minio.down()


@contextmanager
def scratch_bucket(minio: MinIO) -> Iterator[tuple[Any, str]]:
    """A bucket of the run's own (the source and every job's output), removed afterwards."""
    client: Any = boto3.client(
        "s3",
        endpoint_url=minio.endpoint,
        aws_access_key_id=minio.creds.s3_access_key,
        aws_secret_access_key=minio.creds.s3_secret_key,
        region_name="us-east-1",
    )
    bucket = f"bench-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    try:
        yield client, bucket
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            if page.get("Contents"):
                keys = [{"Key": obj["Key"]} for obj in page["Contents"]]
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)


def whole_job(
    phases: list[dict[str, float]],
    url: str,
    client: Any,
    bucket: str,
    prefix: str,
    minio: MinIO,
    work: Path,
    options: argparse.Namespace,
) -> Sample:
    env = {
        **os.environ,
        "KT_S3_ENDPOINT_URL": minio.endpoint,
        "KT_S3_ACCESS_KEY_ID": minio.creds.s3_access_key,
        "KT_S3_SECRET_ACCESS_KEY": minio.creds.s3_secret_key,
        "KT_RABBITMQ_URL": "amqp://unused.invalid/",  # required by the settings, never used
        "KT_FFMPEG_PRESET": options.preset,
        "KT_WORK_DIR": str(work / "a"),
        "KT_POD_NAME": "bench",
    }
    phases_json = work / "a-phases.json"
    argv = [sys.executable, "-m", "benchmarks.worker_job", url, bucket, prefix, ",".join(RUNGS)]
    sample = run_measured([*argv, str(phases_json)], env=env, log=work / "a.log")
    spent = json.loads(phases_json.read_text())
    # Interpreter start, imports, settings and clients, exit: what a pod pays once per job.
    spent["outside the job"] = sample.wall_seconds - spent["job"]
    phases.append(spent)
    # A fast run that produced nothing would be a lie: check the ladder is there.
    master = client.get_object(Bucket=bucket, Key=f"{prefix}/{MASTER_PLAYLIST_NAME}")
    variants = parse_master_playlist(master["Body"].read().decode()).variants
    if len(variants) != len(RUNGS):
        raise RuntimeError(f"the job's master playlist has {len(variants)} variants")
    return sample


def single_ladder(
    plan: LadderPlan, source: Path, out: Path, preset: Any, ffmpeg: str = media.FFMPEG
) -> Sample:
    fresh(out)
    command = ffmpeg_command(plan, source, out, preset=preset, ffmpeg=ffmpeg)
    sample = run_measured(command, log=out / "ffmpeg.log")
    check_renditions(plan, out)
    return sample


def per_rung(plan: LadderPlan, source: Path, out: Path, preset: Any) -> Sample:
    """Each rung on its own; audio with the first one only, so the output matches (b)'s."""
    fresh(out)
    samples = []
    for index, rendition in enumerate(plan.renditions):
        single = plan.model_copy(
            update={"renditions": (rendition,), "audio": plan.audio if index == 0 else None}
        )
        command = ffmpeg_command(single, source, out, preset=preset, ffmpeg=media.FFMPEG)
        samples.append(run_measured(command, log=out / f"ffmpeg-{rendition.name}.log"))
    check_renditions(plan, out)
    return Sample(
        wall_seconds=sum(s.wall_seconds for s in samples),
        cpu_seconds=sum(s.cpu_seconds for s in samples),
        peak_rss_bytes=max(s.peak_rss_bytes for s in samples),
    )


def fresh(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def check_renditions(plan: LadderPlan, out: Path) -> None:
    for rendition in plan.renditions:
        playlist = parse_media_playlist((out / rendition.name / MEDIA_PLAYLIST_NAME).read_text())
        if not playlist.ended:
            raise RuntimeError(f"{rendition.name}: unfinished playlist in {out}")
