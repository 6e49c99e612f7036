"""The operator benchmark: many TranscodeJobs at once, from `kubectl apply` to all Queued.

Against the chart installed on the local stack (`make up`) and the real broker:
  (a) N TranscodeJobs (500 by default) applied at once into a fresh namespace, with
      server-side apply in a few concurrent batches; timed from the first apply until a
      `kubectl get -w` has seen every one of them Queued;
  (b) the namespace deleted: the operator's finalizer cancels each queued job (cancel marker
      in S3, broadcast) and removes its outputs; timed until the namespace is gone.
Target: (a) at 50 jobs/s or more. Memory and CPU are the operator process's own, read from
/proc (the node agent runs the Pod as a local process): peak VmRSS sampled every 50 ms over
the run, VmHWM (since the process started) beside it.

The default pool has no worker first (the chart's fixed worker Deployment at 0 Pods in place
of its WorkerPool), so the messages wait in the queue harmlessly; the run's messages are taken
out of the queue afterwards (others are put back) and `make up`'s release is put back.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import yaml

from benchmarks.registry import Context
from benchmarks.report import Ratio, Report, Sample, Variant
from kube_transcode.messages import cancelled_marker_key, job_queue_name
from kube_transcode_devstack import release
from kube_transcode_devstack.layout import tools_bin
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until

OPERATOR = "kube-transcode-operator"
OPERATOR_PODS = "app.kubernetes.io/component=operator"
WORKER_PODS = "app.kubernetes.io/component=worker,kubetranscode.io/pool=default"
QUEUE = job_queue_name("default")
TARGET_JOBS_PER_SECOND = 50.0
SAMPLE_SECONDS = 0.05
POLL_SECONDS = 0.1  # how often the waits look: well below the times measured
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class OperatorQueueBenchmark:
    name = "operator"
    summary = "TranscodeJobs applied at once (500): seconds until all Queued, operator memory"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--operator-jobs", type=int, default=500, metavar="N", help="jobs (default 500)"
        )
        group.add_argument(
            "--operator-batches",
            type=int,
            default=5,
            metavar="N",
            help="concurrent server-side applies the jobs are split into (default 5)",
        )
        group.add_argument(
            "--operator-timeout",
            type=float,
            default=600,
            metavar="SECONDS",
            help="give up waiting for Queued (or deletion) after this long (default 600)",
        )

    def unavailable(self, context: Context) -> str | None:
        stack = Stack.at(context.root / ".local")
        if not stack.layout.kubeconfig.is_file():
            return "no local stack (run `make up`)"
        if not stack.rabbitmq.proc.running():
            return "RabbitMQ is not running (run `make up`)"
        kubectl = Kubectl(stack, release.NAMESPACE)
        ready = kubectl.run(
            "get", f"deployment/{OPERATOR}", "-o", "jsonpath={.status.readyReplicas}"
        )
        if ready.returncode != 0 or ready.stdout.strip() != "1":
            return f"the chart's operator is not installed and Ready in {release.NAMESPACE}"
        return None

    def run(self, context: Context) -> Report:
        options = context.options
        count: int = options.operator_jobs
        stack = Stack.at(context.root / ".local")
        system = Kubectl(stack, release.NAMESPACE)
        report = Report(
            benchmark=self.name,
            title=f"Operator: {count} TranscodeJobs applied at once (server-side apply in "
            f"{options.operator_batches} concurrent batches), real RabbitMQ, worker paused",
            variants=[
                Variant("a", f"{count} jobs applied until all Queued"),
                Variant("b", f"namespace of {count} queued jobs deleted until gone"),
            ],
            environment={"cores": os.cpu_count(), "load average before": load_average()},
        )
        details: list[RunDetails] = []
        with worker_paused(stack, system):
            for round_ in range(options.repeat):
                print(f"  round {round_ + 1}/{options.repeat}: {count} jobs ...", flush=True)
                details.append(one_round(stack, system, report, options))
        report.environment["load average after"] = load_average()
        throughput = statistics.median(d.jobs_per_second for d in details)
        report.ratios.append(
            Ratio(
                "a/budget",
                report.variant("a").wall / (count / TARGET_JOBS_PER_SECOND),
                1.0,
                f"time to Queued over the {count / TARGET_JOBS_PER_SECOND:.0f} s that "
                f"{TARGET_JOBS_PER_SECOND:.0f} jobs/s allow; median {throughput:.1f} jobs/s",
            )
        )
        for number, d in enumerate(details, 1):
            report.notes.append(d.describe(number, count))
        report.notes.append(
            "CPU is the operator process's (utime+stime from /proc) over each phase; peak RSS is "
            "its largest VmRSS sampled every 50 ms; VmHWM is its peak since it started"
        )
        return report


BENCHMARK = OperatorQueueBenchmark()


@dataclass
class RunDetails:
    jobs_per_second: float
    apply_seconds: float
    last_created: float  # seconds from the first apply until the watch saw the last job
    last_queued: float  # ... and saw it Queued
    jobs_gone_seconds: float  # from deleting the namespace until its jobs are gone
    latencies: list[float]  # seen created -> seen Queued, per job
    baseline_rss_bytes: int
    hwm_bytes: int
    queued_messages: int
    deleted_messages: int
    marker_count: int

    def describe(self, number: int, count: int) -> str:
        lat = sorted(self.latencies)
        p50, p95 = lat[len(lat) // 2], lat[int(len(lat) * 0.95)]
        mib = 1024 * 1024
        return (
            f"run {number}: {self.jobs_per_second:.1f} jobs/s; kubectl apply took "
            f"{self.apply_seconds:.1f} s, the last job was seen created at "
            f"{self.last_created:.1f} s and the last Queued at {self.last_queued:.1f} s; "
            f"jobs gone {self.jobs_gone_seconds:.1f} s after the namespace was deleted "
            f"({count / self.jobs_gone_seconds:.1f} jobs/s); "
            f"created->Queued p50 {p50:.1f} s, p95 {p95:.1f} s, "
            f"max {lat[-1]:.1f} s; operator RSS {self.baseline_rss_bytes / mib:.0f} MiB before, "
            f"VmHWM {self.hwm_bytes / mib:.0f} MiB after; {self.queued_messages} messages "
            f"in {QUEUE} for {count} jobs (taken out afterwards: {self.deleted_messages}); "
            f"{self.marker_count} cancel markers removed"
        )


def one_round(
    stack: Stack, system: Kubectl, report: Report, options: argparse.Namespace
) -> RunDetails:
    count: int = options.operator_jobs
    namespace = f"bench-{secrets.token_hex(4)}"
    k = Kubectl(stack, namespace)
    k.check("create", "namespace", namespace)
    operator = OperatorProcess.find(stack, system)
    baseline_rss = operator.status_bytes("VmRSS")
    depth_before = queue_depth(stack)
    try:
        with k.watch_phases() as phases, operator.sampling() as usage:
            started = started_at = time.monotonic()
            apply_seconds = apply_in_batches(k, namespace, count, options.operator_batches)
            wait_until(
                f"{count} jobs Queued",
                lambda: phases.count("Queued") >= count,
                options.operator_timeout,
                lambda: f"{phases.count('Queued')} of {count} Queued",
                interval=POLL_SECONDS,
            )
            wall = time.monotonic() - started
        report.variant("a").samples.append(Sample(wall, usage.cpu_seconds, usage.peak_rss))
        queued = queue_depth(stack) - depth_before
        latencies = phases.latencies("Queued")
        created_at = list(phases.created.values())
    finally:
        uids = k.uids()
        taken = take_messages_of(stack, namespace)
        with operator.sampling() as usage:
            started = time.monotonic()
            k.check("delete", "namespace", namespace, "--wait=false")
            wait_until(
                f"the jobs in {namespace} to be deleted",
                lambda: not k.uids(),
                options.operator_timeout,
                lambda: f"{len(k.uids())} jobs left",
                interval=POLL_SECONDS,
            )
            jobs_gone = time.monotonic() - started
            wait_until(
                f"namespace {namespace} to be deleted",
                lambda: not k.namespace_exists(),
                options.operator_timeout,
                lambda: "the namespace is still there",
                interval=POLL_SECONDS,
            )
            deleted = time.monotonic() - started
        report.variant("b").samples.append(Sample(deleted, usage.cpu_seconds, usage.peak_rss))
        markers = remove_cancel_markers(stack, uids)
    return RunDetails(
        jobs_per_second=count / wall,
        apply_seconds=apply_seconds,
        last_created=max(created_at) - started_at if created_at else 0.0,
        last_queued=wall,
        jobs_gone_seconds=jobs_gone,
        latencies=latencies,
        baseline_rss_bytes=baseline_rss,
        hwm_bytes=operator.status_bytes("VmHWM"),
        queued_messages=queued,
        deleted_messages=taken,
        marker_count=markers,
    )


# ---------------------------------------------------------------------------------- kubectl


@dataclass(frozen=True)
class Kubectl:
    stack: Stack
    namespace: str

    def argv(self, *args: str) -> list[str]:
        kubeconfig = str(self.stack.layout.kubeconfig)
        return [
            str(tools_bin() / "kubectl"),
            "--kubeconfig",
            kubeconfig,
            "-n",
            self.namespace,
            *args,
        ]

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), input=input, capture_output=True, text=True, timeout=600, check=False
        )

    def check(self, *args: str, input: str | None = None) -> str:
        proc = self.run(*args, input=input)
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()}")
        return proc.stdout

    def namespace_exists(self) -> bool:
        return bool(self.run("get", "namespace", self.namespace, "--ignore-not-found").stdout)

    def uids(self) -> list[str]:
        out = self.run("get", "transcodejobs", "-o", "jsonpath={.items[*].metadata.uid}")
        return out.stdout.split()

    @contextmanager
    def watch_phases(self) -> Iterator[PhaseWatch]:
        template = '{.metadata.name}|{.status.phase}{"\\n"}'  # tabs would become spaces
        process = subprocess.Popen(
            self.argv("get", "transcodejobs", "--watch", "-o", f"jsonpath={template}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        watch = PhaseWatch()
        reader = threading.Thread(target=watch.read, args=(process,), daemon=True)
        reader.start()
        try:
            yield watch
        finally:
            process.terminate()
            process.wait(timeout=10)
            reader.join(timeout=10)


@dataclass
class PhaseWatch:
    """When each job was first seen, and first seen in each phase (monotonic seconds)."""

    created: dict[str, float] = field(default_factory=dict)
    reached: dict[str, dict[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            name, _, phase = line.strip().partition("|")
            now = time.monotonic()
            with self._lock:
                self.created.setdefault(name, now)
                if phase:
                    self.reached.setdefault(phase, {}).setdefault(name, now)

    def count(self, phase: str) -> int:
        with self._lock:
            return len(self.reached.get(phase, {}))

    def latencies(self, phase: str) -> list[float]:
        with self._lock:
            return [t - self.created[n] for n, t in self.reached.get(phase, {}).items()]


def job_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubetranscode.io/v1alpha1",
        "kind": "TranscodeJob",
        "metadata": {"name": name},
        # Never fetched: the worker is paused and the run's messages are taken out afterwards.
        "spec": {"source": {"url": "s3://sources/bench/never-fetched.mp4"}},
    }


def apply_in_batches(k: Kubectl, namespace: str, count: int, batches: int) -> float:
    """Server-side apply of count jobs as `batches` Lists applied concurrently; seconds taken."""
    names = [f"job-{index:05d}" for index in range(count)]
    groups = [names[start::batches] for start in range(batches)]
    documents = [
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [job_manifest(n) for n in g]})
        for g in groups
        if g
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(documents)) as pool:
        outputs = list(
            pool.map(
                lambda doc: k.check(
                    "apply", "--server-side", "--field-manager=bench", "-f", "-", input=doc
                ),
                documents,
            )
        )
    seconds = time.monotonic() - started
    created = sum(out.count("serverside-applied") for out in outputs)
    if created != count:
        raise RuntimeError(f"kubectl applied {created} of {count} jobs in {namespace}")
    return seconds


@contextmanager
def worker_paused(stack: Stack, system: Kubectl) -> Iterator[None]:
    """No consumer of the default pool's queue: the release with the fixed worker Deployment
    at 0 Pods in place of `make up`'s autoscaled WorkerPool (which would start workers for
    the jobs), and `make up`'s release back afterwards."""
    release.install_chart(stack, fixed_workers=0)
    wait_until(
        "the default pool's workers gone",
        lambda: not system.check("get", "pods", "-l", WORKER_PODS, "-o", "name").strip(),
        120,
    )
    try:
        yield
    finally:
        release.install_chart(stack)


