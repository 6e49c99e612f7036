"""The chunked-encoding benchmark: one long job on one and two workers, killed, and simulated.

On one generated source (1080p30 with audio, `--chunked-duration`, default 120 s), default
ladder, real worker processes (`python -m kube_transcode_worker.main`) against RabbitMQ (a
vhost of the run's own) and MinIO, each worker and its FFmpeg held to one core with
`taskset`, so the two cores stand for two machines. The source is an http URL of MinIO (as an
https source would be), so the plan fetches and stages it like a user's upload. Variants:
  (a) the chunked job (default `Auto`, 30 s chunks) on 2 workers, cores 0 and 1;
  (b) the same job on 1 worker, core 0;
  (c) today's single run (`chunking: Off`) on 1 worker, core 0;
  (d) the chunked job on 1 worker, SIGKILLed (process group: worker and FFmpeg) when the
      stored video chunks plus the running one's progress reach `--chunked-kill-at` (0.8)
      of the video encode, then a fresh worker on the same core finishes it.
Targets: speed-up b/a >= 1.6 (0.8 N), b/c <= 1.10 (what chunking costs), and in (d) the
encode seconds thrown away at most one chunk's share of the job's encode seconds.

Wall time of a job: from its publish to its `succeeded` event; workers are started and
consuming before (a pod pays its start once). Part times come from the events of (b): a
part's wall is its delivery's `started_at` to its stored event; its encode, `transcoding` to
`uploading`. They feed a simulated makespan for 4..64 workers (benchmarks/makespan.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pika
import requests
from pika.adapters.blocking_connection import BlockingChannel

from benchmarks import media
from benchmarks.makespan import PartTimes, makespan, overhead_share, scaled
from benchmarks.measure import tree_rss_bytes
from benchmarks.registry import Context
from benchmarks.report import Ratio, Report, Sample, Variant
from benchmarks.worker import load_average, machine, scratch_bucket
from kube_transcode.chunks import (
    DEFAULT_CHUNK_SECONDS,
    MAX_CHUNK_SECONDS,
    MIN_CHUNK_SECONDS,
    PLAN_TASK,
    ChunkingOptions,
    TimeRange,
    plan_chunks,
)
from kube_transcode.ladder import HlsOptions
from kube_transcode.messages import (
    DEFAULT_EVENTS_EXCHANGE,
    JobEvent,
    JobMessage,
    JobRef,
    LadderRequest,
    OutputLocation,
    Phase,
    Priority,
    declare_topology,
    decode_event,
    encode,
    now_utc,
)
from kube_transcode_devstack.layout import tools_bin
from kube_transcode_devstack.services import MinIO, RabbitMQ
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME
from kube_transcode_worker.playlists import parse_master_playlist

QUEUE = "transcode.bench"
TARGET_SPEEDUP = 1.6  # 0.8 N for N = 2
TARGET_CHUNKED_OVER_SINGLE = 1.10
JOB_TIMEOUT_SECONDS = 3600.0
POLL_SECONDS = 0.1
SIMULATED_WORKERS = (1, 2, 4, 8, 16, 64)
EXTRAPOLATED_SECONDS = 7200  # a two-hour film
CHUNK_LENGTHS = (MIN_CHUNK_SECONDS, DEFAULT_CHUNK_SECONDS, MAX_CHUNK_SECONDS)


class ChunkedBenchmark:
    name = "chunked"
    summary = "one long job chunked on 2 workers vs 1 vs a single run, a kill at 80 %, makespan"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--chunked-duration",
            type=int,
            default=120,
            metavar="SECONDS",
            help="length of the generated source (default 120)",
        )
        group.add_argument(
            "--chunked-height",
            type=int,
            default=1080,
            metavar="PIXELS",
            help="its height, 16:9 (default 1080; 360 for a quick try)",
        )
        group.add_argument(
            "--chunked-kill-at",
            type=float,
            default=0.8,
            metavar="SHARE",
            help="share of the video encode done when (d) kills its worker (default 0.8)",
        )

    def unavailable(self, context: Context) -> str | None:
        if not (tools_bin() / "minio").is_file():
            return f"no MinIO binary in {tools_bin()} (run `make deps`)"
        if shutil.which("rabbitmq-server") is None:
            return "no rabbitmq-server (run `make deps`)"
        if shutil.which("taskset") is None:
            return "no taskset (util-linux) to hold a worker to one core"
        if (os.cpu_count() or 1) < 2:
            return "needs 2 cores (one per worker)"
        if shutil.which(media.FFMPEG) is None:
            return f"no {media.FFMPEG}"
        return None

    def run(self, context: Context) -> Report:
        options = context.options
        height = options.chunked_height
        width = height * 16 // 9 // 2 * 2
        source = media.test_pattern(context.cache_dir, options.chunked_duration, width, height)
        hls = HlsOptions()
        ranges = plan_chunks(options.chunked_duration, hls.segment_seconds, ChunkingOptions())
        if len(ranges) < 2:
            raise RuntimeError(f"a {options.chunked_duration} s source is not chunked")
        report = Report(
            benchmark=self.name,
            title=f"Chunked encoding: {options.chunked_duration} s {width}x{height} 30 fps "
            f"source, default ladder, {len(ranges)} chunks of {ranges[0].duration_seconds:.0f} s "
            f"+ audio, x264 {options.preset}, each worker on one core",
            variants=[
                Variant("a", "chunked, 2 workers (cores 0 and 1)"),
                Variant("b", "chunked, 1 worker (core 0)"),
                Variant("c", "single run (chunking Off), 1 worker (core 0)"),
                Variant("d", "chunked, 1 worker killed at ~80 %, a fresh one finishes"),
            ],
            environment=machine(),
        )
        stack = Stack.at(context.root / ".local")
        with (
            running_service(stack.rabbitmq),
            running_service(stack.minio),
            own_vhost(stack.rabbitmq) as url,
            scratch_bucket(stack.minio) as (client, bucket),
            tempfile.TemporaryDirectory(prefix="bench-chunked-") as tmp,
        ):
            key = f"sources/{source.name}"
            client.upload_file(str(source), bucket, key)
            http_source: str = client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=6 * 3600
            )
            bench = Bench(
                broker=Events(url),
                env=worker_env(url, stack.minio, Path(tmp), options.preset),
                work=Path(tmp),
            )
            try:
                runs = measure_rounds(bench, report, http_source, bucket, options, ranges)
            finally:
                bench.stop_workers()
                bench.broker.close()
            for run in runs:
                check_outputs(client, bucket, run.message)
        report.environment["load average after"] = load_average()
        summarize(report, runs, ranges, options)
        # Every event of every run, so the figures can be computed again without a rerun.
        report.details["runs"] = [
            {
                "key": run.key,
                "uid": run.message.job.uid,
                "published_at": run.published_at.isoformat(),
                "killed_at": run.killed_at.isoformat() if run.killed_at else None,
                "victim": run.victim,
                "events": [event.model_dump(mode="json") for event in run.events],
            }
            for run in runs
        ]
        return report


BENCHMARK = ChunkedBenchmark()


@dataclass
class JobRun:
    key: str
    message: JobMessage
    published_at: datetime
    events: list[JobEvent]
    sample: Sample
    killed_at: datetime | None = None
    victim: str | None = None


@dataclass
class Bench:
    broker: Events
    env: dict[str, str]
    work: Path
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(self, name: str, core: int) -> None:
        log = self.work / f"{name}.log"
        env = {**self.env, "KT_POD_NAME": name, "KT_METRICS_PORT": str(free_port())}
        with log.open("wb") as out:
            self.workers[name] = subprocess.Popen(
                ["taskset", "-c", str(core), sys.executable, "-m", "kube_transcode_worker.main"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a SIGKILL reaches FFmpeg too
            )

    def kill(self, name: str) -> None:
        """SIGKILL to the worker and its FFmpeg, like a node that vanishes."""
        process = self.workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)

    def stop_workers(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.terminate()
        for name, process in list(self.workers.items()):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            del self.workers[name]

    def log_tail(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def peak_rss(self) -> int:
        return sum(tree_rss_bytes(p.pid) for p in self.workers.values() if p.poll() is None)


class Events:
    """The benchmark's own AMQP connection: publishes jobs, reads every worker's events."""

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel: BlockingChannel = self.connection.channel()
        self.channel.confirm_delivery()
        declare_topology(self.channel, QUEUE, DEFAULT_EVENTS_EXCHANGE)
        self.queue = self.channel.queue_declare("bench.events", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, DEFAULT_EVENTS_EXCHANGE, "job.#")

    def publish(self, message: JobMessage) -> None:
        self.channel.basic_publish(
            "",
            QUEUE,
            encode(message),
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                priority=message.priority.amqp,
            ),
            mandatory=True,
        )

    def poll(self) -> list[JobEvent]:
        got: list[JobEvent] = []
        while True:
            method, _props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return got
            got.append(decode_event(body))

    def consumers(self) -> int:
        count: int = self.channel.queue_declare(QUEUE, passive=True).method.consumer_count
        return count

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def measure_rounds(
    bench: Bench,
    report: Report,
    source: str,
    bucket: str,
    options: argparse.Namespace,
    ranges: tuple[TimeRange, ...],
) -> list[JobRun]:
    chunked, single = ChunkingOptions(), ChunkingOptions(mode="Off")
    plans: dict[str, tuple[ChunkingOptions, tuple[int, ...]]] = {
        "a": (chunked, (0, 1)),
        "b": (chunked, (0,)),
        "c": (single, (0,)),
    }
    runs = []
    for round_ in range(options.repeat):
        keys = list(plans)
        # Rotate a,b,c then b,c,a ...; the kill (d) comes last, on a warm cache like the rest.
        order = keys[round_ % 3 :] + keys[: round_ % 3] + ["d"]
        for key in order:
            print(f"  round {round_ + 1}/{options.repeat}: ({key}) ...", flush=True)
            chunking, cores = plans.get(key, (chunked, (0,)))
            kill_at = options.chunked_kill_at if key == "d" else None
            message = job(source, bucket, f"{key}{round_}", chunking)
            run = run_job(bench, key, message, cores, kill_at, len(ranges))
            report.variant(key).samples.append(run.sample)
            runs.append(run)
            print(f"  ({key}) {run.sample.wall_seconds:.1f} s", flush=True)
    return runs


def job(source: str, bucket: str, name: str, chunking: ChunkingOptions) -> JobMessage:
    uid = f"{name}-{secrets.token_hex(4)}"
    return JobMessage(
        job=JobRef(uid=uid, namespace="bench", name=f"chunked-{name}", generation=1),
        source=source,
        priority=Priority.normal,
        ladder=LadderRequest(),  # the default ladder
        output=OutputLocation(bucket=bucket, prefix=f"out/{uid}"),
        chunking=chunking,
    )


def run_job(
    bench: Bench,
    key: str,
    message: JobMessage,
    cores: tuple[int, ...],
    kill_at: float | None,
    chunks: int,
) -> JobRun:
    names = [f"{key}-{message.job.uid}-core{core}" for core in cores]
    for name, core in zip(names, cores, strict=True):
        bench.start_worker(name, core)
    wait_until("the workers to consume", lambda: bench.broker.consumers() == len(cores), 60)
    cpu_before = _cpu_seconds_of_children()
    published_at = now_utc()
    bench.broker.publish(message)
    events: list[JobEvent] = []
    peak = 0
    killed_at: datetime | None = None
    victim: str | None = None
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while True:
        events += [e for e in bench.broker.poll() if e.job.uid == message.job.uid]
        peak = max(peak, bench.peak_rss())
        done = next((e for e in events if e.phase == Phase.succeeded), None)
        if done is not None:
            break
        failed = next((e for e in events if e.phase == Phase.failed), None)
        if failed is not None or time.monotonic() > deadline:
            tails = "\n".join(bench.log_tail(name) for name in names)
            raise RuntimeError(f"({key}) {failed or 'timed out'}\n{tails}")
        if kill_at is not None and killed_at is None and video_done(events, chunks) >= kill_at:
            victim = names[0]
            bench.kill(victim)
            killed_at = now_utc()
            names.append(f"{key}-{message.job.uid}-fresh")
            bench.start_worker(names[-1], cores[0])
        time.sleep(POLL_SECONDS)
    bench.stop_workers()
    cpu = _cpu_seconds_of_children() - cpu_before
    wall = (done.at - published_at).total_seconds()
    sample = Sample(wall_seconds=wall, cpu_seconds=cpu, peak_rss_bytes=peak)
    return JobRun(key, message, published_at, events, sample, killed_at, victim)


def video_done(events: list[JobEvent], chunks: int) -> float:
    """Share of the video encode done: chunks stored plus the running ones' progress."""
    stored = {e.part for e in events if e.chunk and e.chunk.stored}
    running: dict[str, float] = {}
    for e in events:
        part = e.part
        if (
            part
            and part.startswith("chunk-")
            and part not in stored
            and e.phase == Phase.transcoding
        ):
            running[part] = max(running.get(part, 0.0), e.progress_percent)
    video_stored = sum(1 for part in stored if part and part.startswith("chunk-"))
    return (video_stored + sum(running.values()) / 100) / chunks


