"""The single ack/nack decision and its backoff."""

from __future__ import annotations

import random

import pytest

from kube_transcode.messages import CANCELLED_REASON
from kube_transcode_worker.errors import JobCancelledError, PermanentJobError, TransientJobError
from kube_transcode_worker.retry import (
    INVALID_MESSAGE,
    Ack,
    Cancelled,
    DeadLetter,
    Discard,
    Failed,
    Interrupted,
    Invalid,
    NotStarted,
    Requeue,
    Retry,
    RetryPolicy,
    Succeeded,
    decide,
)

pytestmark = pytest.mark.unit

POLICY = RetryPolicy(max_attempts=3, base_seconds=10, max_seconds=25)
BUSY = Failed(TransientJobError("SourceUnavailable", "HTTP 503"))


def test_success_acks_and_shutdown_requeues_without_spending_an_attempt() -> None:
    assert decide(Succeeded(), 1, POLICY) == Ack()
    assert decide(Interrupted(), 3, POLICY) == Requeue()


def test_transient_failures_retry_with_the_next_attempt_until_the_limit() -> None:
    first = decide(BUSY, 1, POLICY, rng=random.Random(1))
    assert isinstance(first, Retry) and first.next_attempt == 2
    assert first.reason == "SourceUnavailable" and 0 <= first.delay_seconds <= 10
    assert isinstance(decide(BUSY, 2, POLICY), Retry)
    last = decide(BUSY, 3, POLICY)
    assert isinstance(last, DeadLetter) and last.reason == "SourceUnavailable"
    assert "3 of 3 attempts" in last.message


def test_a_jobs_own_limit_lowers_the_workers_but_never_raises_it() -> None:
    assert isinstance(decide(BUSY, 1, POLICY, max_attempts=1), DeadLetter)
    assert isinstance(decide(BUSY, 3, POLICY, max_attempts=10), DeadLetter)


@pytest.mark.parametrize(
    "error",
    [
        PermanentJobError("SourceNotFound", "404"),
        TransientJobError("InvalidMessage", "never retried by policy"),
    ],
)
def test_errors_that_retrying_cannot_fix_are_dead_lettered_at_once(
    error: TransientJobError,
) -> None:
    assert decide(Failed(error), 1, POLICY) == DeadLetter(error.reason, error.message)


def test_an_unreadable_body_is_dead_lettered_as_invalid_on_its_first_delivery() -> None:
    generous = RetryPolicy(max_attempts=10, base_seconds=1, max_seconds=5)
    settled = decide(Invalid("body is not UTF-8 JSON"), 1, generous, max_attempts=10)
    # The dead letter's x-kt-reason and x-kt-message, as the operator and a human read them.
    assert settled == DeadLetter("InvalidMessage", "body is not UTF-8 JSON")
    raised_as_transient = Failed(TransientJobError(INVALID_MESSAGE, "cannot decode: KeyError"))
    assert decide(raised_as_transient, 1, generous) == DeadLetter(
        "InvalidMessage", "cannot decode: KeyError"
    )


def test_a_policy_that_would_retry_an_unreadable_body_is_refused() -> None:
    # An unreadable body has no attempt number to increase: it can only be dead-lettered.
    with pytest.raises(ValueError, match="inconsistent"):
        RetryPolicy(never_retry=frozenset({"SourceNotFound"}))


def test_a_delivery_that_arrives_while_the_worker_stops_goes_back_as_it_came() -> None:
    # Same attempt, no failure counted: the next worker starts it as if this one never saw it.
    assert decide(NotStarted(), 1, POLICY) == Requeue("WorkerShutdown")


def test_a_cancel_that_is_not_a_shutdown_counts_as_a_transient_failure() -> None:
    assert isinstance(decide(Failed(JobCancelledError()), 1, POLICY), Retry)


def test_work_the_operator_cancelled_is_discarded_on_any_attempt() -> None:
    # Not a retry and not a dead letter: nobody wants the result, nothing needs inspecting.
    for attempt in (1, 3):
        settled = decide(Cancelled("Deleted"), attempt, POLICY)
        assert settled == Discard(CANCELLED_REASON, "Deleted")


def test_a_jobs_backoff_replaces_ours_but_never_waits_beyond_our_maximum() -> None:
    assert POLICY.with_backoff(None, None) == POLICY
    own = POLICY.with_backoff(2, 5)
    assert [own.cap_seconds(a) for a in (1, 2, 3, 4)] == [2, 4, 5, 5]
    capped = POLICY.with_backoff(60, 600)
    assert (capped.base_seconds, capped.max_seconds) == (25, 25)
    # A cap below the base wins: the job asked never to wait longer than that.
    assert POLICY.with_backoff(10, 3).cap_seconds(1) == 3
    first = decide(BUSY, 1, own, rng=random.Random(1))
    assert isinstance(first, Retry) and 0 <= first.delay_seconds <= 2


def test_backoff_is_full_jitter_under_an_exponential_capped_bound() -> None:
    assert [POLICY.cap_seconds(a) for a in (1, 2, 3, 4)] == [10, 20, 25, 25]
    rng = random.Random(7)
    delays = [POLICY.backoff_seconds(2, rng) for _ in range(500)]
    assert all(0 <= d <= 20 for d in delays)
    assert min(delays) < 2 and max(delays) > 18  # spread over the whole range


def test_inconsistent_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="inconsistent"):
        RetryPolicy(base_seconds=10, max_seconds=5)