# -------------------------------------------------------------------------- the operator


@dataclass
class Usage:
    cpu_seconds: float = 0.0
    peak_rss: int = 0


@dataclass(frozen=True)
class OperatorProcess:
    pid: int

    @classmethod
    def find(cls, stack: Stack, system: Kubectl) -> OperatorProcess:
        """The operator Pod's main process, from the pid file the node agent keeps for it."""
        pods = json.loads(system.check("get", "pods", "-l", OPERATOR_PODS, "-o", "json"))["items"]
        running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(running) != 1:
            raise RuntimeError(f"expected one operator Pod, found {len(running)}")
        meta = running[0]["metadata"]
        folder = f"{release.NAMESPACE}_{meta['name']}_{meta['uid']}"
        pid_file = stack.layout.state / "node-agent" / "pods" / folder / "operator.pid"
        return cls(int(pid_file.read_text().split()[0]))

    def status_bytes(self, field_name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field_name} for pid {self.pid}")

    def cpu_seconds(self) -> float:
        # Fields after the command name (which may hold spaces); utime and stime are 14 and 15.
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    @contextmanager
    def sampling(self) -> Iterator[Usage]:
        usage = Usage()
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                usage.peak_rss = max(usage.peak_rss, self.status_bytes("VmRSS"))
                done.wait(SAMPLE_SECONDS)

        cpu_before = self.cpu_seconds()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield usage
        finally:
            done.set()
            sampler.join()
            usage.cpu_seconds = self.cpu_seconds() - cpu_before


