"""A chunked job's events applied to its status: the plan, each part's progress and storing,
retries and failures of one part, the assembler's success; duplicate and late events change
nothing, and progress never goes down (also after the operator lost what it tracked)."""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kube_transcode.chunks import ChunkCounts
from kube_transcode.messages import (
    ChunkReport,
    JobEvent,
    JobOutputs,
    JobRef,
    Phase,
    RenditionOutput,
    encode,
)
from kube_transcode_operator import status
from kube_transcode_operator.conditions import find_condition
from kube_transcode_operator.jobstore import StatusChange
from kube_transcode_operator.running_parts import RunningParts
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.status import KubeEvent
from kube_transcode_operator.transitions import (
    Relevance,
    apply_event,
    is_progress,
    parts_to_stop,
    relevance,
    supersedes,
    with_part_workers,
)
from kube_transcode_operator.worker_events import Outcome, WorkerEventHandler

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
JOB = JobRef(uid="u1", namespace="team", name="film", generation=1)
TOTAL = 5  # four video chunks and the audio


def report(task: str, done: int = 0, redone: int = 0, *, stored: bool = False) -> ChunkReport:
    return ChunkReport(
        task=task, counts=ChunkCounts(total=TOTAL, done=done, redone=redone), stored=stored
    )


def part(
    task: str,
    phase: Phase = Phase.transcoding,
    *,
    attempt: int = 1,
    done: int = 0,
    redone: int = 0,
    stored: bool = False,
    generation: int = 1,
    **fields: Any,
) -> JobEvent:
    return JobEvent(
        job=JOB.model_copy(update={"generation": generation}),
        attempt=attempt,
        worker=f"worker-{task}",
        phase=phase,
        chunk=report(task, done, redone, stored=stored),
        started_at=T0,
        at=T0,
        **fields,
    )


def plan(attempt: int = 1) -> JobEvent:
    return part("plan", attempt=attempt)


def queued() -> dict[str, Any]:
    patch, _ = status.queued(
        {}, uid="u1", generation=1, queue="q", priority="normal", bucket="b", prefix="team/film",
        now=T0,
    )  # fmt: skip
    return patch


def step(
    current: dict[str, Any], evt: JobEvent, running: Mapping[str, float] | None = None
) -> tuple[dict[str, Any], KubeEvent | None]:
    assert relevance(current, evt) is Relevance.APPLIES
    transition = apply_event(
        current, evt, master_playlist_url="http://s3/b/m.m3u8", now=T0, running_parts=running
    )
    return {**current, **transition.patch}, transition.event


def planned() -> dict[str, Any]:
    current, _ = step(queued(), plan())
    return current


def outputs() -> JobOutputs:
    return JobOutputs(
        master_uri="s3://b/team/film/master.m3u8",
        renditions=(
            RenditionOutput(name="720p", width=1280, height=720, bandwidth=4_700_000,
                            average_bandwidth=3_100_000, codecs="avc1.64001f",
                            playlist_uri="s3://b/team/film/720p/index.m3u8"),
        ),
        has_audio=True,
    )  # fmt: skip


# --- transitions ---------------------------------------------------------------------------


def test_the_plan_starts_status_chunks_and_says_so_once() -> None:
    current, posted = step(queued(), plan())
    assert current["chunks"] == {"total": 5, "done": 0, "running": 0, "redone": 0,
                                 "summary": "0/5"}  # fmt: skip
    assert (current["phase"], current["progress"], current["attempts"]) == ("Running", 0, 1)
    assert posted is not None and (posted.reason, posted.type) == ("Planned", "Normal")
    assert "planned 5 chunk tasks" in posted.message
    again, posted = step(current, plan())
    assert again == current and posted is None


def test_progress_is_parts_done_plus_the_running_parts_shares() -> None:
    current, posted = step(planned(), part("chunk-0000", progress_percent=50), {"chunk-0000": 50})
    assert posted is None  # the job was running already: no Event per part
    assert (current["progress"], current["chunks"]["running"]) == (10, 1)
    running = {"chunk-0000": 50.0, "chunk-0001": 30.0}
    current, _ = step(current, part("chunk-0001", progress_percent=30), running)
    assert (current["progress"], current["chunks"]["running"]) == (16, 2)  # (0 + 80) / 5
    assert current["chunks"]["summary"] == "0/5"
    assert "chunks 0/5 done, 2 running" in current["message"]
    assert "chunk-0001 (attempt 1) transcoding" in current["message"]
    # chunk-0000 stored: one task done, chunk-0001 still at 30 %.
    current, _ = step(current, part("chunk-0000", done=1, stored=True), {"chunk-0001": 30.0})
    assert current["chunks"] == {"total": 5, "done": 1, "running": 1, "redone": 0,
                                 "summary": "1/5"}  # fmt: skip
    assert current["progress"] == 26  # (100 + 30) / 5
    assert find_condition(current["conditions"], "Running")["status"] == "True"  # type: ignore[index]