@dataclass(frozen=True)
class Attempt:
    """One delivery of one part (or the plan), as its events show it."""

    task: str
    worker: str
    started_at: datetime
    encode_from: datetime | None
    encode_to: datetime | None
    stored_at: datetime | None
    succeeded: bool
    last_at: datetime

    @property
    def wall(self) -> float:
        end = self.stored_at or self.last_at
        return (end - self.started_at).total_seconds()

    @property
    def encode(self) -> float:
        if self.encode_from is None or self.encode_to is None:
            return 0.0
        return (self.encode_to - self.encode_from).total_seconds()

    @property
    def upload(self) -> float:
        if self.encode_to is None or self.stored_at is None:
            return 0.0
        return (self.stored_at - self.encode_to).total_seconds()


def attempts(events: list[JobEvent]) -> list[Attempt]:
    grouped: dict[tuple[str, str, datetime], list[JobEvent]] = {}
    for e in events:
        task = e.chunk.task if e.chunk else PLAN_TASK
        grouped.setdefault((task, e.worker, e.started_at), []).append(e)
    found = []
    for (task, worker, started_at), group in grouped.items():
        group.sort(key=lambda e: e.at)

        def first(*phases: Phase, group: list[JobEvent] = group) -> datetime | None:
            return next((e.at for e in group if e.phase in phases), None)

        stored = next((e.at for e in group if e.chunk and e.chunk.stored), None)
        if task == PLAN_TASK:  # a plan is done when its parts are published
            stored = next((e.at for e in group if e.chunk and e.chunk.task == PLAN_TASK), None)
        found.append(
            Attempt(
                task=task,
                worker=worker,
                started_at=started_at,
                encode_from=first(Phase.transcoding),
                encode_to=first(Phase.uploading, Phase.succeeded),
                stored_at=stored,
                succeeded=any(e.phase == Phase.succeeded for e in group),
                last_at=group[-1].at,
            )
        )
    return sorted(found, key=lambda a: a.started_at)


