"""Conditions and the operator's own status transitions (queued, rejected, deadline, TTL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kube_transcode_operator import status
from kube_transcode_operator.conditions import set_condition

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = set_condition([], "Running", "True", "Fetching", "a", generation=1, now=T0)
    same = set_condition(first, "Running", "True", "Transcoding", "b", generation=1, now=T1)
    flipped = set_condition(same, "Running", "False", "Completed", "c", generation=1, now=T1)
    assert same[0]["lastTransitionTime"] == "2026-11-22T12:00:00Z"
    assert same[0]["reason"] == "Transcoding"
    assert flipped[0]["lastTransitionTime"] == "2026-11-22T12:01:00Z"
    assert flipped[0]["observedGeneration"] == 1


def test_queued_records_the_idempotency_key_and_priority() -> None:
    patch, event = status.queued(
        {}, uid="u1", generation=2, queue="transcode.default", priority="high",
        bucket="b", prefix="ns/job", now=T0,
    )  # fmt: skip
    assert patch["phase"] == "Queued"
    assert patch["published"]["key"] == "u1/2/1"
    assert patch["observedGeneration"] == 2
    assert patch["conditions"][0] | {"lastTransitionTime": None} == {
        "type": "Queued",
        "status": "True",
        "reason": "Published",
        "message": "published to queue transcode.default at priority high",
        "observedGeneration": 2,
        "lastTransitionTime": None,
    }
    assert (event.type, event.reason) == ("Normal", "Queued")
    assert status.is_published(patch, "u1", 2)
    assert not status.is_published(patch, "u1", 3)
    assert not status.is_published(patch, "other-uid", 2)


def test_a_new_generation_drops_the_previous_runs_conditions_and_outputs() -> None:
    done = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "outputs": {"masterPlaylist": "s3://b/p/master.m3u8"},
        "conditions": set_condition([], "Succeeded", "True", "Completed", "", generation=1, now=T0),
    }
    patch, _ = status.queued(
        done, uid="u", generation=2, queue="q", priority="normal", bucket="b", prefix="p", now=T1
    )
    assert [c["type"] for c in patch["conditions"]] == ["Queued"]
    assert patch["outputs"] is None  # a merge patch removes it
    assert patch["completionTime"] is None


def test_rejection_settles_the_generation() -> None:
    patch, event = status.rejected(
        {}, reason="OutputNotAllowed", message="no", generation=1, now=T0
    )
    assert patch["phase"] == "Failed"
    assert status.is_settled(patch, 1)
    assert not status.is_settled(patch, 2)
    assert (event.type, event.reason) == ("Warning", "OutputNotAllowed")


def test_broker_down_is_a_false_queued_condition() -> None:
    patch = status.broker_unavailable({}, error="connection refused", generation=1, now=T0)
    assert patch["phase"] == "Pending"
    (queued,) = patch["conditions"]
    assert (queued["status"], queued["reason"]) == ("False", "BrokerUnavailable")
    assert "connection refused" in queued["message"]


def test_deadline_counts_from_start_and_only_for_unfinished_jobs() -> None:
    running = {"phase": "Running", "startTime": "2026-11-22T12:00:00Z"}
    assert not status.deadline_passed(running, 61, T1)
    assert status.deadline_passed(running, 60, T1)
    assert not status.deadline_passed({**running, "phase": "Succeeded"}, 1, T1)
    assert not status.deadline_passed(running, None, T1)
    patch, event = status.deadline_exceeded(
        {"conditions": set_condition([], "Running", "True", "Transcoding", "", generation=1,
                                     now=T0)},
        deadline_seconds=60, generation=1, now=T1,
    )  # fmt: skip
    kinds = {c["type"]: (c["status"], c["reason"]) for c in patch["conditions"]}
    assert kinds == {
        "Running": ("False", "DeadlineExceeded"),
        "Failed": ("True", "DeadlineExceeded"),
    }
    assert event.reason == "DeadlineExceeded"


def test_ttl_counts_from_completion() -> None:
    done = {"phase": "Failed", "completionTime": "2026-11-22T12:00:00Z"}
    assert status.ttl_expired(done, 60, T1)
    assert not status.ttl_expired(done, 61, T1)
    assert status.ttl_expired(done, 0, T0)
    assert not status.ttl_expired({**done, "phase": "Running"}, 0, T1)
    assert not status.ttl_expired(done, None, T1)
