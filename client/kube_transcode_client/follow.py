"""Following one TranscodeJob to its end by a Kubernetes watch: phase and progress on stderr,
and a chunked job's chunks (`chunks 5/13 done, 2 running`) on a line of their own whenever one
more is stored: the bar's phase stays `Running`, so its time and ETA hold across chunks.

`job_state` reads what a job says of itself (pure); `follow` gets the job once, then watches
from that resourceVersion, so no change between the two is missed, and starts a new watch
when the server ends one (its timeout, or 410 Gone: then from a fresh read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from kube_transcode.names import GROUP, JOB_PLURAL, VERSION
from kube_transcode_worker.terminal import ProgressReporter

FINISHED = frozenset({"Succeeded", "Failed"})
WATCH_SECONDS = 300  # the server ends each watch after this; a new one starts at once
REQUEST_TIMEOUT_SECONDS = 30
GONE = 410


class JobNotFoundError(Exception):
    """No such TranscodeJob in the namespace."""


class JobDeletedError(Exception):
    """The job was deleted while it was followed."""


@dataclass(frozen=True)
class Chunks:
    """status.chunks: a chunked job's tasks (video chunks and audio)."""

    total: int
    done: int
    running: int
    redone: int

    def describe(self) -> str:
        text = f"chunks {self.done}/{self.total} done, {self.running} running"
        return f"{text}, {self.redone} redone" if self.redone else text


@dataclass(frozen=True)
class JobState:
    phase: str  # Pending until the operator has written a phase
    progress: int | None
    finished: bool
    playlist: str | None  # Succeeded: the master playlist's URL, else its s3:// location
    reason: str  # Failed: the Failed condition's reason and message
    message: str
    chunks: Chunks | None = None

    @property
    def succeeded(self) -> bool:
        return self.finished and self.phase == "Succeeded"


def job_state(job: Mapping[str, Any]) -> JobState:
    """A job's phase, progress and, once it has finished, its result. A status written for an
    older generation (the spec changed since) is not yet the end."""
    status = job.get("status") or {}
    phase = status.get("phase") or "Pending"
    observed = status.get("observedGeneration")
    generation = (job.get("metadata") or {}).get("generation")
    current = observed is None or generation is None or observed >= generation
    outputs = status.get("outputs") or {}
    failed: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Failed"), {}
    )
    return JobState(
        phase=phase,
        progress=status.get("progress"),
        finished=phase in FINISHED and current,
        playlist=outputs.get("masterPlaylistUrl") or outputs.get("masterPlaylist"),
        reason=failed.get("reason") or "Failed",
        message=failed.get("message") or status.get("message") or "",
        chunks=_chunks(status.get("chunks")),
    )


def _chunks(found: Any) -> Chunks | None:
    if not isinstance(found, Mapping) or not found.get("total"):
        return None
    return Chunks(
        total=int(found["total"]),
        done=int(found.get("done") or 0),
        running=int(found.get("running") or 0),
        redone=int(found.get("redone") or 0),
    )


class JobDisplay:
    """A job's states on a ProgressReporter; its chunks when one more was stored (or first
    seen), not on every change of the running ones."""

    def __init__(self, progress: ProgressReporter) -> None:
        self.progress = progress
        self._shown: tuple[int, int] | None = None

    def show(self, state: JobState) -> None:
        chunks = state.chunks
        if chunks is not None and (chunks.done, chunks.total) != self._shown:
            self._shown = (chunks.done, chunks.total)
            if self.progress.enabled:
                self.progress.close()  # the bar's line ends first
                self.progress.stream.write(chunks.describe() + "\n")
                self.progress.stream.flush()
        if state.succeeded:
            self.progress.update(state.phase, 100.0)
        elif state.phase == "Running":
            self.progress.update(state.phase, float(state.progress or 0))
        else:
            self.progress.update(state.phase)


def get_job(jobs: Any, namespace: str, name: str) -> dict[str, Any]:
    try:
        job: dict[str, Any] = jobs.get_namespaced_custom_object(
            GROUP, VERSION, namespace, JOB_PLURAL, name, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
    except ApiException as error:
        if error.status == 404:
            raise JobNotFoundError(f"no TranscodeJob {name} in namespace {namespace}") from None
        raise
    return job


def follow(
    jobs: Any,
    namespace: str,
    name: str,
    progress: ProgressReporter,
    job: dict[str, Any] | None = None,
) -> JobState:
    """Watch the job until it has finished; its last state. `job`: as just created or read."""
    if job is None:
        job = get_job(jobs, namespace, name)
    display = JobDisplay(progress)
    state = job_state(job)
    display.show(state)
    version = job["metadata"]["resourceVersion"]
    while not state.finished:
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in stream.stream(  # type: ignore[no-untyped-call]
                jobs.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                JOB_PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + REQUEST_TIMEOUT_SECONDS,
            ):
                obj = event["object"]
                if event["type"] == "DELETED":
                    raise JobDeletedError(f"TranscodeJob {name} was deleted while watched")
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                state = job_state(obj)
                display.show(state)
                if state.finished:
                    break
        except ApiException as error:
            if error.status != GONE:
                raise
            # The version is too old to watch from: read the job again and watch from there.
            job = get_job(jobs, namespace, name)
            version = job["metadata"]["resourceVersion"]
            state = job_state(job)
            display.show(state)
        finally:
            stream.stop()  # type: ignore[no-untyped-call]
    progress.close()
    return state