@dataclass(frozen=True)
class ChunkedFigures:
    """What one clean chunked run (b) and the single run (c) give the model."""

    times: PartTimes
    chunk_encodes: tuple[float, ...]
    audio_encode: float
    single_encode: float
    encode_per_second: float  # video encode seconds per source second, one core
    overheads: tuple[float, ...]  # per chunk: wall minus its share of the single encode


def figures(b: JobRun, c: JobRun, ranges: tuple[TimeRange, ...], duration: float) -> ChunkedFigures:
    tried = attempts(b.events)
    plan = next(a for a in tried if a.task == PLAN_TASK)
    parts = {a.task: a for a in tried if a.task != PLAN_TASK and a.stored_at is not None}
    uploads = [a.upload for a in parts.values() if not a.succeeded]
    typical_upload = statistics.median(uploads) if uploads else 0.0

    def part_wall(attempt: Attempt) -> float:
        # The last part's stored event is the job's succeeded one, after the assembly.
        if attempt.succeeded and attempt.encode_to is not None:
            return (attempt.encode_to - attempt.started_at).total_seconds() + typical_upload
        return attempt.wall

    last = next(a for a in parts.values() if a.succeeded)
    # Estimated against the other parts' upload; below the noise it would come out negative.
    assembly = max(0.0, last.wall - part_wall(last))
    chunk_names = [f"chunk-{r.index:04d}" for r in ranges]
    chunk_walls = tuple(part_wall(parts[name]) for name in chunk_names)
    audio = parts.get("audio")
    single = next(a for a in attempts(c.events) if a.succeeded)
    video_single = single.encode - (audio.encode if audio else 0.0)
    per_second = video_single / duration
    overheads = tuple(
        wall - per_second * r.duration_seconds for wall, r in zip(chunk_walls, ranges, strict=True)
    )
    return ChunkedFigures(
        times=PartTimes(
            plan=plan.wall,
            chunks=chunk_walls,
            audio=part_wall(audio) if audio else 0.0,
            assembly=assembly,
        ),
        chunk_encodes=tuple(parts[name].encode for name in chunk_names),
        audio_encode=audio.encode if audio else 0.0,
        single_encode=single.encode,
        encode_per_second=per_second,
        overheads=overheads,
    )