def test_a_part_s_own_attempt_is_not_the_job_s() -> None:
    current = planned()
    assert relevance(current, part("chunk-0002", attempt=3)) is Relevance.APPLIES
    after, _ = step(current, part("chunk-0002", attempt=3, progress_percent=10), {"chunk-0002": 10})
    assert after["attempts"] == 1
    # The job's own events still must not be older than its attempt.
    assert relevance({**current, "attempts": 2}, plan()) is Relevance.STALE


def test_part_events_of_another_generation_or_an_ended_job_are_stale() -> None:
    current = planned()
    assert relevance(current, part("chunk-0000", generation=2)) is Relevance.NOT_YET_PUBLISHED
    newer = {**current, "published": {"generation": 2, "key": "u1/2/1"}}
    assert relevance(newer, part("chunk-0000")) is Relevance.STALE
    ended = {**current, "phase": "Failed"}
    assert relevance(ended, part("audio", done=5, stored=True)) is Relevance.STALE


def test_a_duplicate_event_changes_nothing() -> None:
    current, _ = step(planned(), part("chunk-0001", done=1, stored=True), {})
    again, posted = step(current, part("chunk-0001", done=1, stored=True), {})
    assert again == current and posted is None


def test_late_events_from_other_workers_never_lower_counts_or_progress() -> None:
    current, _ = step(planned(), part("chunk-0002", done=3, redone=1, stored=True), {})
    assert (current["chunks"]["done"], current["chunks"]["redone"], current["progress"]) == (
        3, 1, 60,
    )  # fmt: skip
    # A part's event read the stored counts earlier and arrives later.
    late, _ = step(current, part("chunk-0000", done=1, progress_percent=5), {"chunk-0000": 5})
    assert (late["chunks"]["done"], late["chunks"]["redone"], late["progress"]) == (3, 1, 61)
    # The plan's own event arriving after the parts' does not reset them either.
    replan, _ = step(late, plan())
    assert (replan["chunks"]["done"], replan["progress"]) == (3, 61)


def test_progress_stays_below_100_until_the_job_succeeded() -> None:
    current, _ = step(planned(), part("chunk-0003", done=5, stored=True), {})
    assert current["progress"] == 99
    assert current["phase"] == "Running"


def test_a_part_s_retry_keeps_the_job_running_and_warns_naming_the_part() -> None:
    running = {"chunk-0000": 80.0, "chunk-0001": 40.0}
    current, _ = step(planned(), part("chunk-0001", done=1, progress_percent=40), running)
    before = current["progress"]
    retry_at = T0 + timedelta(seconds=30)
    retried = part("chunk-0001", Phase.requeued, done=1, reason="StorageError",
                   message="upload reset", next_attempt=2, retry_at=retry_at)  # fmt: skip
    current, posted = step(current, retried, {"chunk-0000": 80.0})
    assert (current["phase"], current["attempts"]) == ("Running", 1)
    assert current["progress"] == before  # no reset
    assert current["chunks"]["running"] == 1
    assert posted is not None and (posted.type, posted.reason) == ("Warning", "ChunkRetrying")
    assert posted.message == (
        "chunk-0001 attempt 1 failed (StorageError): upload reset; attempt 2 at "
        "2026-12-01T12:00:30Z"
    )
    assert current["message"] == posted.message
    # Its next attempt reports on: still the job's attempt 1, still Running.
    current, _ = step(current, part("chunk-0001", attempt=2, done=1, redone=1), running)
    assert (current["attempts"], current["chunks"]["redone"]) == (1, 1)


def test_a_spot_interruption_of_a_part_puts_it_back_with_the_same_attempt() -> None:
    current, _ = step(planned(), part("audio", progress_percent=70), {"audio": 70.0})
    stopped = part("audio", Phase.requeued, reason="WorkerShutdown", message="SIGTERM",
                   next_attempt=1)  # fmt: skip
    current, posted = step(current, stopped, {})
    assert current["phase"] == "Running" and current["progress"] == 14
    assert posted is not None and posted.reason == "ChunkRequeued"
    assert posted.message == "audio attempt 1 stopped (WorkerShutdown): SIGTERM; back in the queue"


