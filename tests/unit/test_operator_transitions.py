"""Worker events applied to a job's status, and progress coalescing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kube_transcode.messages import JobEvent, JobOutputs, JobRef, Phase, RenditionOutput
from kube_transcode_operator import status
from kube_transcode_operator.coalesce import ProgressCoalescer
from kube_transcode_operator.conditions import find_condition
from kube_transcode_operator.transitions import Relevance, apply_event, relevance, supersedes

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
JOB = JobRef(uid="u1", namespace="team", name="movie", generation=1)


def event(phase: Phase, attempt: int = 1, generation: int = 1, **fields: Any) -> JobEvent:
    return JobEvent(
        job=JOB.model_copy(update={"generation": generation}),
        attempt=attempt,
        worker="worker-7",
        phase=phase,
        started_at=T0,
        at=T0,
        **fields,
    )


def queued() -> dict[str, Any]:
    patch, _ = status.queued(
        {}, uid="u1", generation=1, queue="q", priority="normal", bucket="b", prefix="team/movie",
        now=T0,
    )  # fmt: skip
    return patch


def condition(current: dict[str, Any], type_: Any) -> Any:
    found = find_condition(current["conditions"], type_)
    assert found is not None, f"no {type_} condition"
    return found


def step(current: dict[str, Any], evt: JobEvent) -> tuple[dict[str, Any], Any]:
    transition = apply_event(current, evt, master_playlist_url="http://s3/b/m.m3u8", now=T0)
    return {**current, **transition.patch}, transition.event


def test_events_before_the_operator_recorded_publishing_wait() -> None:
    assert relevance({}, event(Phase.fetching)) is Relevance.NOT_YET_PUBLISHED
    assert relevance(queued(), event(Phase.fetching, generation=2)) is Relevance.NOT_YET_PUBLISHED
    assert relevance(queued(), event(Phase.fetching)) is Relevance.APPLIES


def test_events_of_older_generations_attempts_or_ended_jobs_are_stale() -> None:
    later = {**queued(), "published": {"generation": 2, "key": "u1/2/1"}}
    assert relevance(later, event(Phase.fetching)) is Relevance.STALE
    assert relevance({**queued(), "attempts": 2}, event(Phase.fetching)) is Relevance.STALE
    assert relevance({**queued(), "phase": "Succeeded"}, event(Phase.failed, reason="X")) is (
        Relevance.STALE
    )


def test_running_progress_only_rises_and_posts_an_event_per_step() -> None:
    current, posted = step(queued(), event(Phase.fetching))
    assert (current["phase"], current["worker"], posted.reason) == (
        "Running",
        "worker-7",
        "Started",
    )
    assert condition(current, "Queued")["status"] == "False"
    current, posted = step(current, event(Phase.transcoding, progress_percent=40.7))
    assert (current["progress"], posted.reason) == (40, "Transcoding")
    current, posted = step(current, event(Phase.transcoding, progress_percent=30.0))
    assert current["progress"] == 40
    assert posted is None  # progress alone is not a transition


def test_success_records_outputs_and_ends_running() -> None:
    outputs = JobOutputs(
        master_uri="s3://b/team/movie/master.m3u8",
        renditions=(
            RenditionOutput(name="720p", width=1280, height=720, bandwidth=4_700_000,
                            average_bandwidth=3_100_000, codecs="avc1.64001f",
                            playlist_uri="s3://b/team/movie/720p/index.m3u8"),
        ),
        has_audio=False,
    )  # fmt: skip
    running, _ = step(queued(), event(Phase.transcoding, progress_percent=90))
    done, posted = step(running, event(Phase.succeeded, progress_percent=100, outputs=outputs))
    assert done["phase"] == "Succeeded"
    assert done["progress"] == 100
    assert done["outputs"] == {
        "masterPlaylist": "s3://b/team/movie/master.m3u8",
        "masterPlaylistUrl": "http://s3/b/m.m3u8",
        "renditions": [
            {
                "name": "720p",
                "resolution": "1280x720",
                "bandwidth": 4_700_000,
                "codecs": "avc1.64001f",
            }
        ],
    }
    assert condition(done, "Running")["status"] == "False"
    assert condition(done, "Succeeded")["status"] == "True"
    assert (posted.type, posted.reason) == ("Normal", "Succeeded")


def test_a_retry_the_worker_scheduled_shows_as_retrying() -> None:
    running, _ = step(queued(), event(Phase.fetching))
    retry_at = T0 + timedelta(seconds=30)
    retrying, posted = step(
        running,
        event(Phase.requeued, reason="SourceUnreachable", message="reset", next_attempt=2,
              retry_at=retry_at),
    )  # fmt: skip
    assert retrying["phase"] == "Retrying"
    assert retrying["attempts"] == 2
    assert retrying["nextAttemptTime"] == "2026-11-22T12:00:30Z"
    assert "attempt 1 failed (SourceUnreachable): reset; attempt 2 at" in retrying["message"]
    assert (posted.type, posted.reason) == ("Warning", "AttemptFailed")
    again, posted = step(retrying, event(Phase.probing, attempt=2))
    assert (again["phase"], again["progress"], posted.reason) == ("Running", 0, "Started")


def test_a_worker_shutdown_puts_the_same_attempt_back_in_the_queue() -> None:
    running, _ = step(queued(), event(Phase.transcoding, progress_percent=50))
    back, posted = step(
        running, event(Phase.requeued, reason="WorkerShutdown", message="SIGTERM", next_attempt=1)
    )
    assert (back["phase"], back["attempts"], back["progress"]) == ("Queued", 1, 0)
    assert posted.reason == "Requeued"


def test_final_failure_carries_the_workers_reason() -> None:
    failed, posted = step(
        queued(), event(Phase.failed, attempt=3, reason="UnsupportedCodec", message="prores")
    )
    failed_condition = condition(failed, "Failed")
    assert (failed["phase"], failed_condition["reason"]) == ("Failed", "UnsupportedCodec")
    assert failed_condition["message"] == "attempt 3 failed (UnsupportedCodec): prores"
    assert (posted.type, posted.reason) == ("Warning", "Failed")


def test_coalescer_lets_one_update_per_interval_through_and_keeps_the_latest() -> None:
    coalescer: ProgressCoalescer[int] = ProgressCoalescer(interval=1.0)
    assert coalescer.offer("job", 10, now=0.0)
    coalescer.applied("job", now=0.0)
    assert not coalescer.offer("job", 20, now=0.3)
    assert not coalescer.offer("job", 30, now=0.6)
    assert coalescer.due(now=0.9) == []
    assert coalescer.due(now=1.0) == [("job", 30)]
    assert coalescer.due(now=2.0) == []
    assert coalescer.offer("other", 5, now=0.5)  # jobs are independent


def test_a_transition_drops_held_progress() -> None:
    coalescer: ProgressCoalescer[int] = ProgressCoalescer(interval=1.0)
    coalescer.applied("job", now=0.0)
    assert not coalescer.offer("job", 99, now=0.5)
    coalescer.applied("job", now=0.6)  # e.g. succeeded, applied at once
    assert coalescer.due(now=5.0) == []


def test_only_progress_of_the_same_attempt_carries_an_older_one() -> None:
    older = event(Phase.fetching)
    assert supersedes(event(Phase.transcoding, progress_percent=40.0), older)
    assert not supersedes(event(Phase.transcoding, attempt=2), older)
    assert not supersedes(event(Phase.transcoding, generation=2), older)
    assert not supersedes(event(Phase.failed, reason="Boom"), older)
    assert not supersedes(older, event(Phase.requeued, reason="Shutdown"))