def summarize(
    report: Report, runs: list[JobRun], ranges: tuple[TimeRange, ...], options: argparse.Namespace
) -> None:
    duration = float(options.chunked_duration)
    speedup = report.variant("b").wall / report.variant("a").wall
    report.ratio(
        "a/b",
        1 / TARGET_SPEEDUP,
        f"2 workers vs 1: speed-up b/a {speedup:.2f}, target >= {TARGET_SPEEDUP}",
    )
    report.ratio("b/c", TARGET_CHUNKED_OVER_SINGLE, "chunked vs single run, 1 worker")
    report.ratio("b/c", measure="cpu")
    by_key: dict[str, list[JobRun]] = {}
    for run in runs:
        by_key.setdefault(run.key, []).append(run)
    # The model is fed by the round whose (b) was the median one.
    bs = sorted(by_key["b"], key=lambda r: r.sample.wall_seconds)
    b = bs[len(bs) // 2]
    c = by_key["c"][by_key["b"].index(b)]
    fig = figures(b, c, ranges, duration)
    chunk_share = statistics.median(fig.times.chunks) / sum(fig.times.parts)
    redone = [redone_figures(run) for run in by_key["d"]]
    shares = [share for share, _, _ in redone]
    report.ratios.append(
        Ratio(
            "d redone/encode",
            statistics.median(shares),
            chunk_share,
            "encode seconds thrown away by the kill over the job's; target one chunk's share; "
            + "; ".join(f"counts.redone {count}, {lost:.1f} s lost" for _, lost, count in redone),
        )
    )
    overhead = statistics.median(fig.overheads)
    report.notes += [
        f"per part (run b, one core): plan incl. fetch, probe and staging {fig.times.plan:.1f} s; "
        "chunks "
        + ", ".join(f"{w:.1f}" for w in fig.times.chunks)
        + f" s wall (encode {', '.join(f'{e:.1f}' for e in fig.chunk_encodes)} s); audio "
        f"{fig.times.audio:.1f} s wall ({fig.audio_encode:.1f} s encode); assembly "
        f"{fig.times.assembly:.1f} s",
        f"single run (c): encode {fig.single_encode:.1f} s, so "
        f"{fig.encode_per_second:.3f} s of video encode per source second on one core",
        f"per-chunk overhead (a chunk's wall minus its share of the single run's video encode): "
        f"{', '.join(f'{o:.1f}' for o in fig.overheads)} s, median {overhead:.1f} s; as a share "
        "of a chunk's encode: "
        + ", ".join(
            f"{length} s chunks {overhead_share(overhead, fig.encode_per_second, length):.1%}"
            for length in CHUNK_LENGTHS
        ),
        "wall = publish to the succeeded event (workers consuming before); CPU = the workers' "
        "processes reaped, FFmpeg included (not the killed worker's FFmpeg in d); peak RSS = the "
        "workers' trees summed, sampled every 0.1 s",
    ]
    for run in by_key["d"]:
        report.notes.append(
            f"(d) killed {run.victim} at {video_done_at_kill(run, len(ranges)):.0%} of the video "
            "encode, a fresh worker on the same core finished"
        )
    report.sections.append(makespan_table(fig, report, duration, ranges, overhead))
    report.details = {
        "part_times": {
            "plan": fig.times.plan,
            "chunks": list(fig.times.chunks),
            "audio": fig.times.audio,
            "assembly": fig.times.assembly,
        },
        "chunk_encodes": list(fig.chunk_encodes),
        "single_encode_seconds": fig.single_encode,
        "encode_per_source_second": fig.encode_per_second,
        "overheads": list(fig.overheads),
        "overhead_share": {
            str(length): overhead_share(overhead, fig.encode_per_second, length)
            for length in CHUNK_LENGTHS
        },
        "speedup": speedup,
        "redone": [{"share": s, "lost_seconds": lost, "counts_redone": n} for s, lost, n in redone],
        "one_chunk_share": chunk_share,
    }


def redone_figures(run: JobRun) -> tuple[float, float, int]:
    """(share of encode seconds lost, seconds lost, counts.redone) of a run with a kill."""
    tried = attempts(run.events)
    lost = sum(
        ((run.killed_at or a.last_at) - a.started_at).total_seconds()
        for a in tried
        if a.worker == run.victim and a.stored_at is None and a.task != PLAN_TASK
    )
    kept = sum(a.wall for a in tried if a.task != PLAN_TASK and a.stored_at is not None)
    done = next(e for e in run.events if e.phase == Phase.succeeded)
    count = done.chunk.counts.redone if done.chunk else 0
    return lost / kept, lost, count


def video_done_at_kill(run: JobRun, chunks: int) -> float:
    seen = [e for e in run.events if run.killed_at is None or e.at <= run.killed_at]
    return video_done(seen, chunks)


def makespan_table(
    fig: ChunkedFigures,
    report: Report,
    duration: float,
    ranges: tuple[TimeRange, ...],
    overhead: float,
) -> str:
    measured = {1: report.variant("b").wall, 2: report.variant("a").wall}
    single = report.variant("c").wall
    long = scaled(
        fig.times, duration, EXTRAPOLATED_SECONDS, DEFAULT_CHUNK_SECONDS,
        fig.encode_per_second, overhead,
    )  # fmt: skip
    lines = [
        f"### Simulated makespan (list scheduling of the measured part times, plus plan "
        f"{fig.times.plan:.1f} s and assembly {fig.times.assembly:.1f} s)",
        "",
        f"| workers | this source ({len(ranges)} chunks + audio) | vs single run | "
        f"measured | 2-hour source ({len(long.chunks)} chunks, extrapolated) | vs single run | "
        "bounded by (2-hour) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    long_single = fig.single_encode / duration * EXTRAPOLATED_SECONDS
    for workers in SIMULATED_WORKERS:
        here, there = makespan(fig.times, workers), makespan(long, workers)
        seen = f"{measured[workers]:.1f}" if workers in measured else "-"
        lines.append(
            f"| {workers} | {here.seconds:.1f} s | {single / here.seconds:.2f}x | {seen} | "
            f"{there.seconds:.0f} s | {long_single / there.seconds:.1f}x | {there.limit} |"
        )
    lines += [
        "",
        f"This source stops scaling at {len(fig.times.parts)} workers (one per part): from "
        f"there the makespan is plan + the longest part ({max(fig.times.parts):.1f} s) + "
        f"assembly. A 2-hour source: chunks {long.chunks[0]:.1f} s each, audio one part of "
        f"{long.audio:.1f} s, plan (fetch and stage scale with the source) {long.plan:.1f} s.",
    ]
    return "\n".join(lines) + "\n"


def check_outputs(client: Any, bucket: str, message: JobMessage) -> None:
    """A fast run that produced nothing would be a lie: the master playlist is there."""
    key = f"{message.output.prefix}/{MASTER_PLAYLIST_NAME}"
    master = parse_master_playlist(
        client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    )
    if not master.variants:
        raise RuntimeError(f"{message.job.uid}: no variants in its master playlist")


def worker_env(url: str, minio: MinIO, work: Path, preset: str) -> dict[str, str]:
    c = minio.creds
    return {
        **os.environ,
        "KT_RABBITMQ_URL": url,
        "KT_QUEUE": QUEUE,
        "KT_S3_ENDPOINT_URL": minio.endpoint,
        "KT_S3_ACCESS_KEY_ID": c.s3_access_key,
        "KT_S3_SECRET_ACCESS_KEY": c.s3_secret_key,
        "KT_WORK_DIR": str(work / "workers"),
        "KT_METRICS_BIND_ADDRESS": "127.0.0.1",
        "KT_FFMPEG_PRESET": preset,
        # The source is MinIO's own http URL, as a user's https source would be fetched.
        "KT_ALLOW_HTTP_SOURCES": "true",
        "KT_ALLOWED_SOURCE_NETWORKS": "127.0.0.1/32",
        "KT_RETRY_BASE_SECONDS": "1",
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def running_service(service: RabbitMQ | MinIO) -> Iterator[None]:
    """Reused when running, else started and stopped, as the tests' fixtures do."""
    was_running = service.proc.running()
    service.up()
    try:
        yield
    finally:
        if not was_running:
            service.down()


@contextmanager
def own_vhost(rabbitmq: RabbitMQ) -> Iterator[str]:
    """A vhost of the run's own, deleted afterwards; yields its AMQP URL."""
    name = f"bench-{secrets.token_hex(4)}"
    c = rabbitmq.creds
    auth = (c.rabbitmq_user, c.rabbitmq_password)
    base = rabbitmq.management_url
    requests.put(f"{base}/api/vhosts/{name}", auth=auth, timeout=10).raise_for_status()
    permissions: Mapping[str, str] = {"configure": ".*", "write": ".*", "read": ".*"}
    requests.put(
        f"{base}/api/permissions/{name}/{c.rabbitmq_user}", json=permissions, auth=auth, timeout=10
    ).raise_for_status()
    try:
        yield f"amqp://{c.rabbitmq_user}:{c.rabbitmq_password}@127.0.0.1:{rabbitmq.ports.amqp}/{name}"
    finally:
        requests.delete(f"{base}/api/vhosts/{name}", auth=auth, timeout=30)
