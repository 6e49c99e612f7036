"""What an end-to-end test does and sees as a user would: kubectl, helm, S3 and `pgrep`.

TranscodeJobs are applied and read with kubectl; a `kubectl get -w` in the background keeps
every status change (a poll could miss a short phase); outputs are read from S3 as a player's
CDN would. Waits poll with deadlines, never sleep in place of a condition.
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

from tests.conftest import Kubectl
from tests.polling import wait_until

API_VERSION = "kubetranscode.io/v1alpha1"
TERMINAL = frozenset({"Succeeded", "Failed"})
OPERATOR = "deployment/kube-transcode-operator"
WORKER = "deployment/kube-transcode-worker-default"
OPERATOR_PODS = "app.kubernetes.io/component=operator"
WATCH_CATCH_UP_SECONDS = 15

Job = dict[str, Any]


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


def kubectl_run(
    k: Kubectl, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl with its exit status and stderr apart (Kubectl merges them)."""
    return subprocess.run(
        [str(k.bin_dir / "kubectl"), "--kubeconfig", str(k.kubeconfig), "-n", k.namespace, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
        proc = kubectl_run(self.k, "get", "transcodejob", name, "-o", "json", "--ignore-not-found")
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
    process = subprocess.Popen(
        [
            str(k.bin_dir / "kubectl"), "--kubeconfig", str(k.kubeconfig), "-n", k.namespace,
            "get", "transcodejobs", "--watch", "-o", "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip

    def read() -> None:
        assert process.stdout is not None
        for document in json_stream(process.stdout):
            watch.record(document)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
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
        reader.join(timeout=5)


# ------------------------------------------------------------------------------------ S3


def s3_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def s3_delete_prefix(s3: Any, bucket: str, prefix: str) -> None:
    keys = s3_keys(s3, bucket, prefix)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def s3_download(s3: Any, bucket: str, prefix: str, dest: Path) -> list[str]:
    """Every object under prefix/ into dest (keys relative to the prefix); returns them."""
    relative = []
    for key in s3_keys(s3, bucket, f"{prefix}/"):
        rel = key.removeprefix(f"{prefix}/")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(dest / rel))
        relative.append(rel)
    return sorted(relative)


# ----------------------------------------------------------------------------- processes


def ffmpeg_pids(uid: str) -> list[int]:
    """FFmpeg processes working on the job with this uid (its scratch folder names the uid).

    ffprobe reads the same folder: only programs named ffmpeg* count (the worker may run a
    build such as imageio-ffmpeg's ffmpeg-linux-x86_64-v9.0.2).
    """
    proc = subprocess.run(
        ["pgrep", "-f", f"job-{uid}-"], capture_output=True, text=True, check=False
    )
    pids = []
    for pid in proc.stdout.split():
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except OSError:
            continue  # gone meanwhile
        if Path(argv0).name.startswith("ffmpeg"):
            pids.append(int(pid))
    return pids