def test_a_part_that_fails_for_good_fails_the_job_with_its_reason() -> None:
    current, _ = step(planned(), part("chunk-0002", done=2, progress_percent=50), {})
    failed = part("chunk-0002", Phase.failed, attempt=3, done=2, reason="EncoderCrashed",
                  message="x264 aborted")  # fmt: skip
    current, posted = step(current, failed, {"chunk-0003": 10.0})
    assert current["phase"] == "Failed" and current["attempts"] == 1
    condition = find_condition(current["conditions"], "Failed")
    assert condition is not None and condition["reason"] == "EncoderCrashed"
    assert condition["message"] == ("chunk-0002 failed on attempt 3 (EncoderCrashed): x264 aborted")
    assert current["chunks"]["failedPart"] == "chunk-0002"
    assert posted is not None and (posted.type, posted.reason) == ("Warning", "Failed")
    # The operator stops the other parts once, then the job is settled.
    assert parts_to_stop(current) == "chunk-0002"
    stopped = {**current, "chunks": {**current["chunks"], "partsStopped": True}}
    assert parts_to_stop(stopped) is None
    assert parts_to_stop(planned()) is None
    # What the other parts report afterwards (Cancelled) is stale.
    cancelled = part("chunk-0003", Phase.failed, reason="Cancelled", message="stopped")
    assert relevance(current, cancelled) is Relevance.STALE


def test_the_assembler_s_success_ends_the_job_with_every_part_done() -> None:
    current, _ = step(planned(), part("chunk-0001", done=3, redone=2, stored=True), {})
    done = part("audio", Phase.succeeded, attempt=2, done=5, redone=2, stored=True,
                progress_percent=100, outputs=outputs())  # fmt: skip
    current, posted = step(current, done, {"chunk-0002": 40.0})
    assert current["phase"] == "Succeeded" and current["progress"] == 100
    assert current["attempts"] == 1  # the audio part's attempt 2 is not the job's
    assert current["chunks"] == {"total": 5, "done": 5, "running": 0, "redone": 2,
                                 "summary": "5/5"}  # fmt: skip
    assert current["outputs"]["masterPlaylist"] == "s3://b/team/film/master.m3u8"
    assert posted is not None and posted.reason == "Succeeded"


def test_after_an_operator_restart_nothing_tracked_and_progress_stays() -> None:
    running = {"chunk-0000": 90.0, "chunk-0001": 90.0, "chunk-0002": 90.0}
    current, _ = step(planned(), part("chunk-0002", done=1, progress_percent=90), running)
    assert current["progress"] == 74  # (100 + 270) / 5
    # A new operator knows only the event in front of it.
    current, _ = step(current, part("chunk-0001", done=1, progress_percent=91),
                      {"chunk-0001": 91.0})  # fmt: skip
    assert current["progress"] == 74
    assert current["chunks"]["running"] == 1
    current, _ = step(current, part("chunk-0000", done=2, stored=True), {"chunk-0001": 95.0})
    assert current["progress"] == 74  # (200 + 95) / 5 = 59: still never lower


def test_a_new_generation_starts_without_the_old_chunks() -> None:
    current, _ = step(planned(), part("chunk-0000", done=1, stored=True), {})
    patch, _ = status.queued(
        current, uid="u1", generation=2, queue="q", priority="normal", bucket="b",
        prefix="team/film", now=T0,
    )  # fmt: skip
    assert patch["chunks"] is None and patch["progress"] == 0


# --- what may be coalesced -----------------------------------------------------------------


def test_one_part_s_progress_never_carries_another_s_or_a_stored_or_plan_event() -> None:
    older = part("chunk-0001", progress_percent=10)
    assert supersedes(part("chunk-0001", progress_percent=20), older)
    assert not supersedes(part("chunk-0002", progress_percent=20), older)
    assert not supersedes(part("chunk-0001", attempt=2), older)
    assert not supersedes(part("chunk-0001", progress_percent=20), part("chunk-0001", stored=True))
    assert not supersedes(part("chunk-0001", progress_percent=20), plan())
    assert is_progress(older)
    assert not is_progress(part("chunk-0001", stored=True)) and not is_progress(plan())


# --- the tracker of running parts ----------------------------------------------------------


def test_the_tracker_follows_parts_until_stored_requeued_or_failed() -> None:
    parts = RunningParts()
    key = "u1/1"
    parts.observe(part("chunk-0000", progress_percent=20))
    parts.observe(part("chunk-0001", progress_percent=50))
    parts.observe(part("chunk-0001", progress_percent=40))  # late: lowers nothing
    assert parts.of(key) == {"chunk-0000": 20.0, "chunk-0001": 50.0}
    parts.observe(part("chunk-0000", done=1, stored=True))
    parts.observe(part("chunk-0000", progress_percent=99))  # late, after it was stored
    assert parts.of(key) == {"chunk-0001": 50.0}
    parts.observe(part("chunk-0001", Phase.requeued, reason="Crash", next_attempt=2))
    parts.observe(part("chunk-0001", progress_percent=60))  # the failed attempt, late
    assert parts.of(key) == {}
    parts.observe(part("chunk-0001", attempt=2, progress_percent=5))
    assert parts.of(key) == {"chunk-0001": 5.0}
    parts.observe(part("audio", Phase.failed, reason="Boom"))
    assert parts.of(key) == {}  # the job failed: nothing of it runs on


