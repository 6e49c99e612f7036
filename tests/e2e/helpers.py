"""What an end-to-end test does and sees as a user would, through kubectl.

TranscodeJobs are applied and read with kubectl; a `kubectl get -w` in the background keeps
every status change (a poll could miss a short phase). Outputs are read from S3 as a player's
CDN would (tests.harness.storage), encoders found in /proc (tests.harness.processes). Waits
poll with deadlines, never sleep in place of a condition.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kube_transcode.ladder import DEFAULT_X264_PRESET
from kube_transcode_devstack import release as chart
from kube_transcode_devstack.layout import tools_bin
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.harness.kube import Kubectl

API_VERSION = "kubetranscode.io/v1alpha1"
TERMINAL = frozenset({"Succeeded", "Failed"})
OPERATOR = "deployment/kube-transcode-operator"
# The chart's fixed worker Deployment (worker.deployment), which the session's release enables.
WORKER = "deployment/kube-transcode-worker-default"
# The chart's default WorkerPool and the Deployment the operator makes for it.
DEFAULT_POOL = "workerpool/default"
DEFAULT_POOL_WORKERS = "deployment/default-workers"
DEFAULT_POOL_PODS = "kubetranscode.io/workerpool=default"
OPERATOR_PODS = "app.kubernetes.io/component=operator"
WATCH_CATCH_UP_SECONDS = 15

Job = dict[str, Any]

# The session's release serves the default pool with the chart's fixed worker Deployment of
# this many Pods, configured explicitly in place of the chart's default (an autoscaled
# WorkerPool, tests/e2e/test_default_install.py): most tests need jobs to run one at a time,
# on one consumer (priority order, a job waiting behind a busy worker).
WORKERS = 1
# The worker's own x264 preset (KT_FFMPEG_PRESET's default): sources decode like its output.
PRESET = DEFAULT_X264_PRESET


def release_kubectl(stack: Stack) -> Kubectl:
    return Kubectl(stack.layout.kubeconfig, chart.NAMESPACE, tools_bin())


def ensure_ready(stack: Stack, deployment: str, replicas: int, timeout: str = "180s") -> None:
    """The Deployment at `replicas`, each of them Ready."""
    k = release_kubectl(stack)
    current = k("get", deployment, "-o", "jsonpath={.spec.replicas}").strip()
    if current != str(replicas):
        k("scale", deployment, f"--replicas={replicas}")
    k("rollout", "status", deployment, f"--timeout={timeout}")


def install_one_fixed_worker(stack: Stack) -> None:
    """The release with the fixed worker Deployment of WORKERS Pods serving the default pool
    (not the chart's default WorkerPool), and only them: the pool's workers, if `make up` or
    test_default_install.py left some, are gone, so exactly WORKERS consumers take jobs."""
    chart.install_chart(stack, fixed_workers=WORKERS)
    ensure_ready(stack, OPERATOR, 1)
    ensure_ready(stack, WORKER, WORKERS)
    k = release_kubectl(stack)
    wait_until(
        "the default WorkerPool's workers gone",
        lambda: not k("get", "pods", "-l", DEFAULT_POOL_PODS, "-o", "name").strip(),
        120,
        lambda: k("get", "workerpools,deployments,pods", "-o", "wide"),
    )


@dataclass(frozen=True)
class Source:
    url: str
    path: Path  # the same bytes, locally


@dataclass(frozen=True)
class Sources:
    """Test pictures with a tone in the sources bucket, 640x360 H.264 + AAC."""

    tiny: Source  # 2 s: the quickest job there is
    medium: Source  # 12 s: FFmpeg runs for a second or more
    long: Source  # 60 s: progress moves; keeps the one worker busy while a test acts
    corrupt: Source  # not a video at all
    missing: str  # an object that does not exist


def ready_pods(k: Kubectl, selector: str) -> list[str]:
    """Names of the Pods matching selector whose Ready condition is True."""
    pods = json.loads(k("get", "pods", "-l", selector, "-o", "json"))["items"]
    return [
        pod["metadata"]["name"]
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
    ]


def transcode_job(
    name: str,
    source: str,
    *,
    rungs: Iterable[str] = ("240p",),
    segment_seconds: int | None = None,
    **spec: Any,
) -> Job:
    """A TranscodeJob manifest with named rungs; further spec fields as keyword arguments."""
    body: dict[str, Any] = {
        "source": {"url": source},
        "ladder": {"rungs": [{"name": rung} for rung in rungs]},
        **spec,
    }
    if segment_seconds is not None:
        body["hls"] = {"segmentSeconds": segment_seconds}
    return {
        "apiVersion": API_VERSION,
        "kind": "TranscodeJob",
        "metadata": {"name": name},
        "spec": body,
    }


@dataclass
class Jobs:
    """The TranscodeJobs of one namespace, through kubectl."""

    k: Kubectl

    @property
    def namespace(self) -> str:
        return self.k.namespace

    def apply(self, *manifests: Job) -> None:
        if len(manifests) == 1:
            text = yaml.safe_dump(manifests[0])
        else:
            text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(manifests)})
        self.k("apply", "-f", "-", input=text)

    def get(self, name: str) -> Job | None:
        proc = self.k.run("get", "transcodejob", name, "-o", "json", "--ignore-not-found")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def require(self, name: str) -> Job:
        job = self.get(name)
        assert job is not None, f"TranscodeJob {name} is gone"
        return job

    def all(self) -> dict[str, Job]:
        items = json.loads(self.k("get", "transcodejobs", "-o", "json"))["items"]
        return {item["metadata"]["name"]: item for item in items}

    def table(self) -> str:
        return self.k("get", "transcodejobs", "-o", "wide", check=False)

    def wait_for(
        self, what: str, check: Callable[[dict[str, Job]], bool], timeout: float
    ) -> dict[str, Job]:
        found: dict[str, dict[str, Job]] = {}

        def attempt() -> bool:
            found["jobs"] = self.all()
            return check(found["jobs"])

        wait_until(what, attempt, timeout, self.table)
        return found["jobs"]

    def wait_phase(
        self, names: Iterable[str], phases: Iterable[str], timeout: float
    ) -> dict[str, Job]:
        names, wanted = list(names), set(phases)
        return self.wait_for(
            f"{', '.join(names)} to be {' or '.join(sorted(wanted))}",
            lambda jobs: all(phase(jobs.get(n)) in wanted for n in names),
            timeout,
        )

    def wait_finished(self, names: Iterable[str], timeout: float) -> dict[str, Job]:
        return self.wait_phase(names, TERMINAL, timeout)

    def wait_gone(self, name: str, timeout: float) -> None:
        wait_until(f"{name} to be deleted", lambda: self.get(name) is None, timeout, self.table)

    def events(self, name: str, reason: str | None = None) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=TranscodeJob,involvedObject.name={name}"
        if reason is not None:
            selector += f",reason={reason}"
        out = self.k("get", "events", "--field-selector", selector, "-o", "json")
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items


def phase(job: Job | None) -> str | None:
    return None if job is None else (job.get("status") or {}).get("phase")


def condition(job: Job, type_: str) -> dict[str, Any]:
    conditions = (job.get("status") or {}).get("conditions") or []
    found = next((c for c in conditions if c.get("type") == type_), None)
    assert found is not None, f"no {type_} condition in {conditions}"
    return dict(found)


def event_count(events: Iterable[Mapping[str, Any]]) -> int:
    """Posted Events, counting what the API server aggregated (count) as separate ones."""
    return sum(int(event.get("count") or 1) for event in events)


@dataclass(frozen=True)
class Seen:
    """One status of one job as `kubectl get -w` delivered it."""

    name: str
    resource_version: str
    phase: str
    progress: int | None
    attempts: int | None
    reasons: str  # "type=reason" of every condition, comma-separated
    chunks_running: int | None = None  # a chunked job's parts being encoded


@dataclass
class Watch:
    """Every change of every TranscodeJob in a namespace, in the order the API server sent it."""

    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, job: Job) -> None:
        status = job.get("status") or {}
        item = Seen(
            job["metadata"]["name"],
            job["metadata"].get("resourceVersion", ""),
            status.get("phase") or "",
            status.get("progress"),
            status.get("attempts"),
            ",".join(f"{c.get('type')}={c.get('reason')}" for c in status.get("conditions") or []),
            (status.get("chunks") or {}).get("running"),
        )
        with self._lock:
            self.seen.append(item)

    def has_seen(self, jobs: Iterable[Job]) -> bool:
        """Whether the stream has delivered each of these jobs as it is now."""
        with self._lock:
            seen = {(s.name, s.resource_version) for s in self.seen}
        return all(
            (j["metadata"]["name"], j["metadata"].get("resourceVersion", "")) in seen for j in jobs
        )

    def of(self, name: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.name == name]

    def phases(self, name: str) -> list[str]:
        """Distinct phases of one job in order (a phase seen again after another counts again)."""
        result: list[str] = []
        for s in self.of(name):
            if s.phase and (not result or result[-1] != s.phase):
                result.append(s.phase)
        return result

    def first(self, name: str, phase_: str) -> int:
        """Position in the whole stream where `name` was first seen in `phase_`."""
        with self._lock:
            for index, s in enumerate(self.seen):
                if s.name == name and s.phase == phase_:
                    return index
        raise AssertionError(f"{name} was never seen {phase_}: {self.phases(name)}")


def json_stream(lines: Iterable[str]) -> Iterator[Any]:
    """The JSON documents of a stream that concatenates them (`kubectl get -w -o json`)."""
    decoder = json.JSONDecoder()
    buffer = ""
    for line in lines:
        buffer += line
        while buffer.strip():
            try:
                document, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                break  # incomplete: read on
            yield document
            buffer = buffer.lstrip()[end:]


@contextmanager
def watching(k: Kubectl) -> Iterator[Watch]:
    # -o json, not a jsonpath template: kubectl 1.35 prints only the first object of a watch
    # with a {range} template, and aligns tab-separated fields with spaces.
    watch = Watch()
    # -v=6 logs each request's response: the watch's own line says it is open, so nothing
    # applied after the yield can be missed (kubectl lists first, then watches from there).
    process = subprocess.Popen(
        k.argv("get", "transcodejobs", "--watch", "-o", "json", "-v=6"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watching_since = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for document in json_stream(process.stdout):
            watch.record(document)

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if "watch=true" in line and '"200 OK"' in line:
                watching_since.set()

    readers = [threading.Thread(target=f, daemon=True) for f in (read, read_log)]
    for reader in readers:
        reader.start()
    try:
        wait_until("kubectl's watch to be open", watching_since.is_set, WATCH_CATCH_UP_SECONDS)
        yield watch
    finally:
        # What happened last is often what the test asserts on: let the stream catch up.
        wait_until(
            "the watch to deliver every job's current state",
            lambda: watch.has_seen(json.loads(k("get", "transcodejobs", "-o", "json"))["items"]),
            WATCH_CATCH_UP_SECONDS,
            lambda: k("get", "transcodejobs"),
        )
        process.terminate()
        process.wait(timeout=10)
        for reader in readers:
            reader.join(timeout=5)