# ------------------------------------------------------------------------ broker and S3


def queue_depth(stack: Stack) -> int:
    with _channel(stack) as channel:
        declared = channel.queue_declare(QUEUE, passive=True)
        return int(declared.method.message_count)


@contextmanager
def _channel(stack: Stack) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(stack.rabbitmq.url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def take_messages_of(stack: Stack, namespace: str) -> int:
    """Remove this run's job messages from the queue; every other message goes back."""
    taken = 0
    with _channel(stack) as channel:
        held: list[tuple[int, bool]] = []
        while True:
            method, _, body = channel.basic_get(QUEUE, auto_ack=False)
            if method is None:
                break
            held.append((method.delivery_tag, _namespace_of(body) == namespace))
        for tag, ours in held:
            if ours:
                channel.basic_ack(tag)
                taken += 1
            else:
                channel.basic_nack(tag, requeue=True)
    return taken


def _namespace_of(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["job"]["namespace"])
    except (ValueError, KeyError, TypeError):
        return None


def remove_cancel_markers(stack: Stack, uids: Sequence[str]) -> int:
    """The operator marks each deleted queued job cancelled in the default bucket; the run's
    markers go with the run."""
    s3: Any = release.s3_client(stack)
    keys = [{"Key": cancelled_marker_key(uid)} for uid in uids]
    for start in range(0, len(keys), 1000):
        s3.delete_objects(
            Bucket=release.DEFAULT_BUCKET,
            Delete={"Objects": keys[start : start + 1000], "Quiet": True},
        )
    return len(keys)


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())