def test_the_tracker_ignores_the_job_s_own_events_until_the_job_ends() -> None:
    parts = RunningParts()
    parts.observe(part("chunk-0000", progress_percent=20))
    parts.observe(plan())
    assert parts.of("u1/1") == {"chunk-0000": 20.0}
    parts.forget("u1/1")
    assert parts.of("u1/1") == {}


# --- the handler: tracker, coalescer and status together -----------------------------------


class Store:
    """One job, its status patched in place as the API server would merge it."""

    def __init__(self, current: dict[str, Any]) -> None:
        self.body: dict[str, Any] = {
            "metadata": {"uid": "u1", "namespace": "team", "name": "film", "generation": 1},
            "spec": {"source": {"url": "s3://in/film.mp4"}},
            "status": current,
        }
        self.patches = 0

    def update_status(self, job: Any, change: StatusChange) -> dict[str, Any] | None:
        body = deepcopy(self.body)
        patch = change(body)
        if patch is None:
            return None
        self.body["status"] = {**self.body["status"], **patch}
        self.patches += 1
        return body


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def handler(store: Store, clock: Clock, posted: list[KubeEvent]) -> WorkerEventHandler:
    settings = OperatorSettings(rabbitmq_url="amqp://x", progress_interval_seconds=1.0)  # type: ignore[arg-type]
    return WorkerEventHandler(
        store,  # type: ignore[arg-type]
        settings,
        lambda _, event: posted.append(event),
        clock=clock,
    )


def test_the_handler_coalesces_per_part_and_never_swallows_a_stored_event() -> None:
    store, clock, posted = Store(planned()), Clock(), list[KubeEvent]()
    events = handler(store, clock, posted)
    assert events.handle(encode(part("chunk-0000", progress_percent=10))) is Outcome.ACK
    # Another part's progress within the interval is its own: applied, not held.
    assert events.handle(encode(part("chunk-0001", progress_percent=20))) is Outcome.ACK
    assert store.patches == 2
    assert store.body["status"]["chunks"]["running"] == 2
    assert store.body["status"]["progress"] == 6  # (10 + 20) / 5
    # chunk-0000's next progress is held; its stored event right after is applied at once.
    clock.now = 0.2
    events.handle(encode(part("chunk-0000", progress_percent=90)))
    assert store.patches == 2
    events.handle(encode(part("chunk-0000", done=1, stored=True)))
    assert store.patches == 3
    chunks = store.body["status"]["chunks"]
    assert (chunks["done"], chunks["running"]) == (1, 1)
    assert store.body["status"]["progress"] == 24  # (100 + 20) / 5
    # The held progress was superseded by the stored event: nothing comes due.
    clock.now = 5.0
    events.flush()
    assert store.patches == 3
    assert posted == []  # the job was running already: no Event for progress or storing


def test_the_handler_posts_a_warning_for_a_part_s_retry_and_fails_the_job_on_its_failure() -> None:
    store, clock, posted = Store(planned()), Clock(), list[KubeEvent]()
    events = handler(store, clock, posted)
    events.handle(encode(part("chunk-0002", progress_percent=50)))
    events.handle(encode(part("chunk-0002", Phase.requeued, reason="Crash", message="oom",
                              next_attempt=2)))  # fmt: skip
    assert [e.reason for e in posted] == ["ChunkRetrying"]
    assert store.body["status"]["chunks"]["running"] == 0
    assert store.body["status"]["phase"] == "Running"
    events.handle(encode(part("chunk-0002", Phase.failed, attempt=2, reason="Crash",
                              message="oom again")))  # fmt: skip
    assert store.body["status"]["phase"] == "Failed"
    assert store.body["status"]["chunks"]["failedPart"] == "chunk-0002"
    assert [e.reason for e in posted] == ["ChunkRetrying", "Failed"]
    # Later events of the other parts change nothing.
    before = store.patches
    events.handle(encode(part("chunk-0003", done=2, stored=True)))
    assert store.patches == before


def test_the_workers_on_a_job_s_parts_are_in_status_while_it_runs() -> None:
    running = with_part_workers({"phase": "Running", "chunks": {"done": 1}}, {"w-2", "w-1"})
    assert running["chunks"] == {"done": 1, "workers": ["w-1", "w-2"]}
    ended = with_part_workers({"phase": "Succeeded", "chunks": {"done": 4}}, {"w-1"})
    assert ended["chunks"]["workers"] == []
    assert with_part_workers({"phase": "Running"}, {"w-1"}) == {"phase": "Running"}
